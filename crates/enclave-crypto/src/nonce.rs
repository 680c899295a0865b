//! AES-GCM nonces: the counter nonces a sealer hands out, and the bounded memory an opener
//! keeps of the nonces it accepted.
//!
//! Peers of the TypeScript implementation send two nonce styles under one key: counter nonces
//! (8 random prefix bytes + a 4-byte big-endian counter starting at 0) and fully random ones.
//! The guard learns the peer's prefix from the first nonce it accepts, whatever its counter,
//! and tracks counters under that prefix with a sliding window like IPsec's anti-replay; any
//! other nonce is remembered in a bounded FIFO set. Memory stays constant.
//!
//! The guard is the second line of defence: an opener first refuses any `seq` that is not
//! after the last one it accepted, which no reordering or dropped line can switch off. The
//! guard then catches what the `seq` rule cannot see (a second sealer under the same key
//! reusing a nonce for a new `seq`).

use std::collections::{HashSet, VecDeque};

use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroize;

use crate::error::Error;

/// AES-GCM nonce length in bytes.
pub const NONCE_LEN: usize = 12;

/// One AES-GCM nonce.
pub(crate) type Nonce = [u8; NONCE_LEN];

/// How many counters behind the highest seen are still told apart.
const WINDOW_BITS: u64 = 128;
/// How many nonces outside the learned prefix are remembered.
const RECENT_CAPACITY: usize = 1024;

/// The counter nonces of one sealer: a random 8-byte prefix and a 4-byte big-endian counter,
/// never wrapping.
pub(crate) struct CounterNonces {
    prefix: [u8; 8],
    counter: u64,
    limit: u64,
}

impl CounterNonces {
    /// A fresh random prefix, the counter at 0, at most `limit` (≤ 2^32) nonces.
    pub(crate) fn new(limit: u64) -> Result<Self, Error> {
        let mut prefix = [0u8; 8];
        SystemRandom::new()
            .fill(&mut prefix)
            .map_err(|_| Error::RandomnessUnavailable {
                during: "choosing a nonce prefix",
            })?;
        Ok(Self {
            prefix,
            counter: 0,
            limit: limit.min(1 << 32),
        })
    }

    /// How many nonces have been handed out.
    pub(crate) fn used(&self) -> u64 {
        self.counter
    }

    /// The next nonce, or `None` once the limit is reached.
    pub(crate) fn next(&mut self) -> Option<Nonce> {
        if self.counter >= self.limit {
            return None;
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&self.prefix);
        // The limit keeps the counter below 2^32, so it always fits the 4 bytes.
        let counter = u32::try_from(self.counter).ok()?;
        nonce[8..].copy_from_slice(&counter.to_be_bytes());
        self.counter += 1;
        Some(nonce)
    }

    #[cfg(test)]
    pub(crate) fn set_used_for_test(&mut self, counter: u64) {
        self.counter = counter;
    }
}

impl Drop for CounterNonces {
    fn drop(&mut self) {
        self.prefix.zeroize();
        self.counter.zeroize();
    }
}

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

/// The nonces an opener has accepted, in constant memory.
#[derive(Debug, Default)]
pub(crate) struct NonceGuard {
    /// The peer's counter prefix, learned from the first nonce accepted.
    prefix: Option<[u8; 8]>,
    /// Highest counter accepted under `prefix`.
    highest: u64,
    /// Bit `i` set: counter `highest - i` was accepted.
    window: u128,
    recent: HashSet<Nonce>,
    recent_order: VecDeque<Nonce>,
}

fn split(nonce: &Nonce) -> ([u8; 8], u64) {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&nonce[..8]);
    let counter = u32::from_be_bytes([nonce[8], nonce[9], nonce[10], nonce[11]]);
    (prefix, u64::from(counter))
}

impl NonceGuard {
    /// Refuses a nonce accepted before, or a counter past `limit` under the learned prefix.
    pub(crate) fn check(&self, nonce: &Nonce, limit: u64) -> Result<(), Refusal> {
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

    /// Records a nonce whose message authenticated and passed every other check; only then,
    /// so forgeries cannot fill the memory or teach it a prefix.
    pub(crate) fn record(&mut self, nonce: &Nonce) {
        let (prefix, counter) = split(nonce);
        match self.prefix {
            None => {
                // The first accepted nonce names the prefix, whatever its counter: a peer
                // whose counter-0 line was dropped still gets the window, not the FIFO.
                self.prefix = Some(prefix);
                self.highest = counter;
                self.window = 1;
            }
            Some(known) if known == prefix => self.mark(counter),
            Some(_) => {
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
    }

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

    fn counter_nonce(prefix: u8, counter: u32) -> Nonce {
        let mut nonce = [prefix; NONCE_LEN];
        nonce[8..].copy_from_slice(&counter.to_be_bytes());
        nonce
    }

    const LIMIT: u64 = 1 << 30;

    #[test]
    fn counter_nonces_share_the_prefix_count_up_and_stop_at_the_limit() {
        let mut nonces = CounterNonces::new(3).unwrap();
        let all: Vec<_> = std::iter::from_fn(|| nonces.next()).collect();
        assert_eq!(all.len(), 3);
        for (i, nonce) in all.iter().enumerate() {
            assert_eq!(nonce[..8], all[0][..8]);
            assert_eq!(nonce[8..], u32::try_from(i).unwrap().to_be_bytes());
        }
        assert_eq!(nonces.next(), None);
        assert_eq!(nonces.used(), 3);
        // Two generators never share a prefix (8 random bytes each).
        let other = CounterNonces::new(3).unwrap().next().unwrap();
        assert_ne!(other[..8], all[0][..8]);
    }

    #[test]
    fn counter_nonces_never_wrap_even_with_a_limit_past_four_bytes() {
        let mut nonces = CounterNonces::new(u64::MAX).unwrap();
        nonces.set_used_for_test(u64::from(u32::MAX));
        let last = nonces.next().unwrap();
        assert_eq!(last[8..], u32::MAX.to_be_bytes());
        assert_eq!(nonces.next(), None);
    }

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

    /// The bypass a review found: with the prefix learned only from counter 0, dropping that
    /// one line sent every later nonce into the 1,024-entry FIFO, and after 1,024 more
    /// envelopes the first one was forgotten and opened again.
    #[test]
    fn dropping_counter_zero_does_not_switch_the_window_off() {
        let mut guard = NonceGuard::default();
        for counter in 1..=3000 {
            let nonce = counter_nonce(9, counter);
            assert_eq!(guard.check(&nonce, LIMIT), Ok(()), "counter {counter}");
            guard.record(&nonce);
        }
        for counter in [1, 2, 1000, 2872, 2999, 3000] {
            assert!(
                guard.check(&counter_nonce(9, counter), LIMIT).is_err(),
                "counter {counter} opened twice"
            );
        }
        assert!(
            guard.recent.is_empty(),
            "our own counters never fill the FIFO"
        );
    }

    #[test]
    fn window_edges_far_jumps_and_the_limit() {
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
    }

    #[test]
    fn nonces_outside_the_prefix_are_remembered_up_to_the_capacity() {
        let mut guard = NonceGuard::default();
        guard.record(&counter_nonce(0xee, 0));
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
        // The oldest one was evicted to keep memory bounded (the seq rule still refuses it).
        assert_eq!(guard.check(&random(0), LIMIT), Ok(()));
        assert_eq!(guard.recent.len(), RECENT_CAPACITY);
    }
}
