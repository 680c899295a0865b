//! `enclave serve --metrics-listen`: a scripted session (one read to its end, a resume
//! refused, a live one deleted) moves the transport's and the hub's metrics, and what the
//! metrics port serves passes `promtool check metrics`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::served::{wait_for_exit, Served, TIMEOUT};

/// Where Debian's `prometheus` package puts `promtool`.
const PROMTOOL: &str = "/usr/bin/promtool";

/// A socket to `authority` whose reads give up after [`TIMEOUT`].
fn connect(authority: &str) -> TcpStream {
    let socket = TcpStream::connect(authority).expect("connect");
    socket.set_read_timeout(Some(TIMEOUT)).expect("a timeout");
    socket
}

/// `request` (a whole HTTP/1.0 or `Connection: close` request) on `authority`: the answer
/// to its end.
fn exchange(authority: &str, request: &str) -> String {
    let mut socket = connect(authority);
    socket.write_all(request.as_bytes()).expect("write");
    let mut answer = Vec::new();
    socket.read_to_end(&mut answer).expect("the whole answer");
    String::from_utf8(answer).expect("UTF-8")
}

/// The status code of an answer.
fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// The value of header `name` (any case) in an answer's head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// The value of the sample `series` (name and labels as exposed) in `text`.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.parse().ok()
    })
}

/// The sum of every sample whose series starts with `prefix` and passes `keep`.
fn sum_of(text: &str, prefix: &str, keep: impl Fn(&str) -> bool) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(prefix) && keep(line))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

/// Checks `text` with `promtool check metrics` (its lint included).
fn promtool_check(text: &str) {
    assert!(
        std::path::Path::new(PROMTOOL).exists(),
        "{PROMTOOL} is missing: install Debian's prometheus package (apt-get install prometheus)"
    );
    let mut child = Command::new(PROMTOOL)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool starts");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(text.as_bytes())
        .expect("the metrics reach promtool");
    drop(stdin);
    let status = wait_for_exit(&mut child, TIMEOUT).expect("promtool ends in time");
    let mut said = String::new();
    if let Some(mut out) = child.stdout.take() {
        let _ = out.read_to_string(&mut said);
    }
    if let Some(mut err) = child.stderr.take() {
        let _ = err.read_to_string(&mut said);
    }
    assert!(status.success(), "promtool check metrics: {said}\n{text}");
}

#[test]
#[allow(clippy::too_many_lines)] // one scripted session, then what it moved
fn a_scripted_session_moves_the_transport_and_hub_metrics_and_promtool_accepts_them() {
    let served =
        Served::start_with_metrics(&["--generate", "200", "--rate", "400", "--heartbeat-ms", "50"]);
    let authority = served.authority().to_owned();
    let metrics = served
        .metrics_url
        .clone()
        .expect("the metrics URL on the second line");
    let metrics_authority = metrics.trim_start_matches("http://").to_owned();

    // 1. A session read to its end (HTTP/1.0: the body is the NDJSON up to the close).
    let answer = exchange(
        &authority,
        &format!(
            "POST /sessions HTTP/1.0\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        ),
    );
    assert_eq!(status(&answer), 200, "{answer}");
    let (_, body) = answer.split_once("\r\n\r\n").expect("a head");
    let events: Vec<serde_json::Value> = body
        .lines()
        .map(|line| serde_json::from_str(line).expect("one event per line"))
        .collect();
    let last = events.last().expect("events");
    assert_eq!(last["type"], "final", "{last}");
    let read = events.len();
    assert!(
        read >= 202,
        "session_init, 200 events and the final: {read}"
    );

    // 2. A resume refused: no such session, and no token.
    let refused = exchange(
        &authority,
        &format!(
            "GET /sessions/s_nope/stream?fromSeq=2 HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        ),
    );
    let refused_status = status(&refused);
    assert!(
        (400..500).contains(&refused_status),
        "a resume of an unknown session is refused: {refused}"
    );

    // 3. A live session deleted: its first events read, then `DELETE` with its token.
    let mut live = connect(&authority);
    write!(
        live,
        "POST /sessions HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    )
    .expect("the create is written");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\"seq\":3") {
        let n = live.read(&mut buf).expect("the stream's first events");
        assert!(n > 0, "the stream ended before seq 3");
        seen.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&seen).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").expect("a head");
    let id = header(head, "x-session-id")
        .expect("X-Session-ID")
        .to_owned();
    let token = header(head, "x-enclave-resume-token")
        .expect("X-Enclave-Resume-Token")
        .to_owned();
    let deleted = exchange(
        &authority,
        &format!(
            "DELETE /sessions/{id} HTTP/1.1\r\nHost: {authority}\r\nX-Enclave-Resume-Token: {token}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        ),
    );
    assert_eq!(status(&deleted), 200, "{deleted}");
    // Its stream ends (with the cancel's `final`), within the read timeout.
    loop {
        match live.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(err) => panic!("the deleted session's stream did not end: {err}"),
        }
    }
    assert!(
        String::from_utf8_lossy(&seen).contains("SESSION_CANCELLED"),
        "the deleted session ends with its cancel"
    );

    // 4. The metrics port: what the script moved. The stream counts close once the
    // connections are gone: looked at again until then, within the timeout.
    let scrape = || {
        let answer = exchange(
            &metrics_authority,
            &format!("GET /metrics HTTP/1.0\r\nHost: {metrics_authority}\r\n\r\n"),
        );
        assert_eq!(status(&answer), 200, "{answer}");
        let (_, body) = answer.split_once("\r\n\r\n").expect("a head");
        body.to_owned()
    };
    let started = Instant::now();
    let mut text = scrape();
    while value(
        &text,
        "enclave_streams{carrier=\"http\",encrypted=\"false\"}",
    ) != Some(0.0)
    {
        assert!(
            started.elapsed() < TIMEOUT,
            "the streams never closed:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(20));
        text = scrape();
    }
    let expect = |series: &str, wanted: f64| {
        assert_eq!(value(&text, series), Some(wanted), "{series} in\n{text}");
    };
    let at_least = |series: &str, floor: f64| {
        let got = value(&text, series).unwrap_or_else(|| panic!("{series} missing in\n{text}"));
        assert!(got >= floor, "{series} is {got}, expected at least {floor}");
    };
    // The transport's.
    expect(
        "enclave_streams_opened_total{carrier=\"http\",encrypted=\"false\"}",
        2.0,
    );
    expect(
        "enclave_streams_closed_total{carrier=\"http\",cause=\"finished\"}",
        2.0,
    );
    #[allow(clippy::cast_precision_loss)] // a few hundred events
    let events_read = read as f64;
    at_least(
        "enclave_events_written_total{carrier=\"http\"}",
        events_read + 4.0,
    );
    let refusals = sum_of(&text, "enclave_resumes_total{carrier=\"http\",", |line| {
        !line.contains("outcome=\"ok\"")
    });
    assert!(
        (refusals - 1.0).abs() < f64::EPSILON,
        "one resume refused: {refusals} in\n{text}"
    );
    let stream_refusals = sum_of(&text, "enclave_refusals_total{", |line| {
        line.contains("route=\"/sessions/{id}/stream\"")
    });
    assert!(stream_refusals >= 1.0, "the refusal by route in\n{text}");
    // The hub's.
    expect("enclave_sessions_created_total", 2.0);
    expect("enclave_sessions_ended_total{how=\"final\"}", 1.0);
    expect("enclave_sessions_ended_total{how=\"deleted\"}", 1.0);
    expect("enclave_sessions_ended_total{how=\"cancelled\"}", 0.0);
    // The finished session waits out its grace period; the deleted one is gone.
    expect("enclave_sessions{state=\"completed\"}", 1.0);
    expect("enclave_sessions{state=\"running\"}", 0.0);
    at_least("enclave_heartbeats_total", 1.0);
    at_least("enclave_publish_to_write_seconds_count", 1.0);
    at_least("enclave_session_retained_events_count", 2.0);
    at_least("enclave_session_retained_bytes_count", 2.0);
    at_least(
        "enclave_store_operations_total{operation=\"append\"}",
        events_read,
    );
    // One call in 16 is timed, the first included.
    at_least(
        "enclave_store_operation_seconds_count{operation=\"append\"}",
        (events_read / 16.0).floor(),
    );
    expect("enclave_store_errors_total{operation=\"append\"}", 0.0);
    expect("enclave_leases_lost_total", 0.0);
    promtool_check(&text);
    dashboard_queries_only(&text);
}

/// The Grafana dashboard of docs/ (`docs/grafana/enclave-stream.json`) is a dashboard, and
/// every metric its queries name is one the server exposes (`# TYPE` in `text`; a
/// histogram's `_bucket`, `_sum` and `_count` belong to its family).
fn dashboard_queries_only(text: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/grafana/enclave-stream.json");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display())),
    )
    .expect("the dashboard is JSON");
    let families: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .collect();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 10, "a dashboard with panels");
    let mut named = 0;
    for panel in panels {
        let targets = panel["targets"].as_array().expect("every panel queries");
        assert!(!targets.is_empty(), "{}: no query", panel["title"]);
        for target in targets {
            let expr = target["expr"].as_str().expect("a PromQL expression");
            for name in metric_names(expr) {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| {
                        name.strip_suffix(suffix)
                            .filter(|family| families.contains(family))
                    })
                    .unwrap_or(&name);
                assert!(
                    families.contains(family),
                    "{}: `{name}` is not a metric the server exposes ({expr})",
                    panel["title"]
                );
                named += 1;
            }
        }
    }
    assert!(named >= panels.len(), "the queries name metrics");
}

/// The `enclave_…` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("enclave_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        names.push(name);
    }
    names
}
