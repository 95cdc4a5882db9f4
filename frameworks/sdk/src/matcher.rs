//! Carving task-sized pieces out of an offer: exact integer arithmetic, lowest free ports
//! first, and only from the pools the task's role may use.

use agora_proto::model::{Pool, RangeSet, Resources, Role, Scalars};

/// The most pieces one call to [`carve`] cuts, whatever `max_tasks` says, so that a task
/// asking for nothing cannot make it loop for ever.
pub const MAX_TASKS_PER_CARVE: usize = 10_000;

/// What one task needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TaskRequirements {
    pub cpus_milli: u64,
    pub mem_mib: u64,
    pub disk_mib: u64,
    /// How many ports; the lowest free ones are assigned.
    pub ports: u32,
    /// The role whose reservations the task may use besides the unreserved pool (`*`);
    /// `None` uses unreserved resources only.
    pub role: Option<Role>,
}

/// The outcome of [`carve`]: one resource set per task, and what is left of the offer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Carving {
    pub tasks: Vec<Resources>,
    pub remaining: Resources,
}

impl TaskRequirements {
    pub fn new(cpus_milli: u64, mem_mib: u64) -> Self {
        Self { cpus_milli, mem_mib, ..Self::default() }
    }

    pub fn scalars(&self) -> Scalars {
        Scalars::new(self.cpus_milli, self.mem_mib, self.disk_mib)
    }

    /// Whether one task fits in `available`.
    pub fn fits(&self, available: &Resources) -> bool {
        self.plan(available).is_some()
    }

    /// Takes one task's resources out of `available`, or leaves it untouched and returns
    /// `None` when they do not fit.
    pub fn take_one(&self, available: &mut Resources) -> Option<Resources> {
        let piece = self.plan(available)?;
        // `plan` only picks what `available` holds, so this cannot fail; checking anyway
        // keeps a bug here from ever handing out resources twice.
        if !available.subtract(&piece) {
            debug_assert!(false, "planned piece {piece} is not within {available}");
            return None;
        }
        Some(piece)
    }

    /// Chooses one task's resources from `available` without changing it. Reserved pools
    /// go first, most specific role first, because they are the framework's own and
    /// unreserved resources are better left for others; the unreserved pool comes last.
    fn plan(&self, available: &Resources) -> Option<Resources> {
        let role = self.role.clone().unwrap_or_else(Role::unreserved);
        let mut pools: Vec<(&Role, &Pool)> =
            available.pools().filter(|(r, _)| r.is_unreserved() || r.is_ancestor_or_self_of(&role)).collect();
        pools.sort_by_key(|(r, _)| (r.is_unreserved(), std::cmp::Reverse(r.as_str().len())));

        let total = pools.iter().fold(Scalars::ZERO, |acc, (_, p)| acc.saturating_add(&p.scalars));
        if !total.contains(&self.scalars()) {
            return None;
        }
        let free_ports = pools.iter().fold(RangeSet::new(), |acc, (_, p)| acc.union(&p.ports));
        let mut ports_left = free_ports.take_lowest(u64::from(self.ports))?;

        let mut need = self.scalars();
        let mut piece = Resources::new();
        for (pool_role, pool) in pools {
            let take = Scalars::new(
                need.cpus_milli.min(pool.scalars.cpus_milli),
                need.mem_mib.min(pool.scalars.mem_mib),
                need.disk_mib.min(pool.scalars.disk_mib),
            );
            need = need.saturating_sub(&take);
            let ports = intersection(&ports_left, &pool.ports);
            ports_left = ports_left.difference(&ports);
            piece.add_pool(pool_role.clone(), Pool { scalars: take, ports });
        }
        (need.is_zero() && ports_left.is_empty()).then_some(piece)
    }
}

fn intersection(a: &RangeSet, b: &RangeSet) -> RangeSet {
    a.difference(&a.difference(b))
}

/// Cuts up to `max_tasks` (at most [`MAX_TASKS_PER_CARVE`]) task-sized pieces out of
/// `available`. The pieces plus `remaining` add up to exactly `available`.
pub fn carve(available: &Resources, requirements: &TaskRequirements, max_tasks: usize) -> Carving {
    let mut remaining = available.clone();
    let mut tasks = Vec::new();
    while tasks.len() < max_tasks.min(MAX_TASKS_PER_CARVE) {
        match requirements.take_one(&mut remaining) {
            Some(piece) => tasks.push(piece),
            None => break,
        }
    }
    Carving { tasks, remaining }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resources(text: &str) -> Resources {
        Resources::parse(text).expect("test resources parse")
    }

    fn role(name: &str) -> Role {
        Role::parse(name).expect("test role parses")
    }

    #[test]
    fn a_tenth_of_a_cpu_fits_exactly_ten_times_in_one_cpu() {
        let carving = carve(&resources("cpus:1;mem:1000"), &TaskRequirements::new(100, 100), 100);
        assert_eq!(carving.tasks.len(), 10);
        assert!(carving.remaining.is_empty(), "left: {}", carving.remaining);
        assert!(carving.tasks.iter().all(|t| *t == resources("cpus:0.1;mem:100")));
    }

    #[test]
    fn ports_are_assigned_lowest_first_without_overlap() {
        let requirements = TaskRequirements { ports: 2, ..TaskRequirements::new(100, 10) };
        let carving = carve(&resources("cpus:1;mem:100;ports:[31000-31002,31010-31012]"), &requirements, 10);
        let ports: Vec<Vec<u64>> = carving.tasks.iter().map(|t| t.ports().iter().collect()).collect();
        assert_eq!(ports, vec![vec![31000, 31001], vec![31002, 31010], vec![31011, 31012]]);
        assert_eq!(carving.remaining, resources("cpus:0.7;mem:70"));
    }

    #[test]
    fn the_pieces_and_the_remainder_add_up_to_the_offer() {
        let offer = resources("cpus:3.333;mem:1001;disk:77;ports:[1-9];cpus(eng):0.5;mem(eng):10");
        let requirements =
            TaskRequirements { disk_mib: 5, ports: 1, role: Some(role("eng")), ..TaskRequirements::new(250, 64) };
        let carving = carve(&offer, &requirements, usize::MAX);
        assert_eq!(carving.tasks.len(), 9, "ports run out first");
        let mut sum = carving.remaining.clone();
        for task in &carving.tasks {
            sum.add(task);
        }
        assert_eq!(sum, offer);
    }

    #[test]
    fn reserved_resources_are_used_before_unreserved_ones() {
        let offer = resources("cpus(eng):0.5;cpus:2;mem:100");
        let requirements = TaskRequirements { role: Some(role("eng/web")), ..TaskRequirements::new(300, 10) };
        let carving = carve(&offer, &requirements, 2);
        assert_eq!(carving.tasks[0], resources("cpus(eng):0.3;mem:10"));
        assert_eq!(carving.tasks[1], resources("cpus(eng):0.2;cpus:0.1;mem:10"));
    }

    #[test]
    fn resources_reserved_for_another_role_are_never_used() {
        let offer = resources("cpus(ops):4;mem(ops):4096;cpus:0.1;mem:10");
        let requirements = TaskRequirements { role: Some(role("eng")), ..TaskRequirements::new(200, 10) };
        assert!(!requirements.fits(&offer));
        let carving = carve(&offer, &requirements, 10);
        assert!(carving.tasks.is_empty());
        assert_eq!(carving.remaining, offer);
        let unreserved_only = TaskRequirements::new(100, 10);
        assert_eq!(carve(&offer, &unreserved_only, 10).tasks, vec![resources("cpus:0.1;mem:10")]);
    }

    #[test]
    fn too_few_ports_means_no_task() {
        let requirements = TaskRequirements { ports: 3, ..TaskRequirements::new(1, 1) };
        let mut offer = resources("cpus:1;mem:10;ports:[5-6]");
        assert_eq!(requirements.take_one(&mut offer), None);
        assert_eq!(offer, resources("cpus:1;mem:10;ports:[5-6]"), "a failed take changes nothing");
    }

    #[test]
    fn a_task_that_needs_nothing_is_cut_at_most_max_tasks_times() {
        let carving = carve(&resources("cpus:1"), &TaskRequirements::default(), usize::MAX);
        assert_eq!(carving.tasks.len(), MAX_TASKS_PER_CARVE);
        assert_eq!(carve(&resources("cpus:1"), &TaskRequirements::default(), 3).tasks.len(), 3);
    }
}
