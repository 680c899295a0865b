//! The crate's error type: setting the store up. Failures of store operations are
//! `enclave_reconnect::Error::Store`, which name the operation and the session.

/// Why a [`RedisStore`](crate::RedisStore) could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a Redis URL this build can reach (`redis://HOST:PORT[/DB]`,
    /// `redis+unix:///path` or `unix:///path`; TLS, `rediss://`, is not built in).
    #[error("invalid Redis URL {url:?}: {source}")]
    Url {
        /// The URL given, without its password.
        url: String,
        /// What the client library said.
        #[source]
        source: redis::RedisError,
    },
    /// The first connection failed.
    #[error("cannot reach Redis at {url}: {source}")]
    Connect {
        /// The URL given, without its password.
        url: String,
        /// What the client library said.
        #[source]
        source: redis::RedisError,
    },
    /// The key prefix is unusable (empty keys or braces, which would break the hash tags).
    #[error("invalid key prefix {0:?}: it must not contain '{{' or '}}'")]
    Prefix(String),
}

/// `url` with any password replaced, for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("redis://user:secret@host:6379/0"),
            "redis://user:***@host:6379/0"
        );
        assert_eq!(redact("redis://:secret@host"), "redis://:***@host");
        assert_eq!(redact("redis://host:6379"), "redis://host:6379");
        assert_eq!(redact("not a url"), "not a url");
    }
}
