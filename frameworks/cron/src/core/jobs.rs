//! Jobs: creating, replacing and deleting them, and the dependency graph, checked on
//! every change (a missing parent or a cycle is refused, naming them).

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;

use super::{CoreError, Cron, Reply};
use crate::model::{JobCounters, JobName, JobRecord, JobSpec, KillCause, MAX_JOBS, Trigger};

impl Cron {
    pub(super) fn put_job(&mut self, now: Timestamp, mut spec: JobSpec) -> Result<Reply, CoreError> {
        let name = spec.name.clone();
        let existing = self.jobs.get(&name);
        if existing.is_none() && self.jobs.len() >= MAX_JOBS {
            return Err(CoreError::Conflict(format!("there are {MAX_JOBS} jobs already, the most kept")));
        }
        self.check_parents(&name, spec.parents())?;
        let record = match existing {
            None => {
                spec.created_at = now;
                spec.version = now;
                JobRecord {
                    spec,
                    counters: JobCounters::default(),
                    last_scheduled: None,
                    active_since: now,
                    dependency_since: now,
                }
            }
            Some(old) => {
                spec.created_at = old.spec.created_at;
                spec.version = now;
                // Times of a changed schedule, or of a job enabled again, count from now:
                // the old schedule's missed times were not this schedule's.
                let restart = old.spec.trigger != spec.trigger || (old.spec.disabled && !spec.disabled);
                JobRecord {
                    counters: old.counters.clone(),
                    last_scheduled: if restart { None } else { old.last_scheduled },
                    active_since: if restart { now } else { old.active_since },
                    dependency_since: if restart { now } else { old.dependency_since },
                    spec,
                }
            }
        };
        let old_parents: Vec<JobName> = self.jobs.get(&name).map(|j| j.spec.parents().to_vec()).unwrap_or_default();
        self.unindex_parents(&name, &old_parents);
        self.index_parents(&name, record.spec.parents());
        if record.spec.max_completion_time.is_some() {
            self.timed.insert(name.clone());
        } else {
            self.timed.remove(&name);
        }
        self.jobs.insert(name.clone(), record);
        self.persist_job(&name);
        self.schedule_wake(&name);
        Ok(Reply::Done)
    }

    pub(super) fn delete_job(&mut self, now: Timestamp, name: &JobName, force: bool) -> Result<Reply, CoreError> {
        if !self.jobs.contains_key(name) {
            return Err(CoreError::NotFound(name.clone()));
        }
        let children: Vec<JobName> = self.children.get(name).into_iter().flatten().cloned().collect();
        if !children.is_empty() && !force {
            return Err(CoreError::Conflict(format!(
                "job '{name}' is a parent of {}; delete them first, or delete with force",
                quoted(&children)
            )));
        }
        let mut disabled_children = Vec::new();
        for child in &children {
            let Some(record) = self.jobs.get_mut(child) else { continue };
            if let Trigger::Parents(parents) = &mut record.spec.trigger {
                parents.retain(|p| p != name);
                if parents.is_empty() {
                    // A dependent job without parents could never run by itself: kept,
                    // disabled, for its owner to give it new parents or a schedule.
                    record.spec.disabled = true;
                    disabled_children.push(child.clone());
                }
            }
            record.spec.version = now;
            self.persist_job(child);
        }
        self.children.remove(name);
        let parents: Vec<JobName> = self.jobs.get(name).map(|j| j.spec.parents().to_vec()).unwrap_or_default();
        self.unindex_parents(name, &parents);
        // Runs in flight: a pending one simply goes; a launched one is killed, and its
        // run kept in flight until its task ends (then forgotten).
        let keys: Vec<_> = self.active_runs(name).map(|r| r.key.clone()).collect();
        for key in keys {
            self.kill_run(now, &key, KillCause::User);
        }
        self.jobs.remove(name);
        self.timed.remove(name);
        for run in self.history.remove(name).unwrap_or_default() {
            self.persist(super::StoreOp::DeleteRun(crate::model::RunKey {
                job: name.clone(),
                scheduled: run.scheduled,
            }));
        }
        self.unschedule_wake(name);
        // Runs still being killed stay stored (a restart must know their tasks) until
        // their tasks end.
        self.persist(super::StoreOp::DeleteJob(name.clone()));
        Ok(Reply::Deleted { disabled_children })
    }

    /// Refuses parents that do not exist, a job that is its own parent, and a change that
    /// closes a cycle, naming them.
    fn check_parents(&self, name: &JobName, parents: &[JobName]) -> Result<(), CoreError> {
        if parents.is_empty() {
            return Ok(());
        }
        if parents.contains(name) {
            return Err(CoreError::Invalid {
                field: "parents",
                message: format!("job '{name}' cannot be its own parent"),
            });
        }
        let missing: Vec<JobName> = parents.iter().filter(|p| !self.jobs.contains_key(*p)).cloned().collect();
        if !missing.is_empty() {
            return Err(CoreError::Invalid {
                field: "parents",
                message: format!(
                    "unknown parent job{} {}",
                    if missing.len() == 1 { "" } else { "s" },
                    quoted(&missing)
                ),
            });
        }
        // A cycle through the new edges: some parent is reachable from `name` going down
        // through children (as the graph would be with this change).
        let mut graph: BTreeMap<&JobName, Vec<&JobName>> = BTreeMap::new();
        for (parent, children) in &self.children {
            for child in children {
                if child != name {
                    graph.entry(parent).or_default().push(child);
                }
            }
        }
        for parent in parents {
            graph.entry(parent).or_default().push(name);
        }
        if let Some(cycle) = find_path(&graph, name, name) {
            let path: Vec<String> = cycle.iter().map(|j| format!("'{j}'")).collect();
            return Err(CoreError::Invalid {
                field: "parents",
                message: format!("the dependencies would form a cycle: {}", path.join(" -> ")),
            });
        }
        Ok(())
    }

    pub(super) fn index_parents(&mut self, child: &JobName, parents: &[JobName]) {
        for parent in parents {
            self.children.entry(parent.clone()).or_default().insert(child.clone());
        }
    }

    fn unindex_parents(&mut self, child: &JobName, parents: &[JobName]) {
        for parent in parents {
            if let Some(children) = self.children.get_mut(parent) {
                children.remove(child);
                if children.is_empty() {
                    self.children.remove(parent);
                }
            }
        }
    }

    /// Files the job under its next scheduled time (none when disabled or dependent).
    pub(super) fn schedule_wake(&mut self, name: &JobName) {
        self.unschedule_wake(name);
        let Some(job) = self.jobs.get(name) else { return };
        if job.spec.disabled {
            return;
        }
        let Some(schedule) = job.spec.schedule() else { return };
        // As the evaluator counts: times at `active_since` itself are the job's.
        let since = job.active_since.checked_sub(jiff::SignedDuration::from_nanos(1)).unwrap_or(job.active_since);
        let from = job.last_scheduled.map_or(since, |last| last.max(since));
        if let Some(next) = schedule.next_after(from) {
            self.wakes.insert((next, name.clone()));
            self.wake_of.insert(name.clone(), next);
        }
    }

    fn unschedule_wake(&mut self, name: &JobName) {
        if let Some(at) = self.wake_of.remove(name) {
            self.wakes.remove(&(at, name.clone()));
        }
    }
}

/// A path `from` → … → `to` (of at least one edge) in `graph`, found depth first in
/// name order; bounded by the graph's size.
fn find_path<'a>(
    graph: &BTreeMap<&'a JobName, Vec<&'a JobName>>,
    from: &'a JobName,
    to: &'a JobName,
) -> Option<Vec<&'a JobName>> {
    let mut seen: BTreeSet<&JobName> = BTreeSet::new();
    let mut stack: Vec<(&JobName, usize)> = vec![(from, 0)];
    while let Some(&(node, index)) = stack.last() {
        let next = graph.get(node).and_then(|edges| edges.get(index)).copied();
        match next {
            None => {
                stack.pop();
            }
            Some(child) => {
                if let Some(top) = stack.last_mut() {
                    top.1 += 1;
                }
                if child == to {
                    let mut path: Vec<&JobName> = stack.iter().map(|(n, _)| *n).collect();
                    path.push(to);
                    return Some(path);
                }
                if seen.insert(child) {
                    stack.push((child, 0));
                }
            }
        }
    }
    None
}

fn quoted(names: &[JobName]) -> String {
    names.iter().map(|n| format!("'{n}'")).collect::<Vec<_>>().join(", ")
}
