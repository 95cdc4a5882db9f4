//! Launch backoff: after each unexpected end of an app's task, its next launches wait
//! `backoff × factor^(failures − 1)`, capped at the app's maximum launch delay.

use super::{Planner, ServiceEvent};
use crate::model::{AppId, BackoffSpec, Timestamp};

/// An app's launch delay: how many failures in a row, and until when launches wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LaunchDelay {
    pub failures: u32,
    pub until_ms: u64,
}

/// The delay after the `failures`-th failure in a row (the first waits `backoff_ms`).
/// Exact integer arithmetic; the loop stops as soon as the cap is reached, so it is
/// short whatever `failures` is.
pub(super) fn delay_ms(spec: &BackoffSpec, failures: u32) -> u64 {
    let cap = u128::from(spec.max_launch_delay_ms);
    let mut delay = u128::from(spec.backoff_ms);
    for _ in 1..failures {
        if delay >= cap {
            break;
        }
        delay = delay * u128::from(spec.factor.0.max(1_000_000)) / 1_000_000;
    }
    delay.min(cap) as u64
}

impl Planner {
    /// Counts one more failure of `app` and delays its launches accordingly.
    pub(super) fn delay_launches(&mut self, now_ms: u64, app: &AppId) {
        let Some(record) = self.apps.get(app) else { return };
        let spec = record.spec.backoff;
        let failures = self.delays.get(app).map_or(0, |d| d.failures).saturating_add(1);
        let until_ms = now_ms.saturating_add(delay_ms(&spec, failures));
        self.delays.insert(app.clone(), LaunchDelay { failures, until_ms });
        self.emit(ServiceEvent::LaunchDelayed { app: app.clone(), until: Timestamp(until_ms) });
    }

    /// Until when the app's launches wait, if they wait.
    pub(super) fn delay_until(&self, app: &AppId, now_ms: u64) -> Option<u64> {
        self.delays.get(app).map(|d| d.until_ms).filter(|until| *until > now_ms)
    }

    /// A new version or `DELETE /v2/queue/{id}/delay`: launches go at once again.
    pub(super) fn reset_backoff(&mut self, app: &AppId) {
        self.delays.remove(app);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Ppm;

    #[test]
    fn the_delay_grows_by_the_factor_per_failure_up_to_the_cap() {
        let spec = BackoffSpec { backoff_ms: 1_000, factor: Ppm(2_000_000), max_launch_delay_ms: 10_000 };
        let delays: Vec<u64> = (1..=6).map(|f| delay_ms(&spec, f)).collect();
        assert_eq!(delays, vec![1_000, 2_000, 4_000, 8_000, 10_000, 10_000]);
        assert_eq!(delay_ms(&spec, u32::MAX), 10_000);
    }

    #[test]
    fn marathons_defaults_give_one_second_then_fifteen_percent_more_each_time() {
        let spec = BackoffSpec::default();
        assert_eq!(delay_ms(&spec, 1), 1_000);
        assert_eq!(delay_ms(&spec, 2), 1_150);
        assert_eq!(delay_ms(&spec, 3), 1_322);
        assert_eq!(delay_ms(&spec, 1_000), 300_000);
    }
}
