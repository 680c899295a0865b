//! `enclave serve` and `enclave connect` as other programs use them: the server started on
//! port 0 and its first line read for the address, then driven by a Node.js peer that behaves
//! like the TypeScript client `@enclave-vm/client` 2.15.2 (`tests/peers/ts-client.mjs`) and by
//! `enclave connect`, directly and through a proxy that cuts the connection mid-stream.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use enclave_testkit::http::{self, blocking};
use enclave_testkit::{CutProxy, Fault, ProxyConfig};
use serde_json::Value;

use crate::served;

use served::{seqs, spawn_ts_client, summary, Served, TIMEOUT};

/// Runs the TypeScript-client peer against `url` and returns its summary.
fn ts_client(url: &str) -> Value {
    summary(spawn_ts_client(url, &[]))
}

/// A [`CutProxy`] of `config`, on a one-thread runtime of its own that the test keeps.
fn proxied(config: ProxyConfig) -> (tokio::runtime::Runtime, CutProxy) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let proxy = runtime
        .block_on(CutProxy::start(config))
        .expect("the proxy starts");
    (runtime, proxy)
}

#[test]
fn the_typescript_client_reads_every_event_and_drops_none() {
    let served = Served::start(&[
        "--generate",
        "300",
        "--heartbeat-ms",
        "100",
        "--rate",
        "2000",
    ]);
    let summary = ts_client(&served.url);
    assert!(summary["error"].is_null(), "{summary}");
    assert_eq!(summary["dropped"], 0, "{summary}");
    assert_eq!(summary["final"], true, "{summary}");
    let seqs = seqs(&summary);
    // session_init, 300 events, final, and whatever heartbeats fell in between: every seq
    // from 1, once, in order.
    assert!(seqs.len() >= 302, "{} events", seqs.len());
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
}

#[test]
fn the_typescript_client_resumes_through_cuts_without_losing_or_repeating_an_event() {
    let served = Served::start(&[
        "--generate",
        "2000",
        "--heartbeat-ms",
        "1000",
        "--allow-tokenless-resume",
    ]);
    let target = served.authority().parse().expect("a socket address");
    let mut config = ProxyConfig::new(target).fault_after(20_000, 60_000);
    config.max_faults = 6;
    config.seed = 7;
    let (runtime, proxy) = proxied(config);
    let summary = ts_client(&proxy.http_url());
    assert!(summary["error"].is_null(), "{summary}");
    assert_eq!(summary["final"], true, "{summary}");
    let seqs = seqs(&summary);
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every seq once, in order, across {} reconnects",
        summary["reconnects"]
    );
    assert!(seqs.len() >= 2002, "{} events", seqs.len());
    assert!(proxy.faults() >= 2, "only {} cuts", proxy.faults());
    assert!(
        summary["reconnects"].as_u64().unwrap_or(0) >= 2,
        "{summary}"
    );
    // A line cut in half is all a cut costs the TypeScript client: it drops the fragment
    // and asks for that event again.
    assert!(
        summary["dropped"].as_u64().unwrap_or(0) <= proxy.faults(),
        "{summary}"
    );
    runtime.block_on(proxy.stop());
}

/// The reproduction: a producer that runs ahead (no `--rate`) fills socket buffers at
/// once, and a reset loses what sits in them, in the proxy, and unread at the client. Before
/// written events were held back, the events the peer had not read had already left
/// retention and every resume was refused `too_far_behind`.
#[test]
fn the_typescript_client_survives_resets_when_the_producer_runs_ahead() {
    let served = Served::start(&["--generate", "50000", "--allow-tokenless-resume"]);
    let target = served.authority().parse().expect("a socket address");
    let mut config = ProxyConfig::new(target).fault_after(900_000, 1_100_000);
    config.fault = Fault::Reset;
    config.max_faults = 10;
    config.seed = 15;
    let (runtime, proxy) = proxied(config);
    // 40 µs of work per event: the reader falls behind even a debug build's producer.
    let mut summary = summary(spawn_ts_client(&proxy.http_url(), &["--work-us", "40"]));
    let seqs = seqs(&summary);
    // The rest of the summary, for the messages.
    summary["seqs"] = Value::from(seqs.len());
    assert!(summary["error"].is_null(), "{summary}");
    assert_eq!(summary["final"], true, "{summary}");
    assert!(seqs.len() >= 50_002, "{} events", seqs.len());
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every seq once, in order, across {} reconnects",
        summary["reconnects"]
    );
    assert_eq!(
        proxy.faults(),
        10,
        "the proxy reset every connection it could"
    );
    runtime.block_on(proxy.stop());
}

/// `METHOD path` on `authority` with an empty body, by hand over a socket: the status code.
fn request(authority: &str, method: &str, path: &str) -> u16 {
    request_with_token(authority, method, path, None)
}

/// [`request`] with the session's resume token, when there is one.
fn request_with_token(authority: &str, method: &str, path: &str, token: Option<&str>) -> u16 {
    let token: Vec<(&str, &str)> = token
        .map(|t| ("X-Enclave-Resume-Token", t))
        .into_iter()
        .collect();
    blocking::status(authority, method, path, &token)
}

#[test]
fn a_delete_ends_the_typescript_clients_stream_with_final_at_once() {
    // A paced session that would run for minutes; the TypeScript client cancels without a
    // token (`--allow-tokenless-resume`, the mode it needs).
    let served = Served::start(&[
        "--generate",
        "100000",
        "--rate",
        "50",
        "--allow-tokenless-resume",
    ]);
    let id = enclave_types::SessionId::generate().as_str().to_owned();
    let child = spawn_ts_client(&served.url, &["--session-id", &id]);
    // Once the session streams, delete it.
    let started = std::time::Instant::now();
    while request(served.authority(), "GET", &format!("/sessions/{id}")) != 200 {
        assert!(
            started.elapsed() < TIMEOUT,
            "the peer never opened its session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let deleted = std::time::Instant::now();
    assert_eq!(
        request(served.authority(), "DELETE", &format!("/sessions/{id}")),
        200
    );
    let summary = summary(child);
    let took = deleted.elapsed();
    // Before: the stream just ended, the client waited for a `final` and reconnected into a
    // 404. Now `error` and `final` end it, at once, with no reconnect.
    assert!(summary["error"].is_null(), "{summary}");
    assert_eq!(summary["final"], true, "{summary}");
    assert_eq!(summary["reconnects"], 0, "{summary}");
    assert_eq!(summary["dropped"], 0, "{summary}");
    assert!(
        took < Duration::from_secs(2),
        "the final came {took:?} after the delete"
    );
    let seqs = seqs(&summary);
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // The session is gone: a resume is refused, never an empty 200.
    assert_eq!(
        request(
            served.authority(),
            "GET",
            &format!("/sessions/{id}/stream?from=1")
        ),
        404
    );
}

/// Issue 15.2: a cancel ends `enclave connect` as the broker's cancel ends the TypeScript
/// client: `error` SESSION_CANCELLED, then `final` (`ok: false`) as the last line, and exit 0
/// (the stream ended as the server meant it to), at once and without a reconnect.
#[test]
fn a_cancel_ends_enclave_connect_with_final_and_exit_0() {
    let served = Served::start(&["--generate", "100000", "--rate", "50"]);
    for url in [served.url.clone(), served.url.replacen("http", "ws", 1)] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
            .args(["connect", &url, "--encryption", "required"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("enclave connect starts");
        let stdin = child.stdin.take();
        // The `session ID token TOKEN epoch EPOCH` announcement, from standard error.
        let stderr = child.stderr.take().expect("piped stderr");
        let (said_tx, said_rx) = mpsc::channel();
        let errors = std::thread::spawn(move || {
            let mut all = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let words: Vec<&str> = line.split(' ').collect();
                if let ["session", id, "token", token, ..] = words.as_slice() {
                    let _ = said_tx.send(((*id).to_owned(), (*token).to_owned()));
                }
                all.push_str(&line);
                all.push('\n');
            }
            all
        });
        let (id, token) = said_rx
            .recv_timeout(TIMEOUT)
            .expect("a session announcement");
        std::thread::sleep(Duration::from_millis(200));
        let cancelled = std::time::Instant::now();
        let path = format!("/sessions/{id}/cancel");
        // Knowing the id is not enough; the session's token is.
        assert_eq!(request(served.authority(), "POST", &path), 401, "{url}");
        assert_eq!(
            request_with_token(served.authority(), "POST", &path, Some(&token)),
            200,
            "{url}"
        );
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        let output = rx
            .recv_timeout(TIMEOUT)
            .unwrap_or_else(|_| panic!("enclave connect (pid {pid}) went on after the cancel"))
            .expect("enclave connect's output");
        let took = cancelled.elapsed();
        drop(stdin);
        let stderr = errors.join().expect("standard error read");
        assert_eq!(output.status.code(), Some(0), "{url}: {stderr}");
        assert!(
            took < Duration::from_secs(2),
            "{url}: exited {took:?} after the cancel"
        );
        assert!(!stderr.contains("reconnect"), "{url}: {stderr}");
        let events = events(&output);
        let n = events.len();
        assert!(n >= 3, "{url}: {events:?}");
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>(), "{url}");
        let (error, last) = (&events[n - 2], &events[n - 1]);
        assert_eq!(error["type"], "error", "{url}: {error}");
        assert_eq!(
            error["payload"]["code"], "SESSION_CANCELLED",
            "{url}: {error}"
        );
        assert_eq!(error["payload"]["recoverable"], false, "{url}: {error}");
        assert_eq!(last["type"], "final", "{url}: {last}");
        assert_eq!(last["payload"]["ok"], false, "{url}: {last}");
        assert_eq!(
            last["payload"]["error"]["code"], "SESSION_CANCELLED",
            "{url}: {last}"
        );
    }
}

/// Runs `enclave connect <args>` with `input` on standard input, bounded by [`TIMEOUT`].
fn connect(args: &[&str], input: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .arg("connect")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("enclave connect starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    let input = input.to_owned();
    std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("enclave connect (pid {pid}) did not finish within {TIMEOUT:?}"))
        .expect("enclave connect's output")
}

fn events(output: &std::process::Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one event per line"))
        .collect()
}

/// `session ID token TOKEN epoch EPOCH` lines of standard error, as (id, token, epoch).
fn announcements(output: &std::process::Output) -> Vec<(String, String, String)> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split(' ').collect();
            match words.as_slice() {
                ["session", id, "token", token, "epoch", epoch] => {
                    Some(((*id).to_owned(), (*token).to_owned(), (*epoch).to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn connect_prints_every_event_once_over_http_and_websocket_encrypted() {
    let served = Served::start(&[
        "--generate",
        "40",
        "--heartbeat-ms",
        "100",
        "--encryption",
        "required",
    ]);
    for url in [served.url.clone(), served.url.replacen("http", "ws", 1)] {
        let output = connect(&[&url, "--encryption", "required"], "");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let events = events(&output);
        let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "{url}");
        assert_eq!(events[0]["type"], "session_init");
        assert_eq!(events.last().unwrap()["type"], "final");
        assert!(seqs.len() >= 42);
        let said = announcements(&output);
        assert!(
            !said.is_empty(),
            "{url}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(said[0].0, events[0]["sessionId"]);
    }
}

/// One session of `authority` read by hand (`POST /sessions`, the chunked body read to the
/// close and de-chunked): the events as the server serves them.
fn served_events(authority: &str) -> Vec<Value> {
    let headers = [
        ("Content-Type", "application/json"),
        ("Connection", "close"),
    ];
    let post = http::request("POST", "/sessions", authority, &headers, b"{}");
    blocking::exchange(authority, &post).json_lines()
}

/// `events` with what differs between two sessions of the same script left out: the session
/// id (wherever it appears) and the `session_init` payload (expiry, encryption).
fn normalized(events: &[Value]) -> Vec<Value> {
    events
        .iter()
        .map(|event| {
            let id = event["sessionId"].as_str().expect("a sessionId");
            let mut event: Value =
                serde_json::from_str(&event.to_string().replace(id, "s_SESSION")).unwrap();
            if event["type"] == "session_init" {
                event["payload"] = Value::Null;
            }
            event
        })
        .collect()
}

#[test]
fn connect_prints_the_served_events_over_http_and_websocket_plaintext_and_encrypted() {
    // Without heartbeats in between, two sessions of one `--generate` server carry the same
    // events but for their ids and `session_init`.
    let served = Served::start(&["--generate", "60"]);
    let expected = normalized(&served_events(served.authority()));
    assert_eq!(expected.len(), 62, "session_init, 60 events, final");
    let ws = served.url.replacen("http", "ws", 1);
    for (url, encryption) in [
        (&served.url, "disabled"),
        (&served.url, "required"),
        (&ws, "disabled"),
        (&ws, "required"),
    ] {
        let output = connect(&[url, "--encryption", encryption], "");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{url} {encryption}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8(output.stdout.clone()).expect("UTF-8");
        assert!(
            stdout.ends_with('\n'),
            "{url} {encryption}: every line ends"
        );
        // `events` checks one JSON value per line.
        let printed = events(&output);
        assert_eq!(
            printed[0]["payload"]["encryption"]["enabled"],
            encryption == "required",
            "{url} {encryption}"
        );
        assert_eq!(normalized(&printed), expected, "{url} {encryption}");
    }
}

#[test]
fn connect_resumes_a_session_from_a_seq_with_its_token() {
    use std::io::Read as _;
    let served = Served::start(&[
        "--generate",
        "3000",
        "--heartbeat-ms",
        "60000",
        "--rate",
        "500",
    ]);
    // First run: read ten events, then the client goes away (killed), as a crashed client
    // would; it has announced the session and its token on standard error.
    let mut first = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args(["connect", &served.url])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("enclave connect starts");
    let stdout = first.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            lines.push(line);
            if lines.len() == 10 {
                break;
            }
        }
        let _ = tx.send(lines);
    });
    let seen: Vec<Value> = rx
        .recv_timeout(TIMEOUT)
        .expect("ten events within the timeout")
        .iter()
        .map(|line| serde_json::from_str(line).expect("an event per line"))
        .collect();
    let _ = first.kill();
    let _ = first.wait();
    let mut stderr = String::new();
    let _ = first
        .stderr
        .take()
        .expect("piped stderr")
        .read_to_string(&mut stderr);
    let said: Vec<(String, String, String)> = stderr
        .lines()
        .filter_map(
            |line| match line.split(' ').collect::<Vec<_>>().as_slice() {
                ["session", id, "token", token, "epoch", epoch] => {
                    Some(((*id).to_owned(), (*token).to_owned(), (*epoch).to_owned()))
                }
                _ => None,
            },
        )
        .collect();
    let (id, token, epoch) = said
        .last()
        .cloned()
        .unwrap_or_else(|| panic!("a session line in {stderr}"));
    assert_eq!(seen.len(), 10);

    let from = seen.len() as u64 + 1;
    let second = connect(
        &[
            &served.url,
            "--session",
            &id,
            "--from",
            &from.to_string(),
            "--token",
            &token,
            "--epoch",
            &epoch,
        ],
        "",
    );
    assert_eq!(
        second.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let rest = events(&second);
    let seqs: Vec<u64> = seen
        .iter()
        .chain(&rest)
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(rest.last().unwrap()["type"], "final");
    // The token was rotated by the resume and announced.
    assert!(announcements(&second).iter().any(|(_, t, _)| *t != token));
}

#[test]
fn connect_refused_exits_1_and_bad_arguments_exit_2() {
    let served = Served::start(&["--generate", "5"]);
    let refused = connect(
        &[
            &served.url,
            "--session",
            "s_nobody",
            "--from",
            "1",
            "--token",
            "not-a-token",
        ],
        "",
    );
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("bad_token") || stderr.contains("RESUME_REFUSED"),
        "{stderr}"
    );
    let usage = connect(&[&served.url, "--from", "3"], "");
    assert_eq!(usage.status.code(), Some(2));
    let bad_id = connect(&[&served.url, "--session", "nope", "--from", "1"], "");
    assert_eq!(bad_id.status.code(), Some(2));
}

/// Issue 16: one address holds at most `--max-sessions-per-peer` live sessions; past it a
/// create is refused 503 `unavailable` with `Retry-After`, and other routes still answer.
#[test]
fn one_address_holds_at_most_its_live_sessions() {
    use std::io::Write as _;
    let served = Served::start(&[
        "--generate",
        "100000",
        "--rate",
        "20",
        "--max-sessions-per-peer",
        "2",
    ]);
    let post = |authority: &str| {
        let mut socket = blocking::connect(authority);
        let head = http::request("POST", "/sessions", authority, &[], b"");
        socket.write_all(&head).expect("write");
        let answer = blocking::read_head(&mut socket);
        (socket, answer.to_lowercase())
    };
    // Two paced sessions stay live while their connections stay open.
    let mut held = Vec::new();
    for _ in 0..2 {
        let (socket, head) = post(served.authority());
        assert!(head.starts_with("http/1.1 200"), "{head}");
        held.push(socket);
    }
    let (_socket, head) = post(served.authority());
    assert!(head.starts_with("http/1.1 503"), "{head}");
    assert!(head.contains("\r\nretry-after: 2\r\n"), "{head}");
    assert_eq!(request(served.authority(), "GET", "/health"), 200);
}

/// `enclave keygen --out FILE` in `dir`; returns the key file and the printed public key.
fn keygen(dir: &std::path::Path, name: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let key = dir.join(format!("{name}.pem"));
    let output = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args(["keygen", "--out"])
        .arg(&key)
        .output()
        .expect("enclave keygen runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let public = dir.join(format!("{name}.pub.pem"));
    std::fs::write(&public, &output.stdout).expect("write the public key");
    (key, public)
}

#[test]
fn a_pinned_server_key_is_checked_by_connect() {
    let dir = std::env::temp_dir().join(format!("enclave-pin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let (key, public) = keygen(&dir, "server");
    let (_, other_public) = keygen(&dir, "other");
    let key_arg = key.to_str().expect("UTF-8 path");
    let served = Served::start(&["--generate", "10", "--signing-key", key_arg]);
    for url in [served.url.clone(), served.url.replacen("http", "ws", 1)] {
        let pinned = connect(&[&url, "--server-key", public.to_str().unwrap()], "");
        assert_eq!(
            pinned.status.code(),
            Some(0),
            "{url}: {}",
            String::from_utf8_lossy(&pinned.stderr)
        );
        assert_eq!(events(&pinned).last().unwrap()["type"], "final");

        let wrong = connect(
            &[
                &url,
                "--server-key",
                other_public.to_str().unwrap(),
                "--max-attempts",
                "1",
            ],
            "",
        );
        assert_eq!(wrong.status.code(), Some(1), "{url}");
        assert!(
            events(&wrong).is_empty(),
            "{url}: no event before the signature is checked"
        );
        let stderr = String::from_utf8_lossy(&wrong.stderr);
        assert!(
            stderr.contains("ENCRYPTION_SIGNATURE_VERIFICATION_FAILED"),
            "{url}: {stderr}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn demo_reports_nothing_lost_or_duplicated() {
    let output = Command::new(env!("CARGO_BIN_EXE_enclave"))
        .args([
            "demo",
            "--events",
            "3000",
            "--messages",
            "30",
            "--cuts",
            "3",
        ])
        .output()
        .expect("enclave demo runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    for line in lines {
        assert!(
            line.contains("lost 0, duplicated 0; 30 messages up, lost 0, duplicated 0"),
            "{line}"
        );
    }
}

/// `enclave connect` buffers its output, yet a reader sees every event of a sparse stream at
/// once: here each event is published only after the reader has read the one before it, so
/// output held back until more events come (or until a buffer fills) never arrives and the
/// test fails at its bound instead of passing.
#[test]
fn connect_prints_each_event_of_a_paced_stream_before_the_next_is_published() {
    const EVENTS: usize = 20;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let running = runtime
        .block_on(enclave_reconnect::ServerBuilder::new().bind("127.0.0.1:0"))
        .expect("the server binds");
    let base = format!("http://{}", running.addr());
    for url in [base.clone(), base.replacen("http", "ws", 1)] {
        // The application: event i + 1 only once the reader has printed event i.
        let (read_tx, mut read_rx) = tokio::sync::mpsc::unbounded_channel::<usize>();
        let hub = running.hub().clone();
        let application = runtime.spawn(async move {
            let session = hub.accept().await.expect("a session opens");
            for i in 0..EVENTS {
                let chunk = enclave_types::StdoutPayload::new(format!("event {i}"));
                session.handle.publish(chunk).await.expect("published");
                if read_rx.recv().await != Some(i) {
                    return;
                }
            }
            let _ = session
                .handle
                .finish(enclave_types::FinalPayload::new(true))
                .await;
        });
        let mut child = Command::new(env!("CARGO_BIN_EXE_enclave"))
            .args(["connect", &url, "--encryption", "required"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("enclave connect starts");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let (line_tx, line_rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                if line_tx.send(line.expect("a line")).is_err() {
                    break;
                }
            }
        });
        let mut printed = 0;
        while printed < EVENTS {
            let line = line_rx.recv_timeout(TIMEOUT).unwrap_or_else(|_| {
                let _ = child.kill();
                panic!("{url}: event {printed} was not printed within {TIMEOUT:?}")
            });
            let event: Value = serde_json::from_str(&line).expect("one event per line");
            if event["type"] == "stdout" {
                assert_eq!(
                    event["payload"]["chunk"],
                    format!("event {printed}"),
                    "{url}"
                );
                read_tx.send(printed).expect("the application waits");
                printed += 1;
            }
        }
        let last: Value = serde_json::from_str(&line_rx.recv_timeout(TIMEOUT).expect("final"))
            .expect("one event per line");
        assert_eq!(last["type"], "final", "{url}");
        let status = served::wait_for_exit(&mut child, TIMEOUT)
            .unwrap_or_else(|| panic!("{url}: connect printed final but did not exit"));
        assert_eq!(status.code(), Some(0), "{url}");
        runtime.block_on(application).expect("the application ends");
    }
    runtime.block_on(running.stop()).expect("the server stops");
}

/// SIGTERM with a live stream: `enclave serve` ends the stream (so the client resumes
/// elsewhere) and exits 0 within its shutdown grace, instead of hanging on the connection or
/// dying mid-line.
#[test]
fn serve_ends_live_streams_and_exits_0_on_sigterm() {
    use std::io::{Read as _, Write as _};
    let mut served = Served::start(&["--generate", "100000", "--rate", "20"]);
    let mut socket = blocking::connect(served.authority());
    let json = [("Content-Type", "application/json")];
    socket
        .write_all(&http::request("POST", "/sessions", "x", &json, b"{}"))
        .expect("the request is written");
    // The head and the first events: the stream is live.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"seq\":3") {
        let n = socket.read(&mut buf).expect("the stream's first events");
        assert!(n > 0, "the stream ended before seq 3");
        seen.extend_from_slice(&buf[..n]);
    }
    assert!(
        seen.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&seen)
    );
    let status = served
        .terminate(TIMEOUT)
        .expect("enclave serve exits after SIGTERM");
    assert_eq!(status.code(), Some(0));
    // The stream ended: the terminating chunk came, or the connection closed.
    loop {
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(err) => panic!("the stream did not end: {err}"),
        }
    }
    let text = String::from_utf8_lossy(&seen);
    assert!(
        !text.contains("\"type\":\"final\""),
        "the session itself did not end: {text}"
    );
}
