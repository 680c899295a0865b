//! The store's background work: following sessions produced elsewhere (blocking reads of
//! their event logs, with the lease check that ends a session whose producer died) and
//! renewing this process's leases. (Inboxes are read by `inboxes`.)

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use enclave_reconnect::store::{AppendedSender, EncodedEvent};
use enclave_reconnect::Error as StoreError;
use enclave_types::{ErrorInfo, EventPayload, FinalPayload, SessionId, StreamEvent};
use redis::aio::MultiplexedConnection;
use redis::Value;

use crate::codec::{self, Entry};
use crate::inner::{millis, Followed, Inner};
use crate::PRODUCER_LOST;

/// How long to wait before trying Redis again after a failure.
const RETRY: Duration = Duration::from_millis(250);

/// One blocking `XREAD` of `key` after entry `after`: `None` when it timed out.
async fn xread(
    conn: &mut MultiplexedConnection,
    key: &str,
    after: &str,
    block: Duration,
    count: usize,
) -> redis::RedisResult<Option<Vec<Entry>>> {
    let reply: Value = redis::cmd("XREAD")
        .arg("COUNT")
        .arg(count)
        .arg("BLOCK")
        .arg(millis(block))
        .arg("STREAMS")
        .arg(key)
        .arg(after)
        .query_async(conn)
        .await?;
    let streams: Option<Vec<(String, Vec<Entry>)>> = redis::from_redis_value(reply)?;
    Ok(streams.map(|streams| streams.into_iter().flat_map(|(_, e)| e).collect()))
}

/// Whether anyone still reads `sender`; if not, the follower leaves the map (under its lock,
/// so `watch` never hands out a receiver of a sender that is going).
fn abandoned(inner: &Inner, id: &SessionId, sender: &Arc<AppendedSender>) -> bool {
    let mut followed = inner.followed();
    if sender.receiver_count() > 0 {
        return false;
    }
    leave(&mut followed, id, sender);
    true
}

/// Leaves the map whatever the receivers: the session left the store, and dropping the
/// sender tells its readers so.
fn gone(inner: &Inner, id: &SessionId, sender: &Arc<AppendedSender>) {
    leave(&mut inner.followed(), id, sender);
}

/// Takes `sender` out of the map, if it is still the one there for `id`.
fn leave(
    followed: &mut HashMap<SessionId, Followed>,
    id: &SessionId,
    sender: &Arc<AppendedSender>,
) {
    if followed
        .get(id)
        .is_some_and(|held| Arc::ptr_eq(&held.sender, sender))
    {
        followed.remove(id);
    }
}

/// What the meta hash says about a followed session.
struct Progress {
    last: u64,
    finished: bool,
    /// The lease as stored (compared as written, so the script can check it is unchanged).
    lease: String,
}

/// A lease seen unchanged since a moment of this server's clock.
struct Suspect {
    lease: String,
    since: std::time::Instant,
}

/// The session's last seq, whether it has its `final`, and its lease; `None` once it left
/// the store or expired.
async fn progress(inner: &Inner, id: &SessionId) -> Result<Option<Progress>, StoreError> {
    let keys = inner.keys(id);
    let mut conn = inner.conn.clone();
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(&keys.meta)
        .arg(&["last", "fin_seq", "lease", "expired"][..])
        .query_async(&mut conn)
        .await
        .map_err(|e| codec::failed("follow", id, &e))?;
    let [last, fin_seq, lease, expired] = fields.as_slice() else {
        return Err(codec::corrupt(id, "HMGET replied with the wrong arity"));
    };
    let Some(last) = last else {
        return Ok(None);
    };
    if expired.as_deref() == Some("1") {
        return Ok(None);
    }
    let number = |field: &str, value: &str| {
        value
            .parse::<u64>()
            .map_err(|_| codec::corrupt(id, format_args!("field {field} is {value:?}")))
    };
    Ok(Some(Progress {
        last: number("last", last)?,
        finished: fin_seq.is_some(),
        lease: lease.clone().unwrap_or_default(),
    }))
}

/// Ends a session whose producer's lease lapsed with `final {ok: false}`, unless the
/// producer appended, finished or renewed meanwhile, or the lease has not run out by
/// Redis's clock (the script checks all of it).
async fn fail_producer(
    inner: &Inner,
    id: &SessionId,
    last: u64,
    lease: &str,
) -> Result<bool, StoreError> {
    let mut error = ErrorInfo::new(format!(
        "the producer of session {id} stopped renewing its lease (its server died or lost Redis)"
    ));
    error.code = Some(PRODUCER_LOST.to_owned());
    let mut payload = FinalPayload::new(false);
    payload.error = Some(error);
    let seq = last.saturating_add(1);
    let event = EncodedEvent::new(StreamEvent::new(
        id.clone(),
        seq,
        EventPayload::Final(payload),
    ))
    .map_err(|source| StoreError::Encode {
        session: id.clone(),
        seq,
        source,
    })?;
    let keys = inner.keys(id);
    let mut conn = inner.conn.clone();
    let appended: i64 = inner
        .scripts
        .fail_producer
        .key(&keys.meta)
        .key(&keys.events)
        .arg(last)
        .arg(lease)
        .arg(event.json())
        .arg(event.line_len())
        .invoke_async(&mut conn)
        .await
        .map_err(|e| codec::failed("fail_producer", id, &e))?;
    if appended == 1 {
        // The script ends a session once, whichever server runs it first: counted once.
        inner.config.metrics.lease_lost();
        tracing::warn!(session = %id, seq, "producer lease lapsed: session ended with final {{ok: false}}");
    }
    Ok(appended == 1)
}

/// Keeps the events the follower read (parsed and validated once, here) where this
/// process's readers take them without reading Redis again; returns the newest seq read.
/// An entry that does not read as an event is left for the readers' own read to report.
fn keep_read(
    inner: &Inner,
    id: &SessionId,
    sender: &Arc<AppendedSender>,
    entries: &[Entry],
) -> Option<u64> {
    let newest = entries
        .iter()
        .filter_map(|(entry_id, _)| codec::entry_seq(id, entry_id).ok())
        .max();
    // Parsed before the lock is taken (readers and `watch` take it too).
    let events: Result<Vec<_>, _> = entries.iter().map(|e| codec::event_of(id, e)).collect();
    let mut followed = inner.followed();
    if let Some(record) = followed
        .get_mut(id)
        .filter(|record| Arc::ptr_eq(&record.sender, sender))
    {
        match events {
            Ok(events) => {
                for event in events {
                    record.recent.keep(event, 0);
                }
            }
            Err(_) => record.recent.forget(),
        }
    }
    newest
}

/// Follows the event log of a session produced elsewhere: each append wakes `sender`'s
/// readers; a lapsed lease ends the session; a session that left the store drops the
/// sender. Ends when no reader is left.
pub(crate) async fn follow_events(inner: Arc<Inner>, id: SessionId, sender: Arc<AppendedSender>) {
    let keys = inner.keys(&id);
    let block = inner.config.block;
    let mut conn: Option<MultiplexedConnection> = None;
    let mut last: Option<u64> = None;
    // A live producer renews its lease three times per lease: one seen unchanged for two
    // renewal periods of this server's own clock, with Redis answering, is not renewed.
    // (Redis's clock, not this server's, decides whether it ran out.)
    let patience = inner.config.lease * 2 / 3;
    let mut suspect: Option<Suspect> = None;
    // Since when Redis has not answered this follower. A follower that has had no answer
    // for a whole lease stops: its readers then end their connections with an `unavailable`
    // refusal, so clients come back (to any server) instead of waiting on a silent stream.
    let mut failing_since: Option<std::time::Instant> = None;
    loop {
        if abandoned(&inner, &id, &sender) {
            return;
        }
        if failing_since.is_some_and(|since| since.elapsed() >= inner.config.lease) {
            tracing::warn!(
                session = %id,
                after = ?inner.config.lease,
                "Redis has not answered this session's follower: its connections here end with `unavailable`"
            );
            return gone(&inner, &id, &sender);
        }
        // Where to read from: the last seq at the start, so an append between `watch` and
        // the first read still wakes the readers.
        let after = match last {
            Some(last) => last,
            None => match progress(&inner, &id).await {
                Ok(Some(p)) => {
                    failing_since = None;
                    last = Some(p.last);
                    sender.send(p.last);
                    p.last
                }
                Ok(None) => return gone(&inner, &id, &sender),
                Err(err) => {
                    failing_since.get_or_insert_with(std::time::Instant::now);
                    tracing::debug!(session = %id, %err, "follower waits for Redis");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            },
        };
        if conn.is_none() {
            match inner.blocking_connection().await {
                Ok(c) => conn = Some(c),
                Err(err) => {
                    failing_since.get_or_insert_with(std::time::Instant::now);
                    tracing::debug!(session = %id, %err, "follower waits for Redis");
                    tokio::time::sleep(RETRY).await;
                    continue;
                }
            }
        }
        let Some(connection) = conn.as_mut() else {
            continue;
        };
        match xread(connection, &keys.events, &format!("{after}-0"), block, 1024).await {
            Ok(Some(entries)) => {
                suspect = None;
                failing_since = None;
                let newest = keep_read(&inner, &id, &sender, &entries);
                if let Some(newest) = newest {
                    last = Some(newest.max(after));
                    sender.send(newest.max(after));
                }
            }
            Ok(None) => {
                // The read answered (it timed out): Redis is there.
                failing_since = None;
                match progress(&inner, &id).await {
                    Ok(None) => return gone(&inner, &id, &sender),
                    Ok(Some(p)) if p.finished => suspect = None,
                    Ok(Some(p)) => match &suspect {
                        Some(s) if s.lease == p.lease && s.since.elapsed() >= patience => {
                            if let Err(err) = fail_producer(&inner, &id, p.last, &p.lease).await {
                                tracing::warn!(session = %id, %err, "lapsed lease not recorded");
                            }
                        }
                        Some(s) if s.lease == p.lease => {}
                        _ => {
                            suspect = Some(Suspect {
                                lease: p.lease,
                                since: std::time::Instant::now(),
                            });
                        }
                    },
                    Err(err) => {
                        // Redis did not answer: what was seen of the lease proves nothing.
                        failing_since.get_or_insert_with(std::time::Instant::now);
                        suspect = None;
                        tracing::debug!(session = %id, %err, "follower check failed");
                    }
                }
            }
            Err(err) => {
                suspect = None;
                failing_since.get_or_insert_with(std::time::Instant::now);
                tracing::debug!(session = %id, %err, "follower read failed; reconnecting");
                conn = None;
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}

/// Renews the leases of the sessions this process produces, three times per lease, until
/// the store is dropped.
pub(crate) async fn renew_leases(inner: Weak<Inner>) {
    let period = match inner.upgrade() {
        Some(inner) => inner.config.lease / 3,
        None => return,
    };
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.stopped.is_cancelled() {
            // The store shut down: its leases lapse, so other servers end its sessions.
            return;
        }
        let ids: Vec<SessionId> = inner
            .local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, local)| local.renewing)
            .map(|(id, _)| id.clone())
            .collect();
        if ids.is_empty() {
            continue;
        }
        // The script adds the lease to Redis's clock.
        let lease = millis(inner.config.lease);
        let renewals = ids.iter().map(|id| {
            let inner = Arc::clone(&inner);
            async move {
                let keys = inner.keys(id);
                let mut conn = inner.conn.clone();
                let renewed: redis::RedisResult<i64> = inner
                    .scripts
                    .renew
                    .key(&keys.meta)
                    .arg(lease)
                    .invoke_async(&mut conn)
                    .await;
                (id, renewed)
            }
        });
        for (id, renewed) in futures::future::join_all(renewals).await {
            match renewed {
                Ok(1) => {}
                // Nothing left to renew: the session left the store, or another server
                // ended it (its lease had lapsed) and this server's readers must see that.
                Ok(_) => match progress(&inner, id).await {
                    Ok(Some(p)) => inner.appended_elsewhere(id, p.last),
                    Ok(None) => inner.forget(id),
                    Err(err) => tracing::warn!(session = %id, %err, "lease state not read"),
                },
                Err(err) => tracing::warn!(session = %id, %err, "lease not renewed"),
            }
        }
    }
}
