//! [`RedisStore`]: the `Store` trait and its `Sharing` capability on Redis.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use enclave_reconnect::store::EncodedEvent;
use enclave_reconnect::store::{appended_channel, Appended};
use enclave_reconnect::store::{
    Inbound, NewEvent, Progress, Retention, SessionMeta, Sharing, Snapshot, Store, TokenHashes,
};
use enclave_reconnect::Error as StoreError;
use enclave_types::{EventPayload, SessionId};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Value};
use ring::rand::{SecureRandom, SystemRandom};

use crate::codec::{self, corrupt, failed, MetaHash};
use crate::config::RedisStoreConfig;
use crate::error::{redact, Error};
use crate::follow;
use crate::inboxes::Inboxes;
use crate::inner::{millis, now_ms, Followed, Inner, Local, Recent};
use crate::keys::{self};
use crate::scripts::Scripts;

/// Sessions on Redis Streams, shared by every server connected to the same Redis and prefix.
/// Cheap to clone; clones share connections and tasks. Its background tasks (lease renewal,
/// followers) end when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct RedisStore {
    pub(crate) inner: Arc<Inner>,
    /// The task that reads the inboxes of the sessions this process produces.
    inboxes: Arc<Inboxes>,
}

impl RedisStore {
    /// Connects to the Redis at `url` (`redis://[:PASSWORD@]HOST:PORT[/DB]`, `rediss://…` for
    /// TLS — trusting the system's roots, or [`RedisStoreConfig::ca_file`] —, or
    /// `redis+unix:///path`), checking that it answers. The connection reconnects by itself
    /// after a failure; operations during an outage fail with a store error (the hub refuses
    /// new sessions with 503 and ends live connections with a clear reason).
    pub async fn connect(url: &str, config: RedisStoreConfig) -> Result<Self, Error> {
        if config.prefix.contains(['{', '}']) {
            return Err(Error::Prefix(config.prefix));
        }
        let redacted = redact(url);
        let client = match (&config.ca_file, url.starts_with("rediss://")) {
            (Some(path), true) => {
                let root = std::fs::read(path).map_err(|source| Error::CaFile {
                    path: path.clone(),
                    source,
                })?;
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root),
                };
                Client::build_with_tls(url, certificates)
            }
            _ => Client::open(url),
        }
        .map_err(|source| Error::Url {
            url: redacted.clone(),
            source,
        })?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client.clone(), manager)
            .await
            .map_err(|source| Error::Connect {
                url: redacted.clone(),
                source,
            })?;
        let mut tag = [0u8; 8];
        SystemRandom::new()
            .fill(&mut tag)
            .map_err(|_| Error::Prefix("no randomness for the store's wake key".to_owned()))?;
        let wake_key = format!("{}wake:{}", config.prefix, hex::encode(tag));
        let (inboxes, registrations) = Inboxes::new(wake_key.clone());
        let inner = Arc::new(Inner {
            client,
            conn,
            config,
            scripts: Scripts::new(),
            local: Mutex::new(HashMap::new()),
            followed: Mutex::new(HashMap::new()),
            stopped: tokio_util::sync::CancellationToken::new(),
            rng: SystemRandom::new(),
        });
        // One round trip proves the server answers (and fixes the epoch if it has none).
        let store = Self {
            inner,
            inboxes: Arc::new(inboxes),
        };
        store.inner.epoch().await.map_err(|e| Error::Connect {
            url: redacted,
            source: redis::RedisError::from((
                redis::ErrorKind::Io,
                "first request failed",
                e.to_string(),
            )),
        })?;
        tokio::spawn(follow::renew_leases(Arc::downgrade(&store.inner)));
        tokio::spawn(crate::inboxes::run(
            Arc::downgrade(&store.inner),
            registrations,
            wake_key,
        ));
        Ok(store)
    }

    /// The configuration.
    pub fn config(&self) -> &RedisStoreConfig {
        &self.inner.config
    }
}

impl RedisStore {
    /// One script call for the whole batch (and what it changed in the metadata): the seqs
    /// are checked and every event written as one step, so a batch lands all at once or not
    /// at all.
    async fn append_batch(
        &self,
        id: &SessionId,
        events: &[NewEvent],
        progress: Option<Progress>,
    ) -> Result<Retention, StoreError> {
        let inner = &self.inner;
        let (Some(oldest), Some(newest)) = (events.first(), events.last()) else {
            // Nothing to append: the progress alone (the script needs an event to check).
            if let Some(progress) = progress {
                self.record_progress(id, progress).await?;
            }
            return self.retention(id).await;
        };
        let keys = inner.keys(id);
        let mut invocation = inner.scripts.append.prepare_invoke();
        invocation.key(&keys.meta).key(&keys.events);
        let mut has_final = false;
        for new in events {
            let is_final = matches!(new.event.payload, EventPayload::Final(_));
            has_final |= is_final;
            // The JSON the hub encoded once, as every connection writes it.
            invocation
                .arg(new.seq())
                .arg(new.event.json())
                .arg(new.bytes)
                .arg(u8::from(is_final));
        }
        if let Some(progress) = progress {
            invocation
                .arg("p")
                .arg(progress.state.map(codec::state_name).unwrap_or_default())
                .arg(progress.tool_calls)
                .arg(
                    progress
                        .finished_at_ms
                        .map(|ms| ms.to_string())
                        .unwrap_or_default(),
                );
        }
        let reply = match inner.status_script("append", id, &invocation).await {
            Err(StoreError::UnknownSession(id)) => {
                inner.forget(&id);
                return Err(StoreError::UnknownSession(id));
            }
            other => other?,
        };
        let number = |i: usize| reply.get(i).and_then(|&v| u64::try_from(v).ok());
        match codec::status(id, &reply)? {
            -2 => {
                let expected = number(1)
                    .ok_or_else(|| corrupt(id, "append reply without the expected seq"))?;
                let got = number(2).unwrap_or_else(|| oldest.seq());
                let last = number(3).unwrap_or_else(|| expected.saturating_sub(1));
                inner.appended_elsewhere(id, last);
                return Err(StoreError::OutOfOrder {
                    session: id.clone(),
                    expected,
                    got,
                });
            }
            // Its `final` is there already: a server that found the producer's lease
            // lapsed ended the session.
            -3 => {
                inner.appended_elsewhere(id, number(1).unwrap_or(0));
                return Err(StoreError::SessionClosed(id.clone()));
            }
            _ => {}
        }
        // Appended now, or (status 2) by an earlier attempt whose answer was lost.
        let retention = codec::retention(id, &reply)?;
        if let Some(local) = inner.local().get_mut(id) {
            for new in events {
                local
                    .recent
                    .keep(Arc::clone(&new.event), retention.first_seq);
            }
            local.appended.send(newest.seq());
            if has_final {
                local.renewing = false;
            }
        }
        Ok(retention)
    }
}

impl Store for RedisStore {
    fn create(
        &self,
        meta: SessionMeta,
        tokens: TokenHashes,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let id = meta.session_id.clone();
            let keys = inner.keys(&id);
            let ttl = meta
                .expires_at_ms
                .saturating_add(millis(inner.config.ttl_margin));
            let lease = now_ms().saturating_add(millis(inner.config.lease));
            let mut invocation = inner.scripts.create.prepare_invoke();
            invocation.key(&keys.meta).arg(ttl);
            for (field, value) in codec::meta_fields(&meta) {
                invocation.arg(field).arg(value);
            }
            let previous = tokens.previous.as_ref().map(codec::token_hex);
            invocation
                .arg("tok")
                .arg(codec::token_hex(&tokens.current))
                .arg("ptok")
                .arg(previous.unwrap_or_default())
                .arg("tsalt")
                .arg(
                    tokens
                        .salt
                        .as_ref()
                        .map(codec::salt_hex)
                        .unwrap_or_default(),
                );
            for (field, value) in [
                ("last", 0),
                ("tot", 0),
                ("cut", 0),
                ("bytes", 0),
                ("evicted", 0),
                ("cseq", 0),
                ("expired", 0),
                ("att", 0),
                ("lease", lease),
                ("ttl", ttl),
            ] {
                invocation.arg(field).arg(value);
            }
            let created = inner.int_script("create", &id, &invocation).await?;
            if created == 0 {
                return Err(StoreError::SessionExists(id));
            }
            let (sender, _) = appended_channel(0);
            inner.local().insert(
                id,
                Local {
                    appended: sender,
                    renewing: true,
                    recent: Recent::default(),
                },
            );
            Ok(())
        })
    }

    fn load(&self, id: &SessionId) -> BoxFuture<'_, Result<Option<Snapshot>, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut conn = inner.conn.clone();
            let reply: Option<(Vec<String>, Vec<i64>)> = inner
                .scripts
                .load
                .key(&keys.meta)
                .key(&keys.events)
                .invoke_async(&mut conn)
                .await
                .map_err(|e| failed("load", &id, &e))?;
            let Some((flat, retention)) = reply else {
                // Gone (deleted through another server, or lost): nothing of it is kept here.
                inner.forget(&id);
                return Ok(None);
            };
            let retention = codec::retention(&id, &retention)?;
            MetaHash::new(&id, flat)?.snapshot(retention).map(Some)
        })
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionMeta>, StoreError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let mut conn = inner.conn.clone();
            let fail = |e: redis::RedisError| StoreError::store("list", None, e);
            let pattern = keys::meta_pattern(&inner.config.prefix);
            let mut cursor: u64 = 0;
            let mut metas = Vec::new();
            loop {
                let (next, found): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await
                    .map_err(fail)?;
                let mut pipe = redis::pipe();
                let mut ids = Vec::with_capacity(found.len());
                for key in &found {
                    let Some(id) = session_of_key(&inner.config.prefix, key) else {
                        continue;
                    };
                    pipe.cmd("HGETALL").arg(key);
                    ids.push(id);
                }
                if !ids.is_empty() {
                    let hashes: Vec<Vec<String>> =
                        pipe.query_async(&mut conn).await.map_err(fail)?;
                    for (id, flat) in ids.iter().zip(hashes) {
                        // A session removed between SCAN and HGETALL reads as empty.
                        if flat.is_empty() {
                            continue;
                        }
                        // One corrupt record must not hide every other session: it is
                        // reported and left out.
                        match MetaHash::new(id, flat).and_then(|m| m.meta()) {
                            Ok(meta) => metas.push(meta),
                            Err(err) => {
                                tracing::error!(session = %id, %err, "left out of the list");
                            }
                        }
                    }
                }
                if next == 0 {
                    return Ok(metas);
                }
                cursor = next;
            }
        })
    }

    fn put_meta(&self, meta: SessionMeta) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let id = meta.session_id.clone();
            let keys = inner.keys(&id);
            let mut invocation = inner.scripts.put_meta.prepare_invoke();
            invocation.key(&keys.meta);
            for (field, value) in codec::meta_fields(&meta) {
                invocation.arg(field).arg(value);
            }
            inner.int_script("put_meta", &id, &invocation).await?;
            Ok(())
        })
    }

    fn record_progress(
        &self,
        id: &SessionId,
        progress: Progress,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let state = progress.state.map(codec::state_name).unwrap_or_default();
            let finished = progress
                .finished_at_ms
                .map(|ms| ms.to_string())
                .unwrap_or_default();
            let mut invocation = inner.scripts.progress.prepare_invoke();
            invocation
                .key(&keys.meta)
                .arg(state)
                .arg(progress.tool_calls)
                .arg(finished);
            inner.int_script("progress", &id, &invocation).await?;
            Ok(())
        })
    }

    fn swap_tokens(
        &self,
        id: &SessionId,
        expected: TokenHashes,
        next: TokenHashes,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let hex = |t: &TokenHashes| {
                (
                    codec::token_hex(&t.current),
                    t.previous
                        .as_ref()
                        .map(codec::token_hex)
                        .unwrap_or_default(),
                )
            };
            let (expected_current, expected_previous) = hex(&expected);
            let (next_current, next_previous) = hex(&next);
            let mut invocation = inner.scripts.swap_tokens.prepare_invoke();
            invocation
                .key(&keys.meta)
                .arg(expected_current)
                .arg(expected_previous)
                .arg(next_current)
                .arg(next_previous)
                .arg(next.salt.as_ref().map(codec::salt_hex).unwrap_or_default());
            Ok(inner.int_script("swap_tokens", &id, &invocation).await? == 1)
        })
    }

    fn append<'a>(
        &'a self,
        id: &'a SessionId,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<Retention, StoreError>> {
        Box::pin(self.append_batch(id, events, None))
    }

    fn append_with_progress<'a>(
        &'a self,
        id: &'a SessionId,
        events: &'a [NewEvent],
        progress: Progress,
    ) -> BoxFuture<'a, Result<Retention, StoreError>> {
        Box::pin(self.append_batch(id, events, Some(progress)))
    }

    fn read(
        &self,
        id: &SessionId,
        from: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Arc<EncodedEvent>>, StoreError>> {
        let id = id.clone();
        let recent = self
            .inner
            .local()
            .get(&id)
            .and_then(|l| l.recent.read(from, max))
            .or_else(|| {
                let followed = self.inner.followed();
                followed.get(&id).and_then(|f| f.recent.read(from, max))
            });
        Box::pin(async move {
            if let Some(events) = recent {
                return Ok(events);
            }
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut conn = inner.conn.clone();
            let entries: Value = redis::cmd("XRANGE")
                .arg(&keys.events)
                .arg(format!("{from}-0"))
                .arg("+")
                .arg("COUNT")
                .arg(max)
                .query_async(&mut conn)
                .await
                .map_err(|e| failed("read", &id, &e))?;
            let entries = codec::entries(&id, entries)?;
            if entries.is_empty() {
                // Nothing to read, or no session: only then is the record asked for.
                let exists: bool = redis::cmd("EXISTS")
                    .arg(&keys.meta)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| failed("read", &id, &e))?;
                if !exists {
                    return Err(StoreError::UnknownSession(id));
                }
            }
            entries
                .iter()
                .map(|entry| codec::event_of(&id, entry))
                .collect()
        })
    }

    fn retention(&self, id: &SessionId) -> BoxFuture<'_, Result<Retention, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut invocation = inner.scripts.retention.prepare_invoke();
            invocation.key(&keys.meta).key(&keys.events);
            inner.retention_script("retention", &id, &invocation).await
        })
    }

    fn trim(&self, id: &SessionId, through: u64) -> BoxFuture<'_, Result<Retention, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            if let Some(local) = inner.local().get_mut(&id) {
                local.recent.trim(through);
            }
            if let Some(followed) = inner.followed().get_mut(&id) {
                followed.recent.trim(through);
            }
            let mut invocation = inner.scripts.trim.prepare_invoke();
            invocation.key(&keys.meta).key(&keys.events).arg(through);
            inner.retention_script("trim", &id, &invocation).await
        })
    }

    fn advance_client_seq(
        &self,
        id: &SessionId,
        seq: u64,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut invocation = inner.scripts.advance_client_seq.prepare_invoke();
            invocation.key(&keys.meta).arg(seq);
            let reply = inner
                .status_script("advance_client_seq", &id, &invocation)
                .await?;
            held(&id, &reply)
        })
    }

    fn expire(&self, id: &SessionId) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut invocation = inner.scripts.expire.prepare_invoke();
            invocation
                .key(&keys.meta)
                .key(&keys.events)
                .key(&keys.inbox);
            let result = inner.int_script("expire", &id, &invocation).await;
            inner.forget(&id);
            result.map(|_| ())
        })
    }

    fn remove(&self, id: &SessionId) -> BoxFuture<'_, Result<bool, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut conn = inner.conn.clone();
            let (existed, _): (bool, u64) = redis::pipe()
                .atomic()
                .cmd("EXISTS")
                .arg(&keys.meta)
                .cmd("DEL")
                .arg(&keys.meta)
                .arg(&keys.events)
                .arg(&keys.inbox)
                .query_async(&mut conn)
                .await
                .map_err(|e| failed("remove", &id, &e))?;
            inner.forget(&id);
            Ok(existed)
        })
    }

    fn watch(&self, id: &SessionId) -> Option<Appended> {
        let inner = &self.inner;
        if let Some(local) = inner.local().get(id) {
            return Some(local.appended.subscribe());
        }
        // Followed under the map's lock: a follower that finds no receiver left removes
        // itself under the same lock, so a new reader never subscribes to a sender that is
        // about to go.
        let mut followed = inner.followed();
        if let Some(record) = followed.get(id) {
            return Some(record.sender.subscribe());
        }
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (sender, receiver) = appended_channel(0);
        let sender = Arc::new(sender);
        followed.insert(
            id.clone(),
            Followed {
                sender: Arc::clone(&sender),
                recent: Recent::default(),
            },
        );
        handle.spawn(follow::follow_events(
            Arc::clone(&self.inner),
            id.clone(),
            sender,
        ));
        Some(receiver)
    }

    fn epoch(&self) -> BoxFuture<'_, Result<Option<u64>, StoreError>> {
        Box::pin(async move { self.inner.epoch().await.map(Some) })
    }

    fn ping(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            // A write, not a PING: a Redis that is full (`maxmemory` with `noeviction`)
            // answers PING but can take no session, so it is not ready.
            let mut conn = self.inner.conn.clone();
            redis::cmd("SET")
                .arg(keys::ready(&self.inner.config.prefix))
                .arg(1)
                .arg("PX")
                .arg(10_000)
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| StoreError::store("readiness write", None, e))
        })
    }

    fn sharing(&self) -> Option<&dyn Sharing> {
        Some(self)
    }
}

/// Inboxes in Redis streams, presence in the meta hash, leases renewed by this process.
impl Sharing for RedisStore {
    fn forward(
        &self,
        id: &SessionId,
        items: Vec<Inbound>,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut invocation = inner.scripts.forward.prepare_invoke();
            invocation
                .key(&keys.meta)
                .key(&keys.inbox)
                .arg(inner.config.max_inbox);
            for item in &items {
                match item {
                    Inbound::Message(message) => {
                        let json = serde_json::to_string(message)
                            .map_err(|e| StoreError::store("forward", Some(&id), e))?;
                        let seq = message
                            .seq
                            .map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
                        invocation.arg("m").arg(seq).arg(json);
                    }
                    Inbound::Cancel { reason } => {
                        invocation
                            .arg("c")
                            .arg(-1)
                            .arg(reason.as_deref().unwrap_or(""));
                    }
                    other => {
                        return Err(StoreError::store(
                            "forward",
                            Some(&id),
                            format!("cannot forward {other:?}"),
                        ));
                    }
                }
            }
            let reply = inner.status_script("forward", &id, &invocation).await?;
            if codec::status(&id, &reply)? == -4 {
                return Err(StoreError::store(
                    "forward",
                    Some(&id),
                    format!(
                        "its producer has {} messages waiting, the inbox bound",
                        inner.config.max_inbox
                    ),
                ));
            }
            held(&id, &reply)
        })
    }

    fn inbox(&self, id: &SessionId) -> BoxStream<'static, Result<Inbound, StoreError>> {
        self.inboxes.subscribe(&self.inner, id.clone())
    }

    fn shutdown(&self) {
        self.inner.stopped.cancel();
    }

    fn attach(&self, id: &SessionId) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut invocation = inner.scripts.attach.prepare_invoke();
            invocation.key(&keys.meta);
            inner
                .int_script("attach", &id, &invocation)
                .await
                .map(|_| ())
        })
    }

    fn detach(&self, id: &SessionId) -> BoxFuture<'_, Result<(), StoreError>> {
        let id = id.clone();
        Box::pin(async move {
            let inner = &self.inner;
            let keys = inner.keys(&id);
            let mut invocation = inner.scripts.detach.prepare_invoke();
            invocation.key(&keys.meta).arg(now_ms());
            inner
                .int_script("detach", &id, &invocation)
                .await
                .map(|_| ())
        })
    }
}

/// The highest client seq from a `{1, held}` reply.
fn held(id: &SessionId, reply: &[i64]) -> Result<u64, StoreError> {
    reply
        .get(1)
        .and_then(|&v| u64::try_from(v).ok())
        .ok_or_else(|| corrupt(id, format_args!("client position reply {reply:?}")))
}

/// The session a meta key names (`{prefix}{<id>}:meta`).
fn session_of_key(prefix: &str, key: &str) -> Option<SessionId> {
    let tagged = key.strip_prefix(prefix)?.strip_suffix(":meta")?;
    let id = tagged.strip_prefix('{')?.strip_suffix('}')?;
    SessionId::new(id).ok()
}

#[cfg(test)]
mod tests {
    use super::session_of_key;

    #[test]
    fn meta_keys_name_their_session() {
        let id = session_of_key("p:", "p:{s_abc}:meta").expect("a session");
        assert_eq!(id.as_str(), "s_abc");
        assert!(session_of_key("p:", "q:{s_abc}:meta").is_none());
        assert!(session_of_key("p:", "p:{s_abc}:events").is_none());
        assert!(session_of_key("p:", "p:s_abc:meta").is_none());
    }
}
