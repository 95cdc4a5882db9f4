//! Capped, jittered exponential backoff for resending unacknowledged updates.

use rand::Rng;

/// When an update is next resent, and the delay that led there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    due_at_ms: u64,
    /// The nominal delay of this round, before jitter; doubles each round up to the cap.
    delay_ms: u64,
}

impl Backoff {
    /// The schedule after a first send: `initial_ms` (at most `max_ms`), jittered.
    pub fn first(now_ms: u64, initial_ms: u64, max_ms: u64, rng: &mut impl Rng) -> Self {
        let delay_ms = initial_ms.min(max_ms).max(1);
        Self { due_at_ms: now_ms.saturating_add(jittered(delay_ms, rng)), delay_ms }
    }

    /// The schedule after a resend: twice the previous delay, at most `max_ms`, jittered.
    pub fn next(self, now_ms: u64, max_ms: u64, rng: &mut impl Rng) -> Self {
        let delay_ms = self.delay_ms.saturating_mul(2).min(max_ms).max(1);
        Self { due_at_ms: now_ms.saturating_add(jittered(delay_ms, rng)), delay_ms }
    }

    pub fn due_at_ms(&self) -> u64 {
        self.due_at_ms
    }

    pub fn delay_ms(&self) -> u64 {
        self.delay_ms
    }
}

/// A delay between half of `delay_ms` and all of it, so that agents which lost the master
/// together do not all resend at the same instant.
pub fn jittered(delay_ms: u64, rng: &mut impl Rng) -> u64 {
    let half = delay_ms / 2;
    half + rng.random_range(0..=delay_ms - half)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_delay_doubles_up_to_the_cap_and_stays_within_the_jitter_band() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let mut backoff = Backoff::first(0, 1_000, 60_000, &mut rng);
        let mut delays = vec![backoff.delay_ms()];
        assert!((500..=1_000).contains(&backoff.due_at_ms()));
        for _ in 0..8 {
            backoff = backoff.next(0, 60_000, &mut rng);
            delays.push(backoff.delay_ms());
            assert!(backoff.due_at_ms() >= backoff.delay_ms() / 2 && backoff.due_at_ms() <= backoff.delay_ms());
        }
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000, 60_000]);
    }
}
