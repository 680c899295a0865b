//! The crate's error type: setting the store up. Failures of store operations are
//! `enclave_reconnect::Error::Store`, which name the operation and the session.

/// Why a [`RedisStore`](crate::RedisStore) could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a Redis URL (`redis://HOST:PORT[/DB]`, `rediss://…` for TLS,
    /// `redis+unix:///path` or `unix:///path`).
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
    /// The CA file of [`RedisStoreConfig::ca_file`](crate::RedisStoreConfig::ca_file) could
    /// not be read.
    #[error("cannot read the Redis CA file {path}: {source}")]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key prefix is unusable (empty keys or braces, which would break the hash tags).
    #[error("invalid key prefix {0:?}: it must not contain '{{' or '}}'")]
    Prefix(String),
}

/// `url` with any password replaced, for error messages and logs: the user-info's
/// password (up to the last `@`, which a password may contain) and a `pass` query parameter
/// (`redis+unix:///path?pass=…`).
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL)".to_owned();
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    let mut out = match rest.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            format!("{scheme}://{user}:***@{host}")
        }
        None => format!("{scheme}://{rest}"),
    };
    if let Some(query) = query {
        let params: Vec<String> = query
            .split('&')
            .map(|param| match param.split_once('=') {
                Some(("pass" | "password", _)) => {
                    format!("{}=***", param.split('=').next().unwrap_or("pass"))
                }
                _ => param.to_owned(),
            })
            .collect();
        out.push('?');
        out.push_str(&params.join("&"));
    }
    out
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
        assert_eq!(redact("redis://u:p@ss@host/0"), "redis://u:***@host/0");
        assert_eq!(
            redact("redis+unix:///run/redis.sock?db=1&pass=secret"),
            "redis+unix:///run/redis.sock?db=1&pass=***"
        );
        assert_eq!(redact("not a url with secret"), "(not a URL)");
    }
}
