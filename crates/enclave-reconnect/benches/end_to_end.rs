//! End to end over loopback: the session hub behind the transport server, read by the
//! transport client, plaintext and encrypted, HTTP NDJSON and WebSocket — against floors
//! measured in the same run: raw hyper and raw tokio-tungstenite carrying the same
//! pre-encoded bytes (the plaintext lines for the plaintext rows, the sealed `enc` lines
//! for the encrypted ones), read by a client that only splits lines. Beside each floor, the
//! same floor with a client that validates every line as ours does (parse into the
//! protocol model; for sealed lines, parse the envelope, decrypt, parse the event), and
//! for HTTP one that only checks each line is JSON: what reading the lines costs apart
//! from our stack. Then latency when the reader keeps up: the first 50,000 events offered at
//! 100,000 events/s to ours and to the raw floors. Then 1,000 sessions × 1,000 events at once.
//!
//! Run with `cargo bench -p enclave-reconnect --bench end_to_end`
//! (`ENCLAVE_BENCH_QUICK=1` divides the sizes by ten). Each row is the median of a few runs,
//! interleaved so machine noise hits every contender alike. Latency is the time from
//! `publish` (ours) or the hand-over of the line to the server task (floors) to the client
//! holding the decoded event (ours) or the split line (floors); the publish time of each
//! `seq` sits in a side table both ends share. MB/s counts the plaintext NDJSON bytes of the
//! events delivered (the same for every row), not the wire bytes.
//!
//! `ENCLAVE_BENCH_ONLY=http-plain` (or `http-encrypted`, `ws-plain`, `ws-encrypted`, or
//! `floor-http` / `floor-ws` alone or with `-json`, `-parse`, `-sealed` or `-open`) runs that
//! contender alone, for a profiler.
//!
//! The 1,000-session part runs the server in a child process (this same program, with
//! `ENCLAVE_BENCH_SERVER` set) so that its memory can be read apart from the clients':
//! `VmRSS` of the child before the sessions and once every session holds all its events.

mod common;

use std::io::{BufRead as _, Write as _};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::{median_index, mib, ms, percentile, size, vm_rss, Stamps};
use enclave_crypto::{accept_client_hello, ClientHandshake, Opener};
use enclave_reconnect::{Hub, HubConfig};
use enclave_transport::client::{connect, ClientConfig, NewSession, Open, Received};
use enclave_transport::{Server, ServerConfig};
use enclave_types::fixtures::mixed_stream;
use enclave_types::{
    EncryptionMode, EventPayload, FinalPayload, Frame, StdoutPayload, StreamEvent,
};
use futures::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::Frame as BodyFrame;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncBufReadExt as _;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

const RUNS: usize = 3;
const SEED: u64 = 0x5eed;
/// What our WebSocket server batches into one message, and what the floors batch likewise.
const BATCH_BYTES: usize = 64 * 1024;
const LIMIT: Duration = Duration::from_mins(1);
const SERVER_ENV: &str = "ENCLAVE_BENCH_SERVER";
/// Runs one contender alone (for a profiler); see [`profile_one`].
const ONLY_ENV: &str = "ENCLAVE_BENCH_ONLY";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Carrier {
    Http,
    Ws,
}

/// One run of one contender.
#[derive(Debug)]
struct Sample {
    events: usize,
    took: Duration,
    latencies: Vec<Duration>,
}

/// Our stack: a hub session served by the transport server on `127.0.0.1:0`, the payloads
/// published as fast as `publish` takes them, the transport client reading to `final`.
/// Returns the sample and the plaintext lines of the events as received.
async fn ours(
    payloads: &[EventPayload],
    carrier: Carrier,
    encrypted: bool,
    keep_lines: bool,
    pace: Option<f64>,
) -> (Sample, Vec<Bytes>) {
    let hub = Hub::new(HubConfig::default().with_heartbeat_ms(0));
    let server = Server::new(Arc::new(hub.clone()), ServerConfig::default());
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let serving = tokio::spawn(server.clone().serve(listener, std::future::pending()));

    // session_init is seq 1, then the payloads, then final.
    let stamps = Arc::new(Stamps::new(payloads.len() + 2));
    let app = {
        let hub = hub.clone();
        let stamps = Arc::clone(&stamps);
        let payloads = payloads.to_vec();
        tokio::spawn(async move {
            let session = hub.accept().await.expect("a session");
            let mut expected = 2;
            let pacer = Pacer::new(pace);
            for payload in payloads {
                pacer.wait(expected).await;
                stamps.mark(expected);
                let seq = session.handle.publish(payload).await.expect("publish");
                assert_eq!(
                    seq, expected,
                    "the hub numbers events from 2 after session_init"
                );
                expected += 1;
            }
            stamps.mark(expected);
            session
                .handle
                .finish(FinalPayload::new(true))
                .await
                .expect("finish");
        })
    };

    let scheme = match carrier {
        Carrier::Http => "http",
        Carrier::Ws => "ws",
    };
    let mode = if encrypted {
        EncryptionMode::Required
    } else {
        EncryptionMode::Disabled
    };
    let started = Instant::now();
    let mut conn = connect(
        &format!("{scheme}://{addr}"),
        Open::New(NewSession::new()),
        &ClientConfig::new()
            .with_encryption(mode)
            .with_resume_feature(false),
    )
    .await
    .expect("connect");
    let mut latencies = Vec::with_capacity(payloads.len() + 2);
    let mut lines = Vec::new();
    let mut events = 0;
    loop {
        match tokio::time::timeout(LIMIT, conn.next()).await {
            Ok(Some(Ok(Received::Event { event, .. }))) => {
                if let Some(latency) = stamps.since(event.seq) {
                    latencies.push(latency);
                }
                events += 1;
                if keep_lines {
                    let mut line = serde_json::to_vec(&event).expect("serializable");
                    line.push(b'\n');
                    lines.push(Bytes::from(line));
                }
                if matches!(event.payload, EventPayload::Final(_)) {
                    break;
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(err))) => panic!("{scheme} encrypted={encrypted}: {err}"),
            Ok(None) => panic!("{scheme} encrypted={encrypted}: the stream ended before final"),
            Err(tokio::time::error::Elapsed { .. }) => panic!(
                "{scheme} encrypted={encrypted}: no event for {LIMIT:?} after {events} events"
            ),
        }
    }
    let took = started.elapsed();
    conn.close().await;
    app.await.expect("the application task");
    server.shutdown();
    hub.shutdown();
    let _ = tokio::time::timeout(Duration::from_secs(5), serving).await;
    (
        Sample {
            events,
            took,
            latencies,
        },
        lines,
    )
}

/// Holds a producer to an offered rate: event `n` (from 1) goes out no earlier than
/// `n / rate` seconds after the start, checked every 64 events (the timer's resolution is a
/// millisecond). Without a rate, as fast as the consumer takes them.
struct Pacer {
    start: tokio::time::Instant,
    per_s: Option<f64>,
}

impl Pacer {
    fn new(per_s: Option<f64>) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            per_s,
        }
    }

    #[allow(clippy::cast_precision_loss)]
    async fn wait(&self, n: u64) {
        if let Some(per_s) = self.per_s {
            if n.is_multiple_of(64) {
                let at = self.start + Duration::from_secs_f64(n as f64 / per_s);
                tokio::time::sleep_until(at).await;
            }
        }
    }
}

/// The floors' producer: hands each line to the server task through a bounded channel,
/// stamping it, as the application publishes into the hub.
fn produce(lines: &[Bytes], stamps: &Arc<Stamps>, pace: Option<f64>) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(1024);
    let lines = lines.to_vec();
    let stamps = Arc::clone(stamps);
    tokio::spawn(async move {
        let pacer = Pacer::new(pace);
        for (seq, line) in (1..).zip(lines) {
            pacer.wait(seq).await;
            stamps.mark(seq);
            if tx.send(line).await.is_err() {
                return;
            }
        }
    });
    rx
}

/// Takes every line already available (at least one), up to [`BATCH_BYTES`], as one buffer.
async fn batch(rx: &mut mpsc::Receiver<Bytes>) -> Option<Bytes> {
    let first = rx.recv().await?;
    let mut out = BytesMut::with_capacity(BATCH_BYTES.max(first.len()));
    out.extend_from_slice(&first);
    while out.len() < BATCH_BYTES {
        match rx.try_recv() {
            Ok(line) => out.extend_from_slice(&line),
            Err(_) => break,
        }
    }
    Some(out.freeze())
}

/// Splits complete lines off `buf`, recording each one's latency by its position.
/// What a floor's client does with each line besides splitting it: nothing (the raw
/// floor), or validate it as our client does, so the cost of validation alone shows.
enum Check {
    /// Split lines only.
    Raw,
    /// Check that each line is JSON, building nothing (`serde::de::IgnoredAny`): the least
    /// any reader that looks at the lines does.
    Json,
    /// Parse and validate each plaintext line into the protocol model.
    Parse,
    /// Parse each `enc` line, decrypt it and parse and validate the event inside.
    Open(Box<Opener<StreamEvent>>),
}

impl Check {
    fn line(&mut self, line: &[u8]) {
        match self {
            Self::Raw => {}
            Self::Json => {
                serde_json::from_slice::<serde::de::IgnoredAny>(line).expect("a JSON line");
            }
            Self::Parse => {
                std::hint::black_box(frame(line));
            }
            Self::Open(opener) => match frame(line) {
                Frame::Encrypted(envelope) => {
                    std::hint::black_box(opener.open(&envelope).expect("an authentic line"));
                }
                other => panic!("a sealed floor carried a plaintext line: {other:?}"),
            },
        }
    }
}

/// Parses a line the way our client does: its UTF-8 checked once, then parsed from the text.
fn frame(line: &[u8]) -> Frame {
    let text = std::str::from_utf8(line).expect("a UTF-8 line");
    Frame::parse_str(text).expect("a valid line")
}

/// Splits complete lines off `buf`, checking each and recording its latency by position.
fn split_lines(
    buf: &mut BytesMut,
    seq: &mut u64,
    stamps: &Stamps,
    latencies: &mut Vec<Duration>,
    check: &mut Check,
) {
    while let Some(at) = buf.iter().position(|&b| b == b'\n') {
        let line = buf.split_to(at + 1);
        debug_assert!(line.len() > 1);
        check.line(&line[..at]);
        *seq += 1;
        if let Some(latency) = stamps.since(*seq) {
            latencies.push(latency);
        }
    }
}

/// The wire lines of an encrypted session: `lines` (plaintext events) sealed under fresh
/// keys, with the client's opener for them.
fn sealed(lines: &[Bytes]) -> (Vec<Bytes>, Opener<StreamEvent>) {
    let session_id = match Frame::parse_line(&lines[0]).expect("a valid line") {
        Frame::Event(event) => event.session_id,
        _ => panic!("the plaintext lines hold an envelope"),
    };
    let client = ClientHandshake::start().expect("handshake");
    let (hello, server_keys) =
        accept_client_hello(client.client_hello(), &session_id).expect("accept");
    let client_keys = client.finish(&hello, &session_id).expect("finish");
    let (mut sealer, _) = server_keys.into_ciphers().expect("server ciphers");
    let (_, opener) = client_keys.into_ciphers().expect("client ciphers");
    let mut out = BytesMut::new();
    let wire = lines
        .iter()
        .map(|line| {
            let json = line.strip_suffix(b"\n").unwrap_or(line);
            let Frame::Event(event) = Frame::parse_line(json).expect("a valid line") else {
                panic!("the plaintext lines hold an envelope");
            };
            sealer.seal_json_line(&event, json, &mut out).expect("seal");
            out.split().freeze()
        })
        .collect();
    (wire, opener)
}

/// Floor (a): a raw hyper HTTP/1.1 server streaming the lines as a chunked body, read by a
/// raw hyper client that splits lines.
async fn floor_http(lines: &[Bytes], mut check: Check, pace: Option<f64>) -> Sample {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let stamps = Arc::new(Stamps::new(lines.len()));
    let server = {
        let lines = lines.to_vec();
        let stamps = Arc::clone(&stamps);
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let service = hyper::service::service_fn(move |_request| {
                let rx = produce(&lines, &stamps, pace);
                let chunks = futures::stream::unfold(rx, |mut rx| async move {
                    let chunk = batch(&mut rx).await?;
                    Some((
                        Ok::<_, std::convert::Infallible>(BodyFrame::data(chunk)),
                        rx,
                    ))
                });
                async move {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/x-ndjson")
                            .body(StreamBody::new(chunks))
                            .expect("response"),
                    )
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(socket), service)
                .await;
        })
    };
    let started = Instant::now();
    let socket = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .expect("handshake");
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/stream")
        .header("host", addr.to_string())
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("response");
    let mut body = response.into_body();
    let mut buf = BytesMut::new();
    let (mut seq, mut latencies) = (0, Vec::with_capacity(lines.len()));
    while let Some(frame) = tokio::time::timeout(LIMIT, body.frame())
        .await
        .expect("a chunk in time")
    {
        if let Ok(data) = frame.expect("body").into_data() {
            buf.extend_from_slice(&data);
            split_lines(&mut buf, &mut seq, &stamps, &mut latencies, &mut check);
        }
    }
    let took = started.elapsed();
    assert_eq!(seq, lines.len() as u64, "floor HTTP lost lines");
    driver.abort();
    server.abort();
    Sample {
        events: lines.len(),
        took,
        latencies,
    }
}

/// Floor (b): a raw tokio-tungstenite server sending the lines batched into text messages
/// (up to 64 KiB, as our server batches), read by a raw tokio-tungstenite client.
async fn floor_ws(lines: &[Bytes], mut check: Check, pace: Option<f64>) -> Sample {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let stamps = Arc::new(Stamps::new(lines.len()));
    let server = {
        let lines = lines.to_vec();
        let stamps = Arc::clone(&stamps);
        tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            let mut ws = tokio_tungstenite::accept_async(socket)
                .await
                .expect("upgrade");
            let mut rx = produce(&lines, &stamps, pace);
            while let Some(chunk) = batch(&mut rx).await {
                let text = Utf8Bytes::try_from(chunk).expect("UTF-8 lines");
                if ws.send(Message::Text(text)).await.is_err() {
                    return;
                }
            }
            let _ = ws.close(None).await;
        })
    };
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/stream"))
        .await
        .expect("connect");
    let mut buf = BytesMut::new();
    let (mut seq, mut latencies) = (0, Vec::with_capacity(lines.len()));
    while let Some(message) = tokio::time::timeout(LIMIT, ws.next())
        .await
        .expect("a message in time")
    {
        match message {
            Ok(Message::Text(text)) => {
                buf.extend_from_slice(text.as_bytes());
                split_lines(&mut buf, &mut seq, &stamps, &mut latencies, &mut check);
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {}
        }
        if seq == lines.len() as u64 {
            break;
        }
    }
    let took = started.elapsed();
    assert_eq!(seq, lines.len() as u64, "floor WS lost lines");
    server.abort();
    Sample {
        events: lines.len(),
        took,
        latencies,
    }
}

#[allow(clippy::cast_precision_loss)]
fn rate(sample: &Sample) -> f64 {
    sample.events as f64 / sample.took.as_secs_f64()
}

/// Prints one row from the median run, with its ratio to the raw floor carrying the same
/// bytes and to that floor with a validating client; returns its events/s.
#[allow(clippy::cast_precision_loss)]
fn row(
    name: &str,
    samples: &mut [Sample],
    bytes_per_event: f64,
    floor: Option<f64>,
    validating: Option<f64>,
) -> f64 {
    let took: Vec<Duration> = samples.iter().map(|s| s.took).collect();
    let median = &mut samples[median_index(&took)];
    let events_per_s = rate(median);
    let p50 = percentile(&mut median.latencies, 50.0);
    let p99 = percentile(&mut median.latencies, 99.0);
    let ratio =
        |to: Option<f64>| to.map_or_else(String::new, |f| format!("{:.2}", events_per_s / f));
    println!(
        "{name:<26} {events_per_s:>10.0} {:>7.1} {:>10} {:>10} {:>9} {:>12}",
        events_per_s * bytes_per_event / 1e6,
        ms(p50),
        ms(p99),
        ratio(floor),
        ratio(validating),
    );
    events_per_s
}

/// Events per second offered in the paced part: well below every contender's rate, so
/// latency is the path's own and not time spent queued behind a publisher that runs ahead.
const PACED_RATE: f64 = 100_000.0;

/// Latency when the reader keeps up: the first events of the session offered at
/// [`PACED_RATE`], to ours and to the raw floors of the same bytes.
async fn paced(payloads: &[EventPayload], lines: &[Bytes], bytes_per_event: f64) {
    let events = size(50_000).min(lines.len());
    let payloads = &payloads[..events.saturating_sub(2)];
    let lines = &lines[..events];
    let (wire, _) = sealed(lines);
    let pace = Some(PACED_RATE);
    let mut samples: [Vec<Sample>; 8] = Default::default();
    for _ in 0..RUNS {
        samples[0].push(floor_http(lines, Check::Raw, pace).await);
        samples[1].push(ours(payloads, Carrier::Http, false, false, pace).await.0);
        samples[2].push(floor_http(&wire, Check::Raw, pace).await);
        samples[3].push(ours(payloads, Carrier::Http, true, false, pace).await.0);
        samples[4].push(floor_ws(lines, Check::Raw, pace).await);
        samples[5].push(ours(payloads, Carrier::Ws, false, false, pace).await.0);
        samples[6].push(floor_ws(&wire, Check::Raw, pace).await);
        samples[7].push(ours(payloads, Carrier::Ws, true, false, pace).await.0);
    }
    println!(
        "\n{events} events offered at {PACED_RATE:.0} events/s (latency when the reader keeps up)"
    );
    let names = [
        "floor HTTP",
        "HTTP plain",
        "floor HTTP sealed",
        "HTTP encrypted",
        "floor WS",
        "WS plain",
        "floor WS sealed",
        "WS encrypted",
    ];
    for (name, samples) in names.into_iter().zip(&mut samples) {
        row(name, samples, bytes_per_event, None, None);
    }
}

/// The 1,000 × 1,000 part's server: a hub behind the transport server on `127.0.0.1:0`
/// whose application publishes `events` small events into every session, then holds them
/// until a line arrives on stdin, then finishes them all. Prints `listening ADDR` first;
/// exits at stdin's end.
fn child_server(events: usize) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let hub = Hub::new(HubConfig::default().with_heartbeat_ms(0));
        let server = Server::new(Arc::new(hub.clone()), ServerConfig::default());
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let addr = listener.local_addr().expect("address");
        tokio::spawn(server.clone().serve(listener, std::future::pending()));
        let (release, released) = watch::channel(false);
        let app = {
            let hub = hub.clone();
            tokio::spawn(async move {
                while let Some(session) = hub.accept().await {
                    let mut released = released.clone();
                    tokio::spawn(async move {
                        for i in 0..events {
                            let chunk = format!("event {i}\n");
                            if session
                                .handle
                                .publish(StdoutPayload::new(chunk))
                                .await
                                .is_err()
                            {
                                return;
                            }
                        }
                        let _ = released.wait_for(|r| *r).await;
                        let _ = session.handle.finish(FinalPayload::new(true)).await;
                    });
                }
            })
        };
        println!("listening {addr}");
        std::io::stdout().flush().expect("stdout");
        // The first line releases the sessions; the end of stdin ends the process.
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        let _ = stdin.next_line().await;
        let _ = release.send(true);
        while let Ok(Some(_)) = stdin.next_line().await {}
        server.shutdown();
        hub.shutdown();
        app.abort();
    });
}

/// 1,000 sessions × 1,000 events at once, plaintext HTTP: total events/s, and the server's
/// memory per session once every session holds all its events.
#[allow(clippy::cast_precision_loss)]
async fn many_sessions(sessions: usize, events: usize) {
    let exe = std::env::current_exe().expect("this program");
    let mut child = Command::new(exe)
        .env(SERVER_ENV, events.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the server process");
    let pid = child.id().to_string();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut first)
        .expect("the server's address");
    let addr: SocketAddr = first
        .trim()
        .strip_prefix("listening ")
        .and_then(|a| a.parse().ok())
        .expect("listening ADDR");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = vm_rss(&pid).expect("the server's VmRSS");

    let url = format!("http://{addr}");
    let held = Arc::new(tokio::sync::Semaphore::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..sessions {
        let url = url.clone();
        let held = Arc::clone(&held);
        clients.spawn(async move {
            let mut conn = connect(&url, Open::New(NewSession::new()), &ClientConfig::new())
                .await
                .expect("connect");
            let mut received = 0;
            loop {
                match tokio::time::timeout(LIMIT, conn.next()).await {
                    Ok(Some(Ok(Received::Event { event, .. }))) => {
                        received += 1;
                        // session_init, then `events` events: the session is at its peak.
                        if event.seq == events as u64 + 1 {
                            held.add_permits(1);
                        }
                        if matches!(event.payload, EventPayload::Final(_)) {
                            break;
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(Some(Err(err))) => panic!("many sessions: {err}"),
                    Ok(None) => panic!("many sessions: the stream ended before final"),
                    Err(tokio::time::error::Elapsed { .. }) => {
                        panic!("many sessions: no event for {LIMIT:?}")
                    }
                }
            }
            conn.close().await;
            received
        });
    }
    let all = u32::try_from(sessions).expect("sessions fit u32");
    let _permits = tokio::time::timeout(LIMIT, held.acquire_many(all))
        .await
        .expect("every session at its peak in time")
        .expect("semaphore open");
    let delivered = started.elapsed();
    let peak = vm_rss(&pid).expect("the server's VmRSS");

    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "release").expect("release the sessions");
    let mut total = 0;
    while let Some(received) = clients.join_next().await {
        total += received.expect("client task");
    }
    drop(stdin);
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("the server exits");
    assert!(status.success(), "server process: {status}");

    let events_per_s = (sessions * (events + 1)) as f64 / delivered.as_secs_f64();
    let growth = peak.saturating_sub(before);
    println!(
        "\n{sessions} sessions x {events} events at once, plaintext HTTP, one client task each"
    );
    println!(
        "  all {} events (session_init included) delivered in {:.2} s: {events_per_s:.0} events/s total; {total} received with final",
        sessions * (events + 1),
        delivered.as_secs_f64()
    );
    println!(
        "  server VmRSS {} before, {} with every session at its peak: {:.1} KiB per session \
         ({events} events retained each)",
        mib(before),
        mib(peak),
        growth as f64 / 1024.0 / sessions as f64
    );
}

/// Runs one contender alone, [`RUNS`] times, for a profiler: `http-plain`, `http-encrypted`,
/// `ws-plain`, `ws-encrypted`, `floor-http` or `floor-ws`.
async fn profile_one(only: &str, payloads: &[EventPayload], lines: &[Bytes], bytes_per_event: f64) {
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        samples.push(match only {
            "http-plain" => ours(payloads, Carrier::Http, false, false, None).await.0,
            "http-encrypted" => ours(payloads, Carrier::Http, true, false, None).await.0,
            "ws-plain" => ours(payloads, Carrier::Ws, false, false, None).await.0,
            "ws-encrypted" => ours(payloads, Carrier::Ws, true, false, None).await.0,
            "floor-http" => floor_http(lines, Check::Raw, None).await,
            "floor-ws" => floor_ws(lines, Check::Raw, None).await,
            "floor-http-json" => floor_http(lines, Check::Json, None).await,
            "floor-http-parse" => floor_http(lines, Check::Parse, None).await,
            "floor-ws-json" => floor_ws(lines, Check::Json, None).await,
            "floor-ws-parse" => floor_ws(lines, Check::Parse, None).await,
            "floor-http-sealed" => floor_http(&sealed(lines).0, Check::Raw, None).await,
            "floor-ws-sealed" => floor_ws(&sealed(lines).0, Check::Raw, None).await,
            "floor-http-open" => {
                let (wire, opener) = sealed(lines);
                floor_http(&wire, Check::Open(Box::new(opener)), None).await
            }
            "floor-ws-open" => {
                let (wire, opener) = sealed(lines);
                floor_ws(&wire, Check::Open(Box::new(opener)), None).await
            }
            other => panic!(
                "{ONLY_ENV}={other}: expected http-plain, http-encrypted, ws-plain, ws-encrypted, \
                 or floor-http / floor-ws alone or with -json, -parse, -sealed or -open"
            ),
        });
    }
    row(only, &mut samples, bytes_per_event, None, None);
}

fn main() {
    if let Some(events) = std::env::var_os(SERVER_ENV) {
        let events = events
            .to_str()
            .and_then(|e| e.parse().ok())
            .expect("events per session");
        child_server(events);
        return;
    }
    let events = size(200_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // session_init and final come from the hub; the mix goes in between.
    let payloads: Vec<EventPayload> = mixed_stream(events - 2, SEED)
        .into_iter()
        .map(|event| event.payload)
        .collect();

    runtime.block_on(async {
        // Warm-up, and the plaintext lines exactly as our HTTP server writes them.
        let (_, lines) = ours(&payloads, Carrier::Http, false, true, None).await;
        assert_eq!(lines.len(), events);
        let bytes: usize = lines.iter().map(Bytes::len).sum();
        #[allow(clippy::cast_precision_loss)]
        let bytes_per_event = bytes as f64 / events as f64;

        if let Ok(only) = std::env::var(ONLY_ENV) {
            profile_one(&only, &payloads, &lines, bytes_per_event).await;
            return;
        }
        let (wire, _) = sealed(&lines);
        let sealed_bytes: usize = wire.iter().map(Bytes::len).sum();
        let mut samples: [Vec<Sample>; 12] = Default::default();
        let mut json_only = Vec::new();
        for _ in 0..RUNS {
            json_only.push(floor_http(&lines, Check::Json, None).await);
            samples[0].push(floor_http(&lines, Check::Raw, None).await);
            samples[1].push(floor_http(&lines, Check::Parse, None).await);
            samples[2].push(ours(&payloads, Carrier::Http, false, false, None).await.0);
            samples[3].push(floor_http(&wire, Check::Raw, None).await);
            let (fresh, opener) = sealed(&lines);
            samples[4].push(floor_http(&fresh, Check::Open(Box::new(opener)), None).await);
            samples[5].push(ours(&payloads, Carrier::Http, true, false, None).await.0);
            samples[6].push(floor_ws(&lines, Check::Raw, None).await);
            samples[7].push(floor_ws(&lines, Check::Parse, None).await);
            samples[8].push(ours(&payloads, Carrier::Ws, false, false, None).await.0);
            samples[9].push(floor_ws(&wire, Check::Raw, None).await);
            let (fresh, opener) = sealed(&lines);
            samples[10].push(floor_ws(&fresh, Check::Open(Box::new(opener)), None).await);
            samples[11].push(ours(&payloads, Carrier::Ws, true, false, None).await.0);
        }
        #[allow(clippy::cast_precision_loss)]
        let sealed_per_event = sealed_bytes as f64 / events as f64;
        println!(
            "{events} events per session ({bytes_per_event:.0} B/event as plaintext NDJSON, \
             {sealed_per_event:.0} B/event sealed), median of {RUNS} runs, loopback, {} worker threads",
            std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
        );
        println!(
            "{:<26} {:>10} {:>7} {:>10} {:>10} {:>9} {:>12}",
            "", "events/s", "MB/s", "p50", "p99", "vs floor", "vs floor+val"
        );
        let [http_floor, http_parse, http_plain, http_sealed, http_open, http_enc, ws_floor, ws_parse, ws_plain, ws_sealed, ws_open, ws_enc] =
            &mut samples;
        for (carrier, [floor, parse, plain, sealed_floor, open, encrypted]) in [
            ("HTTP", [http_floor, http_parse, http_plain, http_sealed, http_open, http_enc]),
            ("WS", [ws_floor, ws_parse, ws_plain, ws_sealed, ws_open, ws_enc]),
        ] {
            let f = row(&format!("floor {carrier}"), floor, bytes_per_event, None, None);
            if carrier == "HTTP" {
                row("floor HTTP + JSON check", &mut json_only, bytes_per_event, Some(f), None);
            }
            let v = row(&format!("floor {carrier} + validation"), parse, bytes_per_event, Some(f), None);
            row(&format!("{carrier} plain"), plain, bytes_per_event, Some(f), Some(v));
            let f = row(&format!("floor {carrier} sealed"), sealed_floor, bytes_per_event, None, None);
            let v = row(&format!("floor {carrier} sealed + open"), open, bytes_per_event, Some(f), None);
            row(&format!("{carrier} encrypted"), encrypted, bytes_per_event, Some(f), Some(v));
        }

        paced(&payloads, &lines, bytes_per_event).await;

        many_sessions(size(1_000), 1_000).await;
    });
}
