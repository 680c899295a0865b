//! Records in Redis and back: the meta hash, token hashes, retention replies, stream entries.
//! Everything read back is checked: a corrupt record is an error that names the session and
//! the field, never a panic or a silently wrong position.

use std::collections::HashMap;
use std::sync::Arc;

use enclave_reconnect::store::EncodedEvent;
use enclave_reconnect::store::{
    Presence, Retention, SessionMeta, Snapshot, TokenHash, TokenHashes, TokenSalt,
};
use enclave_reconnect::Error;
use enclave_types::{RuntimeChannelMessage, SessionId, SessionState, StreamEvent};
use redis::Value;

/// A store error about `id`.
pub(crate) fn corrupt(id: &SessionId, what: impl std::fmt::Display) -> Error {
    Error::store("read", Some(id), format!("corrupt record in Redis: {what}"))
}

/// A Redis failure during `operation` on `id`.
pub(crate) fn failed(operation: &'static str, id: &SessionId, err: &redis::RedisError) -> Error {
    Error::store(operation, Some(id), format!("Redis {operation}: {err}"))
}

/// A state's wire name (`waiting_for_tool`, …), as the protocol model serializes it.
pub(crate) fn state_name(state: SessionState) -> String {
    match serde_json::to_value(state) {
        Ok(serde_json::Value::String(name)) => name,
        // The model serializes every state as a string; anything else is a bug there.
        other => unreachable!("SessionState serialized as {other:?}"),
    }
}

fn state_of(name: &str) -> Option<SessionState> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

pub(crate) fn token_hex(hash: &TokenHash) -> String {
    hex::encode(hash.0)
}

pub(crate) fn salt_hex(salt: &TokenSalt) -> String {
    hex::encode(salt.0)
}

fn token_of(id: &SessionId, field: &str, hex_value: &str) -> Result<TokenHash, Error> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_value, &mut out)
        .map_err(|e| corrupt(id, format_args!("field {field}: {e}")))?;
    Ok(TokenHash(out))
}

/// The meta fields `SessionMeta` maps to (what `put_meta` writes).
pub(crate) fn meta_fields(meta: &SessionMeta) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("epoch", meta.epoch.to_string()),
        ("state", state_name(meta.state)),
        ("created", meta.created_at_ms.to_string()),
        ("expires", meta.expires_at_ms.to_string()),
        ("encrypted", u8::from(meta.encrypted).to_string()),
        ("tools", meta.tool_call_count.to_string()),
    ];
    if let Some(finished) = meta.finished_at_ms {
        fields.push(("fin", finished.to_string()));
    }
    fields
}

/// A meta hash read back as field → value.
pub(crate) struct MetaHash<'a> {
    id: &'a SessionId,
    fields: HashMap<String, String>,
}

impl<'a> MetaHash<'a> {
    /// From `HGETALL`'s flat list of fields and values.
    pub(crate) fn new(id: &'a SessionId, flat: Vec<String>) -> Result<Self, Error> {
        if !flat.len().is_multiple_of(2) {
            return Err(corrupt(id, "the meta hash has an odd number of elements"));
        }
        let mut fields = HashMap::with_capacity(flat.len() / 2);
        let mut items = flat.into_iter();
        while let (Some(field), Some(value)) = (items.next(), items.next()) {
            fields.insert(field, value);
        }
        Ok(Self { id, fields })
    }

    fn text(&self, field: &str) -> Result<&str, Error> {
        self.fields
            .get(field)
            .map(String::as_str)
            .ok_or_else(|| corrupt(self.id, format_args!("field {field} is missing")))
    }

    fn optional_number(&self, field: &str) -> Result<Option<u64>, Error> {
        match self.fields.get(field) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| {
                corrupt(
                    self.id,
                    format_args!("field {field} is {value:?}, not a number"),
                )
            }),
        }
    }

    fn number(&self, field: &str) -> Result<u64, Error> {
        self.optional_number(field)?
            .ok_or_else(|| corrupt(self.id, format_args!("field {field} is missing")))
    }

    /// The session's metadata.
    pub(crate) fn meta(&self) -> Result<SessionMeta, Error> {
        let id = self.id;
        let state_text = self.text("state")?;
        let state = state_of(state_text)
            .ok_or_else(|| corrupt(id, format_args!("unknown state {state_text:?}")))?;
        let mut meta = SessionMeta::new(
            id.clone(),
            self.number("epoch")?,
            self.number("created")?,
            self.number("expires")?,
            self.text("encrypted")? == "1",
        );
        meta.state = state;
        meta.finished_at_ms = self.optional_number("fin")?;
        meta.tool_call_count = self.number("tools")?;
        Ok(meta)
    }

    /// The snapshot, with the retention the script computed beside the hash.
    pub(crate) fn snapshot(&self, retention: Retention) -> Result<Snapshot, Error> {
        let id = self.id;
        let previous = match self.fields.get("ptok").map(String::as_str) {
            None | Some("") => None,
            Some(hex_value) => Some(token_of(id, "ptok", hex_value)?),
        };
        // Absent in records written before salted rotation: such a previous token gets a
        // fresh successor, as it did then.
        let salt = match self.fields.get("tsalt").map(String::as_str) {
            None | Some("") => None,
            Some(hex_value) => Some(TokenSalt(token_of(id, "tsalt", hex_value)?.0)),
        };
        let tokens = TokenHashes {
            current: token_of(id, "tok", self.text("tok")?)?,
            previous,
            salt,
        };
        let expired = self.fields.get("expired").is_some_and(|v| v == "1");
        let mut snapshot = Snapshot::new(self.meta()?, tokens, retention, expired);
        let mut presence = Presence::default();
        presence.attached = self.optional_number("att")?.unwrap_or(0);
        presence.detached_at_ms = self.optional_number("det")?;
        snapshot.presence = presence;
        Ok(snapshot)
    }
}

/// A script's reply: its status and the numbers after it.
pub(crate) fn status(id: &SessionId, reply: &[i64]) -> Result<i64, Error> {
    reply
        .first()
        .copied()
        .ok_or_else(|| corrupt(id, "a script replied with nothing"))
}

/// Retention from a script's reply `{1, last, count, bytes, evicted, cseq, first}`.
pub(crate) fn retention(id: &SessionId, reply: &[i64]) -> Result<Retention, Error> {
    let number = |i: usize| {
        reply
            .get(i)
            .and_then(|&v| u64::try_from(v).ok())
            .ok_or_else(|| corrupt(id, format_args!("retention reply {reply:?}")))
    };
    let mut retention = Retention::default();
    retention.last_seq = number(1)?;
    retention.count = number(2)?;
    retention.bytes = number(3)?;
    retention.evicted_through = number(4)?;
    retention.client_seq = number(5)?;
    retention.first_seq = number(6)?;
    Ok(retention)
}

/// One stream entry: its id and its fields.
pub(crate) type Entry = (String, Vec<Vec<u8>>);

/// The value of `field` in a stream entry's flat field list.
pub(crate) fn entry_field<'e>(fields: &'e [Vec<u8>], field: &str) -> Option<&'e [u8]> {
    fields
        .chunks_exact(2)
        .find(|pair| pair[0] == field.as_bytes())
        .map(|pair| pair[1].as_slice())
}

/// The seq an event entry's id `<seq>-0` carries.
pub(crate) fn entry_seq(id: &SessionId, entry_id: &str) -> Result<u64, Error> {
    entry_id
        .split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| corrupt(id, format_args!("event entry id {entry_id:?}")))
}

/// An event entry read back: parsed and validated like any line from a peer, and checked
/// against its entry id and session.
pub(crate) fn event_of(
    id: &SessionId,
    (entry_id, fields): &Entry,
) -> Result<Arc<EncodedEvent>, Error> {
    let seq = entry_seq(id, entry_id)?;
    let json = entry_field(fields, "e")
        .ok_or_else(|| corrupt(id, format_args!("event entry {entry_id} has no `e` field")))?;
    let event: StreamEvent = serde_json::from_slice(json)
        .map_err(|e| corrupt(id, format_args!("event seq {seq}: {e}")))?;
    if event.seq != seq || &event.session_id != id {
        return Err(corrupt(
            id,
            format_args!(
                "entry {entry_id} holds seq {} of session {}",
                event.seq, event.session_id
            ),
        ));
    }
    // Encoded again from the validated event, so what a connection writes is exactly the
    // event (nothing of the stored text beyond what the event holds).
    let event = EncodedEvent::new(event)
        .map_err(|e| corrupt(id, format_args!("event seq {seq} does not encode: {e}")))?;
    Ok(Arc::new(event))
}

/// A client message read back from the inbox, numbered with the seq the store gave it.
pub(crate) fn message_of(
    id: &SessionId,
    entry_id: &str,
    fields: &[Vec<u8>],
) -> Result<RuntimeChannelMessage, Error> {
    let seq = entry_field(fields, "s")
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| corrupt(id, format_args!("inbox entry {entry_id} has no seq")))?;
    let json = entry_field(fields, "j")
        .ok_or_else(|| corrupt(id, format_args!("inbox entry {entry_id} has no body")))?;
    let message: RuntimeChannelMessage = serde_json::from_slice(json)
        .map_err(|e| corrupt(id, format_args!("inbox entry {entry_id}: {e}")))?;
    Ok(message.with_seq(seq))
}

/// Entries from an `XRANGE` reply.
pub(crate) fn entries(id: &SessionId, value: Value) -> Result<Vec<Entry>, Error> {
    redis::from_redis_value(value).map_err(|e| corrupt(id, format_args!("stream entries: {e}")))
}
