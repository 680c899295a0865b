//! [`MemoryStore`]: sessions in this process, one lock per session.
//!
//! The map of sessions has its own lock, held only to find or add a record; each record has a
//! lock of its own, so sessions never wait on each other. No lock is held across an `.await`:
//! every operation completes synchronously and returns a ready future.

use std::collections::{HashMap, VecDeque};
use std::future::ready;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use enclave_transport::EncodedEvent;
use enclave_types::SessionId;
use futures::future::BoxFuture;

use super::{
    appended_channel, Appended, AppendedSender, NewEvent, Progress, Retention, SessionMeta,
    Snapshot, Store, TokenHashes,
};
use crate::Error;

/// Sessions kept in this process's memory (the hub's default store).
#[derive(Debug, Default)]
pub struct MemoryStore {
    sessions: RwLock<HashMap<SessionId, Arc<Mutex<Record>>>>,
}

#[derive(Debug)]
struct Record {
    meta: SessionMeta,
    tokens: TokenHashes,
    events: VecDeque<(Arc<EncodedEvent>, u64)>,
    retention: Retention,
    expired: bool,
    last_seq: Option<AppendedSender>,
}

impl Record {
    fn trim(&mut self, through: u64) {
        while let Some((event, bytes)) = self.events.front() {
            if event.seq > through {
                break;
            }
            self.retention.evicted_through = self.retention.evicted_through.max(event.seq);
            self.retention.bytes -= bytes;
            self.retention.count -= 1;
            self.events.pop_front();
        }
        self.retention.first_seq = self
            .events
            .front()
            .map_or(self.retention.last_seq + 1, |(event, _)| event.seq);
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn record(&self, id: &SessionId) -> Option<Arc<Mutex<Record>>> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// Runs `f` on a session's record under its lock.
    fn with<T>(
        &self,
        id: &SessionId,
        f: impl FnOnce(&mut Record) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let record = self
            .record(id)
            .ok_or_else(|| Error::UnknownSession(id.clone()))?;
        let mut record = record.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut record)
    }
}

impl Store for MemoryStore {
    fn create(&self, meta: SessionMeta, tokens: TokenHashes) -> BoxFuture<'_, Result<(), Error>> {
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let result = if sessions.contains_key(&meta.session_id) {
            Err(Error::SessionExists(meta.session_id))
        } else {
            let (sender, _) = appended_channel(0);
            let id = meta.session_id.clone();
            let record = Record {
                meta,
                tokens,
                events: VecDeque::new(),
                retention: Retention {
                    first_seq: 1,
                    ..Retention::default()
                },
                expired: false,
                last_seq: Some(sender),
            };
            sessions.insert(id, Arc::new(Mutex::new(record)));
            Ok(())
        };
        Box::pin(ready(result))
    }

    fn load(&self, id: &SessionId) -> BoxFuture<'_, Result<Option<Snapshot>, Error>> {
        let snapshot = self.record(id).map(|record| {
            let record = record.lock().unwrap_or_else(PoisonError::into_inner);
            Snapshot::new(
                record.meta.clone(),
                record.tokens,
                record.retention,
                record.expired,
            )
        });
        Box::pin(ready(Ok(snapshot)))
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionMeta>, Error>> {
        let records: Vec<_> = self
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        let metas = records
            .iter()
            .map(|r| {
                r.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .meta
                    .clone()
            })
            .collect();
        Box::pin(ready(Ok(metas)))
    }

    fn put_meta(&self, meta: SessionMeta) -> BoxFuture<'_, Result<(), Error>> {
        let id = meta.session_id.clone();
        Box::pin(ready(self.with(&id, |r| {
            r.meta = meta;
            Ok(())
        })))
    }

    // One look-up under the record's lock, where the default loads and puts the whole meta.
    fn record_progress(
        &self,
        id: &SessionId,
        progress: Progress,
    ) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(ready(self.with(id, |r| {
            progress.apply(&mut r.meta);
            Ok(())
        })))
    }

    fn swap_tokens(
        &self,
        id: &SessionId,
        expected: TokenHashes,
        next: TokenHashes,
    ) -> BoxFuture<'_, Result<bool, Error>> {
        Box::pin(ready(self.with(id, |r| {
            if r.tokens == expected {
                r.tokens = next;
                Ok(true)
            } else {
                Ok(false)
            }
        })))
    }

    fn append<'a>(
        &'a self,
        id: &'a SessionId,
        events: &'a [NewEvent],
    ) -> BoxFuture<'a, Result<Retention, Error>> {
        Box::pin(ready(self.with(id, |r| {
            // The whole batch is checked before any of it is kept: all of it or nothing.
            for (expected, new) in (r.retention.last_seq + 1..).zip(events) {
                if new.seq() != expected || r.expired {
                    return Err(Error::OutOfOrder {
                        session: id.clone(),
                        expected,
                        got: new.seq(),
                    });
                }
            }
            let (Some(first), Some(last)) = (events.first(), events.last()) else {
                return Ok(r.retention);
            };
            if r.events.is_empty() {
                r.retention.first_seq = first.seq();
            }
            for new in events {
                r.events.push_back((Arc::clone(&new.event), new.bytes));
                r.retention.count += 1;
                r.retention.bytes += new.bytes;
            }
            r.retention.last_seq = last.seq();
            if let Some(sender) = &r.last_seq {
                sender.send(last.seq());
            }
            Ok(r.retention)
        })))
    }

    fn read(
        &self,
        id: &SessionId,
        from: u64,
        max: usize,
    ) -> BoxFuture<'_, Result<Vec<Arc<EncodedEvent>>, Error>> {
        Box::pin(ready(self.with(id, |r| {
            // Retained seqs are contiguous, so the position of `from` is an offset.
            let skip =
                usize::try_from(from.saturating_sub(r.retention.first_seq)).unwrap_or(usize::MAX);
            Ok(r.events
                .iter()
                .skip(skip)
                .take(max)
                .map(|(event, _)| Arc::clone(event))
                .collect())
        })))
    }

    fn retention(&self, id: &SessionId) -> BoxFuture<'_, Result<Retention, Error>> {
        Box::pin(ready(self.with(id, |r| Ok(r.retention))))
    }

    fn trim(&self, id: &SessionId, through: u64) -> BoxFuture<'_, Result<Retention, Error>> {
        Box::pin(ready(self.with(id, |r| {
            r.trim(through);
            Ok(r.retention)
        })))
    }

    fn advance_client_seq(&self, id: &SessionId, seq: u64) -> BoxFuture<'_, Result<u64, Error>> {
        Box::pin(ready(self.with(id, |r| {
            r.retention.client_seq = r.retention.client_seq.max(seq);
            Ok(r.retention.client_seq)
        })))
    }

    fn expire(&self, id: &SessionId) -> BoxFuture<'_, Result<(), Error>> {
        Box::pin(ready(self.with(id, |r| {
            let last = r.retention.last_seq;
            r.trim(last);
            r.expired = true;
            r.last_seq = None;
            Ok(())
        })))
    }

    fn remove(&self, id: &SessionId) -> BoxFuture<'_, Result<bool, Error>> {
        let removed = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some();
        Box::pin(ready(Ok(removed)))
    }

    fn watch(&self, id: &SessionId) -> Option<Appended> {
        let record = self.record(id)?;
        let record = record.lock().unwrap_or_else(PoisonError::into_inner);
        record.last_seq.as_ref().map(AppendedSender::subscribe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use enclave_types::{EventPayload, StdoutPayload, StreamEvent};

    fn event(id: &SessionId, seq: u64) -> Arc<EncodedEvent> {
        let event = StreamEvent::new(
            id.clone(),
            seq,
            EventPayload::Stdout(StdoutPayload::new("x")),
        );
        Arc::new(EncodedEvent::new(event).unwrap())
    }

    /// Appends one event counting `bytes`.
    async fn append_one(
        store: &MemoryStore,
        id: &SessionId,
        seq: u64,
        bytes: u64,
    ) -> Result<Retention, Error> {
        store
            .append(id, &[NewEvent::with_bytes(event(id, seq), bytes)])
            .await
    }

    #[tokio::test]
    async fn retention_tracks_counts_bytes_and_what_left() {
        let store = MemoryStore::new();
        let id = SessionId::generate();
        let hash = crate::store::TokenHash::of("t");
        let tokens = TokenHashes::first(hash);
        store
            .create(SessionMeta::new(id.clone(), 1, 0, 10, false), tokens)
            .await
            .unwrap();
        assert!(matches!(
            store
                .create(SessionMeta::new(id.clone(), 1, 0, 10, false), tokens)
                .await,
            Err(Error::SessionExists(_))
        ));
        for seq in 1..=5 {
            append_one(&store, &id, seq, 10).await.unwrap();
        }
        assert!(matches!(
            append_one(&store, &id, 7, 10).await,
            Err(Error::OutOfOrder {
                expected: 6,
                got: 7,
                ..
            })
        ));
        let retention = store.trim(&id, 2).await.unwrap();
        assert_eq!(
            (
                retention.first_seq,
                retention.last_seq,
                retention.count,
                retention.bytes,
                retention.evicted_through
            ),
            (3, 5, 3, 30, 2)
        );
        let seqs: Vec<u64> = store
            .read(&id, 4, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [4, 5]);
        // A read from before what is retained starts later: the reader sees the gap.
        assert_eq!(store.read(&id, 1, 1).await.unwrap()[0].seq, 3);
        assert_eq!(store.advance_client_seq(&id, 4).await.unwrap(), 4);
        assert_eq!(store.advance_client_seq(&id, 2).await.unwrap(), 4);
        let other = TokenHashes {
            current: crate::store::TokenHash::of("u"),
            previous: Some(hash),
            salt: Some(crate::store::TokenSalt([7; 32])),
        };
        assert!(store.swap_tokens(&id, tokens, other).await.unwrap());
        assert!(!store.swap_tokens(&id, tokens, other).await.unwrap());
        store.expire(&id).await.unwrap();
        let snapshot = store.load(&id).await.unwrap().unwrap();
        assert!(snapshot.expired && snapshot.retention.count == 0);
        assert!(store.watch(&id).is_none());
        assert!(store.remove(&id).await.unwrap());
        assert!(store.load(&id).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_batch_is_appended_whole_or_not_at_all() {
        let store = MemoryStore::new();
        let id = SessionId::generate();
        let tokens = TokenHashes::first(crate::store::TokenHash::of("t"));
        store
            .create(SessionMeta::new(id.clone(), 1, 0, 10, false), tokens)
            .await
            .unwrap();
        let mut watch = store.watch(&id).expect("a known session");
        let batch: Vec<NewEvent> = (1..=3)
            .map(|seq| NewEvent::with_bytes(event(&id, seq), 10 * seq))
            .collect();
        let retention = store.append(&id, &batch).await.unwrap();
        assert_eq!(
            (
                retention.first_seq,
                retention.last_seq,
                retention.count,
                retention.bytes
            ),
            (1, 3, 3, 60)
        );
        // Watchers are woken once, with the batch's last seq.
        assert_eq!(watch.wait_for(|&seq| seq > 0).await, Ok(3));
        // A gap inside a batch refuses all of it, naming the first seq that is wrong.
        let gapped = [
            NewEvent::with_bytes(event(&id, 4), 1),
            NewEvent::with_bytes(event(&id, 6), 1),
        ];
        assert!(matches!(
            store.append(&id, &gapped).await,
            Err(Error::OutOfOrder {
                expected: 5,
                got: 6,
                ..
            })
        ));
        assert_eq!(store.retention(&id).await.unwrap(), retention);
        // An empty batch appends nothing; `NewEvent::new` counts the NDJSON line.
        assert_eq!(store.append(&id, &[]).await.unwrap(), retention);
        let fourth = event(&id, 4);
        let line = fourth.line_len();
        let after = store.append(&id, &[NewEvent::new(fourth)]).await.unwrap();
        assert_eq!((after.last_seq, after.bytes), (4, 60 + line));
        let seqs: Vec<u64> = store
            .read(&id, 1, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4]);
    }
}
