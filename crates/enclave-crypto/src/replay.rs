//! Bounded nonce-reuse detection for an opener.
//!
//! Peers of the TypeScript implementation send two nonce styles under one key: counter nonces
//! (8 random prefix bytes + a 4-byte big-endian counter starting at 0) and fully random ones.
//! Counter nonces under the learned prefix are tracked with a sliding window, like IPsec's
//! anti-replay; any other nonce is remembered in a bounded FIFO set. Memory stays constant.

use std::collections::{HashSet, VecDeque};

use zeroize::Zeroize;

use crate::cipher::NONCE_LEN;

/// How many counters behind the highest seen are still told apart.
const WINDOW_BITS: u64 = 128;
/// How many non-counter nonces are remembered.
const RECENT_CAPACITY: usize = 1024;

/// Why a nonce was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Accepted before.
    Seen,
    /// Older than the window; it cannot be told apart from a replay.
    TooOld,
    /// The peer's counter passed the per-key message limit.
    PastLimit,
}

impl Refusal {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Self::Seen => "this nonce was already accepted under this key",
            Self::TooOld => "counter nonce older than the replay window",
            Self::PastLimit => "counter nonce at or past the per-key message limit",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct NonceGuard {
    /// The peer's counter prefix, learned from its first counter nonce (counter 0).
    prefix: Option<[u8; 8]>,
    /// Highest counter accepted under `prefix`.
    highest: u64,
    /// Bit `i` set: counter `highest - i` was accepted.
    window: u128,
    recent: HashSet<[u8; NONCE_LEN]>,
    recent_order: VecDeque<[u8; NONCE_LEN]>,
}

fn split(nonce: &[u8; NONCE_LEN]) -> ([u8; 8], u64) {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&nonce[..8]);
    let counter = u32::from_be_bytes([nonce[8], nonce[9], nonce[10], nonce[11]]);
    (prefix, u64::from(counter))
}

impl NonceGuard {
    /// Refuses a nonce accepted before; call before spending work on decryption.
    pub(crate) fn check(&self, nonce: &[u8; NONCE_LEN], limit: u64) -> Result<(), Refusal> {
        let (prefix, counter) = split(nonce);
        if self.prefix == Some(prefix) {
            if counter >= limit {
                return Err(Refusal::PastLimit);
            }
            if counter > self.highest {
                return Ok(());
            }
            let age = self.highest - counter;
            if age >= WINDOW_BITS {
                return Err(Refusal::TooOld);
            }
            if self.window & (1u128 << age) != 0 {
                return Err(Refusal::Seen);
            }
            return Ok(());
        }
        if self.recent.contains(nonce) {
            return Err(Refusal::Seen);
        }
        Ok(())
    }

    /// Records a nonce whose message authenticated; only then, so forgeries cannot fill it.
    pub(crate) fn record(&mut self, nonce: &[u8; NONCE_LEN]) {
        let (prefix, counter) = split(nonce);
        if self.prefix.is_none() && counter == 0 {
            // A random nonce ends in four zero bytes with probability 2^-32, so counter 0
            // marks the start of the peer's counter sequence.
            self.prefix = Some(prefix);
            self.highest = 0;
            self.window = 1;
            self.adopt_recent(prefix);
            return;
        }
        if self.prefix == Some(prefix) {
            self.mark(counter);
            return;
        }
        if self.recent.insert(*nonce) {
            self.recent_order.push_back(*nonce);
            if self.recent_order.len() > RECENT_CAPACITY {
                if let Some(oldest) = self.recent_order.pop_front() {
                    self.recent.remove(&oldest);
                }
            }
        }
    }
}

impl NonceGuard {
    /// Marks `counter` (under the learned prefix) as accepted in the window.
    fn mark(&mut self, counter: u64) {
        if counter > self.highest {
            let shift = counter - self.highest;
            self.window = if shift >= WINDOW_BITS {
                0
            } else {
                self.window << shift
            };
            self.window |= 1;
            self.highest = counter;
        } else if self.highest - counter < WINDOW_BITS {
            self.window |= 1u128 << (self.highest - counter);
        }
    }

    /// Moves nonces under a just-learned prefix from the FIFO set into the window: counters
    /// that arrived before counter 0 would otherwise open again once the window takes over.
    fn adopt_recent(&mut self, prefix: [u8; 8]) {
        if !self.recent_order.iter().any(|n| n[..8] == prefix) {
            return;
        }
        let mut kept = VecDeque::with_capacity(self.recent_order.len());
        for nonce in std::mem::take(&mut self.recent_order) {
            if nonce[..8] == prefix {
                self.recent.remove(&nonce);
                self.mark(split(&nonce).1);
            } else {
                kept.push_back(nonce);
            }
        }
        self.recent_order = kept;
    }
}

impl Drop for NonceGuard {
    fn drop(&mut self) {
        // The prefix and counters say where the peer is in its sequence; wipe them too.
        if let Some(prefix) = self.prefix.as_mut() {
            prefix.zeroize();
        }
        self.highest.zeroize();
        self.window.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter_nonce(prefix: u8, counter: u32) -> [u8; NONCE_LEN] {
        let mut nonce = [prefix; NONCE_LEN];
        nonce[8..].copy_from_slice(&counter.to_be_bytes());
        nonce
    }

    const LIMIT: u64 = 1 << 30;

    #[test]
    fn counter_nonces_are_accepted_once_in_any_order_within_the_window() {
        let mut guard = NonceGuard::default();
        for counter in [0, 1, 3, 2, 10] {
            let nonce = counter_nonce(7, counter);
            assert_eq!(guard.check(&nonce, LIMIT), Ok(()), "counter {counter}");
            guard.record(&nonce);
        }
        for counter in [0, 1, 2, 3, 10] {
            assert_eq!(
                guard.check(&counter_nonce(7, counter), LIMIT),
                Err(Refusal::Seen),
                "counter {counter}"
            );
        }
        assert_eq!(guard.check(&counter_nonce(7, 4), LIMIT), Ok(()));
    }

    #[test]
    fn counters_older_than_the_window_are_refused() {
        let mut guard = NonceGuard::default();
        guard.record(&counter_nonce(1, 0));
        guard.record(&counter_nonce(1, 500));
        assert_eq!(
            guard.check(&counter_nonce(1, 5), LIMIT),
            Err(Refusal::TooOld)
        );
        assert_eq!(guard.check(&counter_nonce(1, 500 - 127), LIMIT), Ok(()));
        assert_eq!(
            guard.check(&counter_nonce(1, 500 - 128), LIMIT),
            Err(Refusal::TooOld)
        );
    }

    #[test]
    fn counter_past_the_limit_is_refused() {
        let mut guard = NonceGuard::default();
        guard.record(&counter_nonce(1, 0));
        assert_eq!(
            guard.check(&counter_nonce(1, 1 << 30), LIMIT),
            Err(Refusal::PastLimit)
        );
    }

    #[test]
    fn counters_that_arrive_before_counter_zero_are_still_refused_after_it() {
        let mut guard = NonceGuard::default();
        // Counters 1, 2 and 100 overtake counter 0 (reordered in transit).
        for counter in [1, 2, 100] {
            let nonce = counter_nonce(3, counter);
            assert_eq!(guard.check(&nonce, LIMIT), Ok(()), "counter {counter}");
            guard.record(&nonce);
        }
        let other = counter_nonce(4, 9);
        guard.record(&other);
        guard.record(&counter_nonce(3, 0));
        // The window now holds them; the replays are refused, the gaps still open.
        for counter in [0, 1, 2, 100] {
            assert_eq!(
                guard.check(&counter_nonce(3, counter), LIMIT),
                Err(Refusal::Seen),
                "counter {counter}"
            );
        }
        for counter in [3, 99, 101] {
            assert_eq!(guard.check(&counter_nonce(3, counter), LIMIT), Ok(()));
        }
        // Another prefix stays in the FIFO set.
        assert_eq!(guard.check(&other, LIMIT), Err(Refusal::Seen));
        assert_eq!(guard.recent.len(), 1);
        assert_eq!(guard.recent_order.len(), 1);
    }

    #[test]
    fn window_edges_far_jumps_and_counter_zero() {
        let mut guard = NonceGuard::default();
        guard.record(&counter_nonce(5, 0));
        assert_eq!(guard.check(&counter_nonce(5, 0), LIMIT), Err(Refusal::Seen));
        // A jump of exactly the window size keeps only the new counter.
        guard.record(&counter_nonce(5, 128));
        assert_eq!(
            guard.check(&counter_nonce(5, 0), LIMIT),
            Err(Refusal::TooOld)
        );
        assert_eq!(guard.check(&counter_nonce(5, 1), LIMIT), Ok(()));
        // A jump of one less keeps the old highest at the window's far edge.
        guard.record(&counter_nonce(5, 255));
        assert_eq!(
            guard.check(&counter_nonce(5, 128), LIMIT),
            Err(Refusal::Seen)
        );
        assert_eq!(
            guard.check(&counter_nonce(5, 127), LIMIT),
            Err(Refusal::TooOld)
        );
        // The last counter below the limit is accepted once; the limit itself never.
        let last = counter_nonce(5, (1 << 30) - 1);
        assert_eq!(guard.check(&last, LIMIT), Ok(()));
        guard.record(&last);
        assert_eq!(guard.check(&last, LIMIT), Err(Refusal::Seen));
        assert_eq!(
            guard.check(&counter_nonce(5, u32::MAX), LIMIT),
            Err(Refusal::PastLimit)
        );
        assert_eq!(
            guard.check(&counter_nonce(5, 255), LIMIT),
            Err(Refusal::TooOld)
        );
    }

    #[test]
    fn random_nonces_are_remembered_up_to_the_capacity() {
        let mut guard = NonceGuard::default();
        let random = |i: usize| {
            let mut nonce = [0xa5u8; NONCE_LEN];
            nonce[..8].copy_from_slice(&(i as u64).to_be_bytes());
            nonce[11] = 1;
            nonce
        };
        for i in 0..=RECENT_CAPACITY {
            assert_eq!(guard.check(&random(i), LIMIT), Ok(()));
            guard.record(&random(i));
        }
        assert_eq!(
            guard.check(&random(RECENT_CAPACITY), LIMIT),
            Err(Refusal::Seen)
        );
        assert_eq!(guard.check(&random(1), LIMIT), Err(Refusal::Seen));
        // The oldest one was evicted to keep memory bounded.
        assert_eq!(guard.check(&random(0), LIMIT), Ok(()));
        assert_eq!(guard.recent.len(), RECENT_CAPACITY);
    }
}
