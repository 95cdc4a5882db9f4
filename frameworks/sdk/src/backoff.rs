//! Capped, jittered exponential backoff between subscription attempts.

use std::time::Duration;

use rand::Rng;

/// How the driver spaces out its attempts to (re-)subscribe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first delay, before jitter.
    pub initial_ms: u64,
    /// The delay doubles after each failed attempt up to this cap, so that a long outage
    /// costs at most one attempt per cap interval.
    pub max_ms: u64,
    /// Give up after this many consecutive failed attempts. `None` retries forever, which
    /// is what long-running frameworks want: the master may be down for a while.
    pub max_attempts: Option<u32>,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self { initial_ms: 500, max_ms: 30_000, max_attempts: None }
    }
}

/// The running state of one backoff sequence.
#[derive(Debug)]
pub(crate) struct Backoff {
    config: BackoffConfig,
    next_ms: u64,
}

impl Backoff {
    pub(crate) fn new(config: BackoffConfig) -> Self {
        Self { config, next_ms: config.initial_ms.clamp(1, config.max_ms.max(1)) }
    }

    /// Starts over after a success.
    pub(crate) fn reset(&mut self) {
        *self = Self::new(self.config);
    }

    /// The pause before the next attempt: uniform in `[d/2, d]` where `d` doubles each time
    /// up to the cap. The jitter spreads out frameworks that lost the same master together,
    /// so that they do not all come back in the same millisecond.
    pub(crate) fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let nominal_ms = self.next_ms;
        self.next_ms = nominal_ms.saturating_mul(2).min(self.config.max_ms.max(1));
        Duration::from_millis(rng.random_range(nominal_ms / 2..=nominal_ms))
    }

    /// The pause before an attempt that does not count as another failure (the next master
    /// of the list, or the leader a follower named): like `next_delay`, without doubling.
    pub(crate) fn current_delay(&self, rng: &mut impl Rng) -> Duration {
        Duration::from_millis(rng.random_range(self.next_ms / 2..=self.next_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn delays_double_up_to_the_cap_and_stay_within_the_jitter_band() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut backoff = Backoff::new(BackoffConfig { initial_ms: 100, max_ms: 1_000, max_attempts: None });
        let nominal = [100, 200, 400, 800, 1_000, 1_000, 1_000];
        for expected in nominal {
            let delay = backoff.next_delay(&mut rng).as_millis() as u64;
            assert!((expected / 2..=expected).contains(&delay), "{delay} not within [{}, {expected}]", expected / 2);
        }
        backoff.reset();
        assert!(backoff.next_delay(&mut rng).as_millis() <= 100, "reset starts from the initial delay");
    }

    #[test]
    fn a_zero_configuration_still_waits_a_little_and_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut backoff = Backoff::new(BackoffConfig { initial_ms: 0, max_ms: 0, max_attempts: Some(1) });
        assert!(backoff.next_delay(&mut rng) <= Duration::from_millis(1));
    }
}
