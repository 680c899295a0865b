//! Key names. A session's keys share the hash tag `{<session id>}`, so one script may touch
//! them all; the layout is also what a Redis Cluster would need (one slot per session),
//! though this crate connects to a single server.

use enclave_types::SessionId;

/// The keys of one session.
#[derive(Debug, Clone)]
pub(crate) struct SessionKeys {
    pub(crate) meta: String,
    pub(crate) events: String,
    pub(crate) inbox: String,
}

impl SessionKeys {
    pub(crate) fn new(prefix: &str, id: &SessionId) -> Self {
        let base = format!("{prefix}{{{}}}", id.as_str());
        Self {
            meta: format!("{base}:meta"),
            events: format!("{base}:events"),
            inbox: format!("{base}:inbox"),
        }
    }
}

/// The key of the store's epoch.
pub(crate) fn epoch(prefix: &str) -> String {
    format!("{prefix}epoch")
}

/// The key `GET /ready` writes to check that Redis takes writes (a full Redis does not).
pub(crate) fn ready(prefix: &str) -> String {
    format!("{prefix}ready")
}

/// A `SCAN MATCH` pattern for every session's meta key under `prefix`.
pub(crate) fn meta_pattern(prefix: &str) -> String {
    let mut pattern = String::with_capacity(prefix.len() + 8);
    for c in prefix.chars() {
        // Glob characters in the prefix match themselves.
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push_str("{*}:meta");
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sessions_keys_share_one_hash_tag() {
        let id = SessionId::new("s_abc").unwrap();
        let keys = SessionKeys::new("app:", &id);
        assert_eq!(keys.meta, "app:{s_abc}:meta");
        assert_eq!(keys.events, "app:{s_abc}:events");
        assert_eq!(keys.inbox, "app:{s_abc}:inbox");
        assert_eq!(epoch("app:"), "app:epoch");
    }

    #[test]
    fn glob_characters_in_the_prefix_are_escaped() {
        assert_eq!(meta_pattern("t*1?:"), "t\\*1\\?:{*}:meta");
        assert_eq!(meta_pattern("enclave:"), "enclave:{*}:meta");
    }
}
