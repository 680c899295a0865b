//! Per-connection log rate limiting: a peer that sends one bad thing after another gets a
//! few log lines and a count, not one line each.

use std::time::{Duration, Instant};

/// Lines a budget allows per window.
const LOG_BURST: u32 = 10;

/// The window of a budget.
const LOG_WINDOW: Duration = Duration::from_mins(1);

/// At most [`LOG_BURST`] lines per [`LOG_WINDOW`]; the lines left out are counted and
/// reported (one WARN line) when the next window opens or the budget drops.
#[derive(Debug)]
pub(crate) struct LogBudget {
    window: Instant,
    used: u32,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            window: Instant::now(),
            used: 0,
            suppressed: 0,
        }
    }
}

impl LogBudget {
    /// Whether one more line may be logged now; counts it either way.
    pub(crate) fn allow(&mut self) -> bool {
        if self.window.elapsed() >= LOG_WINDOW {
            self.report();
            self.window = Instant::now();
            self.used = 0;
        }
        if self.used < LOG_BURST {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }

    /// Runs `emit` (a `tracing` call) when the budget allows one more line.
    pub(crate) fn log(&mut self, emit: impl FnOnce()) {
        if self.allow() {
            emit();
        }
    }

    fn report(&mut self) {
        if self.suppressed > 0 {
            tracing::warn!(
                suppressed = self.suppressed,
                "similar log lines suppressed (at most {LOG_BURST} per {} s)",
                LOG_WINDOW.as_secs()
            );
            self.suppressed = 0;
        }
    }
}

impl Drop for LogBudget {
    fn drop(&mut self) {
        self.report();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_budget_allows_a_burst_then_counts_what_it_leaves_out() {
        let mut budget = LogBudget::default();
        let allowed = (0..100).filter(|_| budget.allow()).count();
        assert_eq!(allowed, LOG_BURST as usize);
        assert_eq!(budget.suppressed, 100 - u64::from(LOG_BURST));
        // A new window allows a new burst and reports the count.
        budget.window = Instant::now().checked_sub(LOG_WINDOW).unwrap();
        assert!(budget.allow());
        assert_eq!(budget.suppressed, 0);
        assert_eq!(budget.used, 1);
    }
}
