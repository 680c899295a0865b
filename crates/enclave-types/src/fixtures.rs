//! Deterministic sample streams for benchmarks, tests and fuzz seeds (cargo feature `fixtures`).

use crate::event::{
    EventPayload, HeartbeatPayload, LogLevel, LogPayload, StdoutPayload, StreamEvent,
    ToolCallPayload, ToolProgressPayload, ToolProgressPhase,
};
use crate::id::{CallId, SessionId};
use crate::raw::RawJson;
use crate::timestamp::Timestamp;

/// SplitMix64: tiny, seedable, and good enough to vary sample events.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n`.
    #[allow(clippy::cast_possible_truncation)]
    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    /// UUID-shaped hex, so ids look like generated ones.
    fn uuid(&mut self) -> String {
        let (a, b) = (self.next(), self.next());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }
}

const WORDS: [&str; 8] = [
    "processed batch",
    "résumé parsed",
    "données reçues",
    "数据已同步",
    "cache warm ✓",
    "retrying upstream",
    "Grüße aus Köln",
    "ok 😀",
];

const TOOLS: [&str; 4] = [
    "users:list",
    "orders:get",
    "invoices:search",
    "weather:forecast",
];

/// `count` events of one session: a deterministic mix of `stdout`, `log` (with a small `data`
/// object), `tool_call` (with an `args` object), `heartbeat` and `tool_progress`, each about
/// 200 bytes as JSON, `seq` counting up from 1, some text non-ASCII. Same `seed`, same events.
///
/// # Panics
///
/// Never: every id, date-time and JSON text it builds is valid by construction.
pub fn mixed_stream(count: usize, seed: u64) -> Vec<StreamEvent> {
    let mut rng = SplitMix64(seed);
    let session_id = SessionId::new(format!("s_{}", rng.uuid())).expect("prefixed id");
    let mut call_id = CallId::new(format!("c_{}", rng.uuid())).expect("prefixed id");
    (1..=count as u64)
        .map(|seq| {
            let word = WORDS[rng.below(WORDS.len() as u64)];
            let n = rng.next() % 100_000;
            let payload = match rng.below(5) {
                0 => EventPayload::Stdout(StdoutPayload {
                    chunk: format!("[worker {n:05}] {word}: step {seq} of the nightly import finished in {} ms\n", n % 977),
                }),
                1 => EventPayload::Log(LogPayload {
                    level: [LogLevel::Debug, LogLevel::Info, LogLevel::Warn, LogLevel::Error][rng.below(4)],
                    message: format!("{word} for tenant {n}"),
                    data: Some(
                        RawJson::from_string(format!(
                            r#"{{"step":{seq},"attempt":{},"ok":true,"tag":"{word}"}}"#,
                            n % 5
                        ))
                        .expect("valid JSON"),
                    ),
                }),
                2 => {
                    call_id = CallId::new(format!("c_{}", rng.uuid())).expect("prefixed id");
                    EventPayload::ToolCall(ToolCallPayload {
                        call_id: call_id.clone(),
                        tool_name: TOOLS[rng.below(TOOLS.len() as u64)].to_owned(),
                        args: RawJson::from_string(format!(r#"{{"limit":{},"query":"{word}"}}"#, n % 100))
                            .expect("valid JSON"),
                    })
                }
                3 => EventPayload::Heartbeat(HeartbeatPayload {
                    ts: Timestamp::new(
                        "ts",
                        format!(
                            "2026-11-28T{:02}:{:02}:{:02}.{:03}Z",
                            (seq / 3600) % 24,
                            (seq / 60) % 60,
                            seq % 60,
                            n % 1000
                        ),
                    )
                    .expect("valid date-time"),
                }),
                _ => {
                    let total = 1_000 + n * 10;
                    EventPayload::ToolProgress(ToolProgressPayload {
                        call_id: call_id.clone(),
                        phase: [
                            ToolProgressPhase::Connecting,
                            ToolProgressPhase::Sending,
                            ToolProgressPhase::Receiving,
                            ToolProgressPhase::Processing,
                        ][rng.below(4)],
                        bytes_received: Some(total / 3),
                        total_bytes: Some(total),
                        #[allow(clippy::cast_precision_loss)]
                        elapsed_ms: (n % 30_000) as f64,
                    })
                }
            };
            StreamEvent::new(session_id.clone(), seq, payload)
        })
        .collect()
}
