//! When to try again: the TypeScript client state machine's reconnect knobs and defaults,
//! with the `backoff` crate computing the delays. This file is the one place to swap it.

use std::time::Duration;

use backoff::backoff::Backoff as _;

/// How a [`ReconnectingStream`](super::ReconnectingStream) retries: at most `max_attempts`
/// failed attempts in a row, the first after `initial_delay`, each next one `multiplier`
/// times longer up to `max_delay`, each delay spread by ±`jitter` (a fraction) and never
/// above `max_delay`. The count starts over after every successful (re)connection.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// Failed attempts in a row before giving up. Default 5.
    pub max_attempts: u32,
    /// The first delay. Default 1000 ms.
    pub initial_delay: Duration,
    /// The longest delay. Default 30 000 ms.
    pub max_delay: Duration,
    /// How much longer each delay is than the one before. Default 2.
    pub multiplier: f64,
    /// The spread of each delay, as a fraction (0.3: ±30 %). Default 0.3.
    pub jitter: f64,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.3,
        }
    }
}

impl ReconnectPolicy {
    /// The default policy (the TypeScript client's).
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the number of failed attempts in a row before giving up.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the first delay.
    #[must_use]
    pub fn with_initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the longest delay.
    #[must_use]
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Sets the growth factor (values below 1 are taken as 1).
    #[must_use]
    pub fn with_multiplier(mut self, multiplier: f64) -> Self {
        self.multiplier = multiplier;
        self
    }

    /// Sets the spread, a fraction clamped to 0..=1.
    #[must_use]
    pub fn with_jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter;
        self
    }

    /// A fresh schedule of delays under this policy.
    pub fn schedule(&self) -> RetrySchedule {
        let multiplier = if self.multiplier.is_finite() {
            self.multiplier.max(1.0)
        } else {
            1.0
        };
        let jitter = if self.jitter.is_finite() {
            self.jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let inner = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(self.initial_delay)
            .with_randomization_factor(jitter)
            .with_multiplier(multiplier)
            .with_max_interval(self.max_delay)
            .with_max_elapsed_time(None)
            .build();
        RetrySchedule {
            inner,
            max_delay: self.max_delay,
            max_attempts: self.max_attempts,
            attempts: 0,
        }
    }
}

/// The longest server `Retry-After` a client honours; a longer one is read as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_mins(1);

/// The delays of one run of failures; [`reset`](Self::reset) after a success.
#[derive(Debug)]
pub struct RetrySchedule {
    inner: backoff::ExponentialBackoff,
    max_delay: Duration,
    max_attempts: u32,
    attempts: u32,
}

impl RetrySchedule {
    /// Counts one failed attempt and returns its number (from 1) and the delay before the
    /// next one, or `None` when the attempts are used up.
    pub fn next_delay(&mut self) -> Option<(u32, Duration)> {
        if self.attempts >= self.max_attempts {
            return None;
        }
        self.attempts += 1;
        // `max_elapsed_time` is off, so the schedule never ends on its own.
        let delay = self
            .inner
            .next_backoff()
            .unwrap_or(self.max_delay)
            .min(self.max_delay);
        Some((self.attempts, delay))
    }

    /// As [`next_delay`](Self::next_delay), but never shorter than `at_least` (what the
    /// server asked for with `Retry-After`), itself capped at [`MAX_RETRY_AFTER`] so a server
    /// cannot park a client for hours.
    pub fn next_delay_at_least(&mut self, at_least: Option<Duration>) -> Option<(u32, Duration)> {
        let (attempt, delay) = self.next_delay()?;
        let floor = at_least.map_or(Duration::ZERO, |floor| floor.min(MAX_RETRY_AFTER));
        Some((attempt, delay.max(floor)))
    }

    /// Failed attempts so far in this run.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Starts over, after a successful connection.
    pub fn reset(&mut self) {
        self.attempts = 0;
        self.inner.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_after_is_a_floor_capped_at_a_minute() {
        let policy = ReconnectPolicy::default()
            .with_initial_delay(Duration::from_millis(5))
            .with_max_delay(Duration::from_millis(40));
        let mut schedule = policy.schedule();
        let (_, delay) = schedule
            .next_delay_at_least(Some(Duration::from_secs(2)))
            .unwrap();
        assert_eq!(delay, Duration::from_secs(2));
        let (_, delay) = schedule
            .next_delay_at_least(Some(Duration::from_hours(1)))
            .unwrap();
        assert_eq!(delay, MAX_RETRY_AFTER);
        let (_, delay) = schedule.next_delay_at_least(None).unwrap();
        assert!(delay <= Duration::from_millis(40));
    }

    #[test]
    fn the_defaults_are_the_typescript_clients() {
        let policy = ReconnectPolicy::default();
        assert_eq!(policy.max_attempts, 5);
        assert_eq!(policy.initial_delay, Duration::from_secs(1));
        assert_eq!(policy.max_delay, Duration::from_secs(30));
        assert!((policy.multiplier - 2.0).abs() < f64::EPSILON);
        assert!((policy.jitter - 0.3).abs() < f64::EPSILON);
    }

    #[test]
    fn delays_grow_within_the_jitter_bounds_and_are_capped() {
        let policy = ReconnectPolicy::default().with_max_attempts(10);
        for _ in 0..50 {
            let mut schedule = policy.schedule();
            let mut nominal = 1000.0_f64;
            for attempt in 1..=10 {
                let (n, delay) = schedule.next_delay().unwrap();
                assert_eq!(n, attempt);
                let ms = delay.as_secs_f64() * 1000.0;
                let capped = nominal.min(30_000.0);
                assert!(
                    ms >= capped * 0.7 - 1.0,
                    "attempt {attempt}: {ms} ms < {capped} ms - 30 %"
                );
                assert!(
                    ms <= (capped * 1.3).min(30_000.0) + 1.0,
                    "attempt {attempt}: {ms} ms"
                );
                nominal *= 2.0;
            }
            assert_eq!(schedule.next_delay(), None, "ten attempts, then none");
        }
    }

    #[test]
    fn without_jitter_the_delays_are_exact_and_reset_starts_over() {
        let policy = ReconnectPolicy::default()
            .with_jitter(0.0)
            .with_max_attempts(7)
            .with_max_delay(Duration::from_secs(10));
        let mut schedule = policy.schedule();
        let delays: Vec<u64> = std::iter::from_fn(|| schedule.next_delay())
            .map(|(_, d)| u64::try_from(d.as_millis()).unwrap())
            .collect();
        assert_eq!(delays, [1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        assert_eq!(schedule.attempts(), 7);
        schedule.reset();
        assert_eq!(schedule.next_delay(), Some((1, Duration::from_secs(1))));
    }
}
