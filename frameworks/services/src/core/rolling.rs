//! The rolling upgrade's arithmetic: how many instances must stay healthy and how many may
//! run, and, from the instances an app has, which old ones to kill and how many new ones
//! to launch now.

use crate::model::UpgradeStrategy;

/// The bounds of a rolling upgrade to `n` instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Healthy (and ready) instances kept: `ceil(n × minimumHealthCapacity)`.
    pub floor: u32,
    /// Instances that may exist at once, old and new, including those being killed:
    /// `floor(n × (1 + maximumOverCapacity))`, or one more than `n` when the two bounds
    /// leave no room to move (no over-capacity, and no instance to spare below `n`):
    /// without it, such an upgrade could neither start a new instance nor stop an old one.
    pub ceiling: u32,
}

/// The bounds of an upgrade to `n` instances under `strategy`.
pub fn bounds(n: u32, strategy: &UpgradeStrategy) -> Bounds {
    let floor = strategy.minimum_health_capacity.ceil_of(n).min(n);
    let ceiling = n.saturating_add(strategy.maximum_over_capacity.floor_of(n));
    let ceiling = if ceiling <= floor && n > 0 { n.saturating_add(1) } else { ceiling };
    Bounds { floor, ceiling }
}

/// What an app in a rolling upgrade has, counted by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RollingState<T> {
    /// The target number of instances.
    pub n: u32,
    /// Old instances not being killed that are healthy (and ready), in the order they
    /// should be killed.
    pub old_healthy: Vec<T>,
    /// Old instances not being killed that are not healthy: killed first, they hold no
    /// capacity the floor counts.
    pub old_unhealthy: Vec<T>,
    /// New instances not being killed.
    pub new_alive: u32,
    /// New instances that are healthy (and ready).
    pub new_healthy: u32,
    /// Every instance that exists (old, new, being killed), for the ceiling.
    pub existing: u32,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct RollingStep<T> {
    pub kill: Vec<T>,
    pub launch: u32,
}

/// One step of the upgrade: kill every unhealthy old instance and as many healthy old
/// ones as the floor allows; launch new ones up to `n` as far as the ceiling allows.
/// Killed instances still count against the ceiling until they are gone, so the ceiling
/// holds at every moment.
pub(super) fn step<T: Clone>(state: &RollingState<T>, bounds: Bounds) -> RollingStep<T> {
    let mut kill: Vec<T> = state.old_unhealthy.clone();
    let mut healthy = state.old_healthy.len() as u64 + u64::from(state.new_healthy);
    for instance in &state.old_healthy {
        if healthy <= u64::from(bounds.floor) {
            break;
        }
        kill.push(instance.clone());
        healthy -= 1;
    }
    let missing = state.n.saturating_sub(state.new_alive);
    let room = bounds.ceiling.saturating_sub(state.existing);
    RollingStep { kill, launch: missing.min(room) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Ppm;

    fn strategy(mhc: f64, moc: f64) -> UpgradeStrategy {
        UpgradeStrategy {
            minimum_health_capacity: Ppm::from_f64(mhc).expect("valid"),
            maximum_over_capacity: Ppm::from_f64(moc).expect("valid"),
        }
    }

    #[test]
    fn bounds_round_the_floor_up_and_the_ceiling_down() {
        assert_eq!(bounds(10, &strategy(0.9, 0.0)), Bounds { floor: 9, ceiling: 10 });
        assert_eq!(bounds(10, &strategy(0.85, 0.15)), Bounds { floor: 9, ceiling: 11 });
        assert_eq!(bounds(3, &strategy(0.5, 0.5)), Bounds { floor: 2, ceiling: 4 });
        assert_eq!(bounds(1_000, &strategy(0.9, 0.0)), Bounds { floor: 900, ceiling: 1_000 });
        assert_eq!(bounds(0, &strategy(1.0, 1.0)), Bounds { floor: 0, ceiling: 0 });
    }

    #[test]
    fn bounds_that_leave_no_room_allow_one_extra_instance() {
        assert_eq!(bounds(4, &strategy(1.0, 0.0)), Bounds { floor: 4, ceiling: 5 });
        // 3 × 0.2 rounds down to no extra instance, 3 × 0.9 up to all three.
        assert_eq!(bounds(3, &strategy(0.9, 0.2)), Bounds { floor: 3, ceiling: 4 });
    }

    #[test]
    fn a_full_floor_with_room_above_launches_first_and_kills_nothing() {
        let state = RollingState {
            n: 4,
            old_healthy: vec!["a", "b", "c", "d"],
            old_unhealthy: vec![],
            new_alive: 0,
            new_healthy: 0,
            existing: 4,
        };
        let step = step(&state, bounds(4, &strategy(1.0, 0.5)));
        assert_eq!(step, RollingStep { kill: vec![], launch: 2 });
    }

    #[test]
    fn old_instances_go_only_as_new_ones_become_healthy() {
        let mut state = RollingState {
            n: 4,
            old_healthy: vec!["a", "b", "c", "d"],
            old_unhealthy: vec![],
            new_alive: 2,
            new_healthy: 1,
            existing: 6,
        };
        let b = bounds(4, &strategy(1.0, 0.5));
        assert_eq!(step(&state, b), RollingStep { kill: vec!["a"], launch: 0 });
        state.new_healthy = 2;
        assert_eq!(step(&state, b), RollingStep { kill: vec!["a", "b"], launch: 0 });
    }

    #[test]
    fn unhealthy_old_instances_are_killed_whatever_the_floor() {
        let state = RollingState {
            n: 2,
            old_healthy: vec!["a"],
            old_unhealthy: vec!["x"],
            new_alive: 0,
            new_healthy: 0,
            existing: 2,
        };
        assert_eq!(step(&state, bounds(2, &strategy(1.0, 0.0))), RollingStep { kill: vec!["x"], launch: 1 });
    }

    #[test]
    fn a_zero_floor_kills_every_old_instance_at_once() {
        let state = RollingState {
            n: 3,
            old_healthy: vec!["a", "b", "c"],
            old_unhealthy: vec![],
            new_alive: 0,
            new_healthy: 0,
            existing: 3,
        };
        assert_eq!(step(&state, bounds(3, &strategy(0.0, 0.0))), RollingStep { kill: vec!["a", "b", "c"], launch: 0 });
    }
}
