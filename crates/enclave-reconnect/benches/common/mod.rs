//! What the network benchmarks share: sizes (shrunk by `ENCLAVE_BENCH_QUICK=1`; the
//! events of the main session set by `ENCLAVE_BENCH_EVENTS=N`), the
//! publish-time side table, percentiles, medians and the process's resident memory.

#![allow(dead_code)] // each bench uses its own subset

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Whether `ENCLAVE_BENCH_QUICK` asks for a quick run (sizes divided by ten).
pub(crate) fn quick() -> bool {
    std::env::var_os("ENCLAVE_BENCH_QUICK").is_some_and(|v| !v.is_empty() && v != "0")
}

/// `full`, or a tenth of it (at least 1) for a quick run; `ENCLAVE_BENCH_EVENTS` overrides
/// the 200,000-event sizes.
pub(crate) fn size(full: usize) -> usize {
    if let Some(n) = std::env::var("ENCLAVE_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        if full > 100_000 {
            return n;
        }
    }
    if quick() {
        (full / 10).max(1)
    } else {
        full
    }
}

/// When each `seq` was published, as nanoseconds since `base` plus one (0: not yet). Both ends
/// of a benchmark run in one process, so the receiver looks the publish time up by `seq`.
#[derive(Debug)]
pub(crate) struct Stamps {
    base: Instant,
    at: Vec<AtomicU64>,
}

impl Stamps {
    /// Room for seqs `0..=max_seq`.
    pub(crate) fn new(max_seq: usize) -> Self {
        Self {
            base: Instant::now(),
            at: (0..=max_seq).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Records that `seq` is being published now.
    #[allow(clippy::cast_possible_truncation)] // nanoseconds of a benchmark fit in u64
    pub(crate) fn mark(&self, seq: u64) {
        if let Some(slot) = usize::try_from(seq).ok().and_then(|i| self.at.get(i)) {
            slot.store(self.base.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
        }
    }

    /// Time since `seq` was published, if it was.
    pub(crate) fn since(&self, seq: u64) -> Option<Duration> {
        let slot = usize::try_from(seq).ok().and_then(|i| self.at.get(i))?;
        let at = slot.load(Ordering::Relaxed).checked_sub(1)?;
        Some(self.base.elapsed().saturating_sub(Duration::from_nanos(at)))
    }
}

/// The `p`-th percentile (0..=100) of `samples`, sorted in place; zero when empty.
#[allow(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss
)]
pub(crate) fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// Index of the median of `values`.
pub(crate) fn median_index(values: &[Duration]) -> usize {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by_key(|&i| values[i]);
    order[order.len() / 2]
}

/// `VmRSS` of process `pid` (`"self"` for this one) in bytes, from `/proc/PID/status`.
pub(crate) fn vm_rss(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// A duration as milliseconds with two decimals.
pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// Mebibytes with one decimal.
#[allow(clippy::cast_precision_loss)]
pub(crate) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
