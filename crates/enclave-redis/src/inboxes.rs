//! The inboxes of every session this process produces, read by one task with one blocking
//! `XREAD` over all of them on one connection — not a connection per session.
//!
//! A session's [`Sharing::inbox`](enclave_reconnect::store::Sharing::inbox) stream registers here
//! and receives its entries through a bounded channel. The task blocks on the inbox streams
//! of the sessions whose channels have room, plus a wake stream of this store's own, which a
//! registration appends to so the task takes the newcomer in at once. Entries are deleted
//! once handed over. A session that leaves the store (or expires) ends its stream; a
//! receiver that is dropped leaves the set.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use enclave_reconnect::store::Inbound;
use enclave_reconnect::Error as StoreError;
use enclave_types::SessionId;
use futures::stream::BoxStream;
use redis::aio::MultiplexedConnection;
use redis::Value;
use tokio::sync::mpsc;

use crate::codec::{self, Entry};
use crate::inner::{millis, Inner};

/// Entries one session's channel holds before the task stops reading its inbox.
const CHANNEL: usize = 256;
/// Entries read per inbox and round (a session is read only with at least this much room).
const ROUND: usize = 32;
/// How often the task checks that its sessions are still in the store.
const SWEEP: Duration = Duration::from_secs(1);
/// How long to wait before trying Redis again after a failure.
const RETRY: Duration = Duration::from_millis(250);

/// A session's inbox joining the task.
#[derive(Debug)]
pub(crate) struct Registration {
    id: SessionId,
    sink: mpsc::Sender<Inbound>,
}

/// The handle the store keeps: registrations go to the task.
#[derive(Debug)]
pub(crate) struct Inboxes {
    register: mpsc::UnboundedSender<Registration>,
    wake_key: String,
}

impl Inboxes {
    /// The handle and the task's receiving end; [`run`] is spawned with it once the store
    /// exists.
    pub(crate) fn new(wake_key: String) -> (Self, mpsc::UnboundedReceiver<Registration>) {
        let (register, registrations) = mpsc::unbounded_channel();
        (Self { register, wake_key }, registrations)
    }

    /// The inbox of `id` as a stream, ending when the session leaves the store.
    pub(crate) fn subscribe(
        &self,
        inner: &Arc<Inner>,
        id: SessionId,
    ) -> BoxStream<'static, Result<Inbound, StoreError>> {
        let (sink, mut source) = mpsc::channel(CHANNEL);
        if self.register.send(Registration { id, sink }).is_ok() {
            // Wakes the task out of its blocking read so the newcomer is read at once.
            let mut conn = inner.conn.clone();
            let wake_key = self.wake_key.clone();
            tokio::spawn(async move {
                // The key outlives no process by long: it expires an hour after its last use.
                let woken: redis::RedisResult<()> = redis::pipe()
                    .cmd("XADD")
                    .arg(&wake_key)
                    .arg("MAXLEN")
                    .arg("~")
                    .arg(16)
                    .arg("*")
                    .arg("w")
                    .arg(1)
                    .ignore()
                    .cmd("PEXPIRE")
                    .arg(&wake_key)
                    .arg(3_600_000)
                    .ignore()
                    .query_async(&mut conn)
                    .await;
                if let Err(err) = woken {
                    tracing::debug!(%err, "inbox reader not woken; it looks again within a second");
                }
            });
        }
        Box::pin(futures::stream::poll_fn(move |cx| {
            source.poll_recv(cx).map(|item| item.map(Ok))
        }))
    }
}

/// One registered inbox.
struct Reader {
    id: SessionId,
    key: String,
    after: String,
    sink: mpsc::Sender<Inbound>,
}

/// The task: reads every registered inbox with one blocking `XREAD`. Ends when the store is
/// dropped.
pub(crate) async fn run(
    inner: Weak<Inner>,
    mut registrations: mpsc::UnboundedReceiver<Registration>,
    wake_key: String,
) {
    let mut readers: HashMap<String, Reader> = HashMap::new();
    let mut conn: Option<MultiplexedConnection> = None;
    let mut wake_after = "0-0".to_owned();
    let mut swept = Instant::now();
    loop {
        while let Ok(registration) = registrations.try_recv() {
            add(&inner, &mut readers, registration);
        }
        readers.retain(|_, reader| !reader.sink.is_closed());
        if readers.is_empty() {
            match registrations.recv().await {
                Some(registration) => add(&inner, &mut readers, registration),
                None => return,
            }
            continue;
        }
        let Some(store) = inner.upgrade() else {
            return;
        };
        if swept.elapsed() >= SWEEP {
            swept = Instant::now();
            if let Err(err) = sweep(&store, &mut readers).await {
                tracing::debug!(%err, "inbox sessions not checked");
            }
        }
        if conn.is_none() {
            match store.blocking_connection().await {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    tracing::debug!(%err, "inbox reader waits for Redis");
                    drop(store);
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        let block = store.config.block.min(SWEEP);
        let main = store.conn.clone();
        // Not holding the store across the blocking read: dropping it ends the task.
        drop(store);
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(ROUND)
            .arg("BLOCK")
            .arg(millis(block))
            .arg("STREAMS")
            .arg(&wake_key);
        let readable: Vec<&Reader> = readers
            .values()
            .filter(|r| r.sink.capacity() >= ROUND)
            .collect();
        for reader in &readable {
            command.arg(&reader.key);
        }
        command.arg(&wake_after);
        for reader in &readable {
            command.arg(&reader.after);
        }
        let reply: redis::RedisResult<Value> = command.query_async(connection).await;
        let streams = match reply.and_then(|v| {
            redis::from_redis_value::<Option<Vec<(String, Vec<Entry>)>>>(v).map_err(Into::into)
        }) {
            Ok(streams) => streams.unwrap_or_default(),
            Err(err) => {
                tracing::debug!(%err, "inbox read failed; reconnecting");
                conn = None;
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        let (delete, deletes) = hand_over(streams, &mut readers, &wake_key, &mut wake_after);
        if deletes > 0 {
            let mut main = main;
            let deleted: redis::RedisResult<()> = delete.query_async(&mut main).await;
            if let Err(err) = deleted {
                // They were read; the next reads start after them anyway.
                tracing::debug!(%err, "inbox entries not deleted");
            }
        }
    }
}

/// Hands a read's entries to their sessions; returns the deletions of what was handed over.
fn hand_over(
    streams: Vec<(String, Vec<Entry>)>,
    readers: &mut HashMap<String, Reader>,
    wake_key: &str,
    wake_after: &mut String,
) -> (redis::Pipeline, usize) {
    let mut delete = redis::pipe();
    let mut deletes = 0;
    for (key, entries) in streams {
        if key == wake_key {
            if let Some((last, _)) = entries.last() {
                wake_after.clone_from(last);
            }
            continue;
        }
        let Some(reader) = readers.get_mut(&key) else {
            continue;
        };
        let mut ids = Vec::with_capacity(entries.len());
        for (entry_id, fields) in &entries {
            reader.after.clone_from(entry_id);
            ids.push(entry_id.clone());
            if let Some(item) = inbound(&reader.id, entry_id, fields) {
                // Room was checked before the read; a receiver gone meanwhile only loses
                // what nobody reads.
                let _ = reader.sink.try_send(item);
            }
        }
        delete.cmd("XDEL").arg(&key).arg(&ids).ignore();
        deletes += 1;
    }
    (delete, deletes)
}

fn add(inner: &Weak<Inner>, readers: &mut HashMap<String, Reader>, registration: Registration) {
    let Some(store) = inner.upgrade() else {
        return;
    };
    let key = store.keys(&registration.id).inbox;
    readers.insert(
        key.clone(),
        Reader {
            id: registration.id,
            key,
            after: "0-0".to_owned(),
            sink: registration.sink,
        },
    );
}

/// Ends the streams of sessions no longer in the store (or expired): one `HMGET` each, in
/// one pipeline (a missing `last` is a missing session).
async fn sweep(store: &Inner, readers: &mut HashMap<String, Reader>) -> Result<(), StoreError> {
    let keys: Vec<String> = readers.keys().cloned().collect();
    let mut pipe = redis::pipe();
    for key in &keys {
        pipe.cmd("HMGET")
            .arg(store.keys(&readers[key].id).meta)
            .arg(&["last", "expired"][..]);
    }
    let mut conn = store.conn.clone();
    let states: Vec<(Option<String>, Option<String>)> = pipe
        .query_async(&mut conn)
        .await
        .map_err(|e| StoreError::store("inbox sweep", None, e))?;
    for (key, (last, expired)) in keys.iter().zip(states) {
        if last.is_none() || expired.as_deref() == Some("1") {
            // Dropping the sender ends the session's stream.
            readers.remove(key);
        }
    }
    Ok(())
}

/// One inbox entry as the producer receives it; a bad entry is reported and skipped so the
/// ones after it still arrive (only this crate writes inboxes).
fn inbound(id: &SessionId, entry_id: &str, fields: &[Vec<u8>]) -> Option<Inbound> {
    match codec::entry_field(fields, "k") {
        Some(b"c") => {
            let reason = codec::entry_field(fields, "j")
                .filter(|r| !r.is_empty())
                .map(|r| String::from_utf8_lossy(r).into_owned());
            Some(Inbound::Cancel { reason })
        }
        _ => match codec::message_of(id, entry_id, fields) {
            Ok(message) => Some(Inbound::Message(message)),
            Err(err) => {
                tracing::error!(session = %id, %err, "inbox entry skipped");
                None
            }
        },
    }
}
