//! Test support shared by the server tests: an in-memory [`SessionService`] that serves
//! `session_init`, N `stdout` events and `final` per session, checks resume tokens, and
//! records what clients sent; and a small HTTP/1.1 client over loopback.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use enclave_testkit::events::{final_ok, session_init, stdout};
use enclave_transport::{
    Attachment, CreateSession, EncodedEvent, EventSource, Outgoing, Refusal, RefusalReason,
    ResumeSession, Server, ServerConfig, SessionInfo, SessionService, Submit, SubmitReceipt,
    Upstream,
};
use enclave_types::{RuntimeChannelMessage, SessionId, SessionState, StreamEvent};
use futures::future::BoxFuture;
use futures::FutureExt as _;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

/// Every wait in these tests is bounded by this.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// What one fake session holds and saw.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) events: Vec<Arc<StreamEvent>>,
    pub(crate) token: String,
    pub(crate) epoch: u64,
    pub(crate) encrypted: bool,
    /// `code == "hold"`: no `final`; the stream stays open after the events.
    pub(crate) hold: bool,
    pub(crate) code: Option<String>,
    pub(crate) messages: Vec<RuntimeChannelMessage>,
    pub(crate) acks: Vec<u64>,
    pub(crate) submits_encrypted: Vec<bool>,
    pub(crate) written: u64,
    /// The reason of each cancellation, in order.
    pub(crate) cancelled: Vec<Option<String>>,
    /// The peer address the create carried.
    pub(crate) peer: Option<std::net::IpAddr>,
}

type Shared = Arc<Mutex<Record>>;

/// The fake service.
#[derive(Debug, Default)]
pub(crate) struct FakeService {
    pub(crate) sessions: Mutex<HashMap<SessionId, Shared>>,
    /// Events between `session_init` and `final` (default 3).
    pub(crate) events: usize,
    /// `GET /ready` answers as a server whose store is down.
    pub(crate) store_down: std::sync::atomic::AtomicBool,
}

impl FakeService {
    pub(crate) fn new(events: usize) -> Arc<Self> {
        Arc::new(Self {
            sessions: Mutex::default(),
            events,
            store_down: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub(crate) fn record(&self, id: &SessionId) -> Shared {
        Arc::clone(
            self.sessions
                .lock()
                .unwrap()
                .get(id)
                .expect("session exists"),
        )
    }

    fn attach(record: &Shared, id: &SessionId, from: u64, replay_marker: bool) -> Attachment {
        let r = record.lock().unwrap();
        let mut queue: VecDeque<Outgoing> = r
            .events
            .iter()
            .filter(|event| event.seq >= from)
            .map(|event| {
                let encoded = EncodedEvent::new(StreamEvent::clone(event)).expect("serializable");
                Outgoing::Event(Arc::new(encoded))
            })
            .collect();
        if replay_marker {
            queue.push_back(Outgoing::ReplayComplete {
                last_seq: r.events.last().map_or(0, |event| event.seq),
            });
        }
        let source = FakeSource {
            queue,
            hold: r.hold,
            record: Arc::clone(record),
        };
        let mut attachment = Attachment::new(
            id.clone(),
            r.token.clone(),
            r.epoch,
            Box::new(source),
            Arc::new(FakeUpstream(Arc::clone(record))),
        );
        attachment.encrypted = r.encrypted;
        attachment
    }
}

fn refuse(reason: RefusalReason, message: &str) -> Refusal {
    Refusal::new(reason, message)
}

fn token() -> String {
    enclave_crypto::generate_key_id()
}

impl SessionService for FakeService {
    fn create(&self, request: CreateSession) -> BoxFuture<'_, Result<Attachment, Refusal>> {
        async move {
            let id = request.session_id.clone();
            let mut sessions = self.sessions.lock().unwrap();
            if sessions.contains_key(&id) {
                return Err(refuse(RefusalReason::SessionExists, "session exists"));
            }
            // `code == "busy"`: refused as a full server that names its own delay.
            if request.code.as_deref() == Some("busy") {
                return Err(refuse(RefusalReason::Unavailable, "busy")
                    .with_retry_after(Duration::from_millis(6_500)));
            }
            let hold = request.code.as_deref() == Some("hold");
            let init = session_init(&id, request.encryption.clone());
            let mut events = vec![Arc::new(init)];
            for i in 0..self.events {
                let seq = events.len() as u64 + 1;
                events.push(Arc::new(stdout(&id, seq, format!("line {i}\n"))));
            }
            if !hold {
                let seq = events.len() as u64 + 1;
                events.push(Arc::new(final_ok(&id, seq)));
            }
            let record = Arc::new(Mutex::new(Record {
                events,
                token: token(),
                epoch: 7,
                encrypted: request.encrypted,
                hold,
                code: request.code.clone(),
                messages: Vec::new(),
                acks: Vec::new(),
                submits_encrypted: Vec::new(),
                written: 0,
                cancelled: Vec::new(),
                peer: request.peer,
            }));
            sessions.insert(id.clone(), Arc::clone(&record));
            drop(sessions);
            Ok(Self::attach(&record, &id, 1, false))
        }
        .boxed()
    }

    fn resume(&self, request: ResumeSession) -> BoxFuture<'_, Result<Attachment, Refusal>> {
        async move {
            let Some(token) = request.token else {
                return Err(refuse(RefusalReason::MissingToken, "no token"));
            };
            let record = self
                .sessions
                .lock()
                .unwrap()
                .get(&request.session_id)
                .cloned();
            let Some(record) = record.filter(|r| r.lock().unwrap().token == token) else {
                return Err(refuse(RefusalReason::BadToken, "wrong token"));
            };
            {
                let mut r = record.lock().unwrap();
                if request.epoch.is_some_and(|epoch| epoch != r.epoch) {
                    return Err(refuse(RefusalReason::EpochMismatch, "epoch"));
                }
                if r.encrypted && !request.encrypted {
                    return Err(refuse(RefusalReason::EncryptionRequired, "no downgrade"));
                }
                r.token = self::token();
            }
            let mut attachment = Self::attach(
                &record,
                &request.session_id,
                request.from,
                request.features.resume,
            );
            attachment.resumed = true;
            Ok(attachment)
        }
        .boxed()
    }

    fn submit(&self, request: Submit) -> BoxFuture<'_, Result<SubmitReceipt, Refusal>> {
        async move {
            let Some(token) = request.token else {
                return Err(refuse(RefusalReason::MissingToken, "no token"));
            };
            let record = self
                .sessions
                .lock()
                .unwrap()
                .get(&request.session_id)
                .cloned();
            let Some(record) = record.filter(|r| r.lock().unwrap().token == token) else {
                return Err(refuse(RefusalReason::BadToken, "wrong token"));
            };
            let mut r = record.lock().unwrap();
            r.submits_encrypted.push(request.encrypted);
            if let Some(ack) = request.ack {
                r.acks.push(ack);
            }
            r.messages.extend(request.messages);
            let held = r.messages.iter().filter_map(|m| m.seq).max().unwrap_or(0);
            Ok(SubmitReceipt::new(held))
        }
        .boxed()
    }

    fn info(&self, session_id: &SessionId) -> BoxFuture<'_, Result<SessionInfo, Refusal>> {
        let found = self.sessions.lock().unwrap().contains_key(session_id);
        let id = session_id.clone();
        async move {
            if !found {
                return Err(refuse(
                    RefusalReason::UnknownSession,
                    &format!("Session {id} not found"),
                ));
            }
            let mut info = SessionInfo::new(id, SessionState::Running, 1000, 61_000);
            info.duration_ms = 25;
            info.tool_call_count = 2;
            Ok(info)
        }
        .boxed()
    }

    fn list(&self) -> BoxFuture<'_, Result<Vec<SessionInfo>, Refusal>> {
        let ids: Vec<SessionId> = self.sessions.lock().unwrap().keys().cloned().collect();
        async move {
            Ok(ids
                .into_iter()
                .map(|id| SessionInfo::new(id, SessionState::Completed, 1000, 61_000))
                .collect())
        }
        .boxed()
    }

    fn delete(&self, session_id: &SessionId) -> BoxFuture<'_, Result<(), Refusal>> {
        let removed = self.sessions.lock().unwrap().remove(session_id).is_some();
        async move {
            if removed {
                Ok(())
            } else {
                Err(refuse(RefusalReason::UnknownSession, "not found"))
            }
        }
        .boxed()
    }

    fn cancel(
        &self,
        session_id: &SessionId,
        reason: Option<String>,
    ) -> BoxFuture<'_, Result<(), Refusal>> {
        let record = self.sessions.lock().unwrap().get(session_id).cloned();
        async move {
            let record =
                record.ok_or_else(|| refuse(RefusalReason::UnknownSession, "not found"))?;
            record.lock().unwrap().cancelled.push(reason);
            Ok(())
        }
        .boxed()
    }

    fn check_access(
        &self,
        session_id: &SessionId,
        token: Option<&str>,
    ) -> BoxFuture<'_, Result<(), Refusal>> {
        let record = self.sessions.lock().unwrap().get(session_id).cloned();
        let verdict = match token {
            None => Err(refuse(RefusalReason::MissingToken, "no token")),
            Some(token) if record.is_some_and(|r| r.lock().unwrap().token == token) => Ok(()),
            Some(_) => Err(refuse(RefusalReason::BadToken, "wrong token")),
        };
        async move { verdict }.boxed()
    }

    fn ready(&self) -> BoxFuture<'_, Result<(), Refusal>> {
        let down = self.store_down.load(std::sync::atomic::Ordering::Relaxed);
        async move {
            if down {
                Err(refuse(RefusalReason::Unavailable, "session store down"))
            } else {
                Ok(())
            }
        }
        .boxed()
    }
}

/// Replays a queue, then ends (or, for a held session, waits forever).
struct FakeSource {
    queue: VecDeque<Outgoing>,
    hold: bool,
    record: Shared,
}

impl EventSource for FakeSource {
    fn next(&mut self) -> BoxFuture<'_, Option<Outgoing>> {
        async move {
            match self.queue.pop_front() {
                Some(item) => Some(item),
                None if self.hold => futures::future::pending().await,
                None => None,
            }
        }
        .boxed()
    }

    fn written(&mut self, seq: u64) {
        let mut r = self.record.lock().unwrap();
        r.written = r.written.max(seq);
    }
}

struct FakeUpstream(Shared);

impl Upstream for FakeUpstream {
    fn deliver(&self, messages: Vec<RuntimeChannelMessage>) -> BoxFuture<'_, Result<u64, Refusal>> {
        async move {
            let mut r = self.0.lock().unwrap();
            r.messages.extend(messages);
            Ok(r.messages.iter().filter_map(|m| m.seq).max().unwrap_or(0))
        }
        .boxed()
    }

    fn ack(&self, seq: u64) {
        self.0.lock().unwrap().acks.push(seq);
    }
}

/// A server running on a loopback port, stopped by [`Running::stop`] or on drop.
pub(crate) struct Running {
    pub(crate) addr: SocketAddr,
    pub(crate) service: Arc<FakeService>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Running {
    pub(crate) async fn start(events: usize, config: ServerConfig) -> Self {
        let service = FakeService::new(events);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = Server::new(Arc::clone(&service) as Arc<dyn SessionService>, config);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(listener, async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            service,
            task: Some(task),
            stop: Some(stop),
        }
    }

    /// Signals shutdown and waits (bounded) for `serve` to return.
    pub(crate) async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(WAIT, task)
                .await
                .expect("serve returns after shutdown")
                .unwrap()
                .unwrap();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Sends one request on a fresh connection and returns the response head and streaming body.
pub(crate) async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> http::Response<Incoming> {
    let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(body.into())).unwrap();
    tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("response within the wait")
        .unwrap()
}

/// The whole body as text (bounded wait).
pub(crate) async fn text(response: http::Response<Incoming>) -> String {
    let body = tokio::time::timeout(WAIT, response.into_body().collect())
        .await
        .expect("body ends within the wait")
        .unwrap()
        .to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// The body as JSON.
pub(crate) async fn json(response: http::Response<Incoming>) -> serde_json::Value {
    serde_json::from_str(&text(response).await).unwrap()
}

/// The next complete line of a streaming body, or `None` at its end.
pub(crate) struct Lines {
    body: Incoming,
    pending: Vec<u8>,
}

impl Lines {
    pub(crate) fn new(response: http::Response<Incoming>) -> Self {
        Self {
            body: response.into_body(),
            pending: Vec::new(),
        }
    }

    pub(crate) async fn next(&mut self) -> Option<String> {
        loop {
            if let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=at).collect();
                return Some(String::from_utf8(line[..line.len() - 1].to_vec()).unwrap());
            }
            let frame = tokio::time::timeout(WAIT, self.body.frame())
                .await
                .expect("a line within the wait")?;
            if let Ok(data) = frame.unwrap().into_data() {
                self.pending.extend_from_slice(&data);
            }
        }
    }
}

/// A header as text.
pub(crate) fn header<'r>(response: &'r http::Response<Incoming>, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}
