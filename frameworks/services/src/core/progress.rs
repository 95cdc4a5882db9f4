//! Deployments moving on: a step ends when all its actions are done, the deployment when
//! its last step is; one past its deadline fails and is rolled back to the specs it
//! started from (a rollback that times out only fails, so nothing loops).

use super::plan::{Desired, Request};
use super::{PlanError, Planner, ServiceEvent, StoreOp};
use crate::model::{ActionKind, AppId, Deployment, DeploymentId, DeploymentOrigin, Timestamp};

impl Planner {
    /// Moves a deployment through every step that is done.
    pub(super) fn advance(&mut self, now_ms: u64, id: &DeploymentId) {
        loop {
            let Some(deployment) = self.deployments.get(id) else { return };
            let Some(step) = deployment.steps.get(deployment.current_step) else {
                if let Some(deployment) = self.end_deployment(id) {
                    self.emit(ServiceEvent::DeploymentSuccess { deployment });
                }
                return;
            };
            let actions = step.actions.clone();
            if !actions.iter().all(|a| self.action_done(now_ms, a.kind, &a.app)) {
                return;
            }
            for action in &actions {
                if action.kind == ActionKind::StopApplication {
                    self.remove_app(&action.app);
                }
                self.dirty.insert(action.app.clone());
            }
            let Some(deployment) = self.deployments.get_mut(id) else { return };
            deployment.current_step += 1;
            let deployment = deployment.clone();
            if let Some(next) = deployment.steps.get(deployment.current_step) {
                self.dirty.extend(next.actions.iter().map(|a| a.app.clone()));
            }
            self.persist(StoreOp::PutDeployment(deployment.clone()));
            self.emit(ServiceEvent::DeploymentStepSuccess { deployment });
        }
    }

    /// Removes a deployment and releases its apps; returns it.
    pub(super) fn end_deployment(&mut self, id: &DeploymentId) -> Option<Deployment> {
        let deployment = self.deployments.remove(id)?;
        for app in deployment.affected_apps() {
            if self.locks.get(app) == Some(id) {
                self.locks.remove(app);
            }
            self.dirty.insert(app.clone());
        }
        self.persist(StoreOp::DeleteDeployment(id.clone()));
        Some(deployment)
    }

    /// An app whose stop is done: its records, versions and last failure go.
    fn remove_app(&mut self, app: &AppId) {
        let Some(_) = self.apps.remove(app) else { return };
        let leftovers: Vec<_> = self.instances_of(app).map(|i| i.task_id.clone()).collect();
        for task_id in leftovers {
            self.forget(&task_id);
        }
        for (version, _) in self.versions.remove(app).unwrap_or_default() {
            self.persist(StoreOp::DeleteVersion { app: app.clone(), version });
        }
        self.persist(StoreOp::DeleteApp(app.clone()));
        if self.task_failures.remove(app).is_some() {
            self.persist(StoreOp::DeleteTaskFailure(app.clone()));
        }
        self.tallies.remove(app);
        self.kill_queues.remove(app);
        self.delays.remove(app);
        self.pending.remove(app);
        self.offer_stats.remove(app);
        self.emit(ServiceEvent::AppTerminated { app: app.clone() });
    }

    /// Deployments past their deadline fail; those of users are rolled back.
    pub(super) fn check_deadlines(&mut self, now_ms: u64) {
        let late: Vec<DeploymentId> =
            self.deployments.values().filter(|d| now_ms >= d.deadline.ms()).map(|d| d.id.clone()).collect();
        for id in late {
            let Some(deployment) = self.deployments.get(&id) else { continue };
            let seconds = deployment.deadline.ms().saturating_sub(deployment.started_at.ms()) / 1_000;
            let reason = format!("did not finish within its deployment timeout of {seconds} s");
            if matches!(deployment.origin, DeploymentOrigin::Rollback { .. }) {
                if let Some(deployment) = self.end_deployment(&id) {
                    self.emit(ServiceEvent::DeploymentStepFailure { deployment: deployment.clone() });
                    self.emit(ServiceEvent::DeploymentFailed {
                        deployment,
                        reason: format!("{reason}; a rollback is not rolled back again"),
                        rollback: None,
                    });
                }
                continue;
            }
            // A rollback restores specs that were in place; it cannot be refused, but if it
            // were, the deployment still ends rather than being retried every tick.
            if self.roll_back(now_ms, &id, true, &reason).is_err()
                && let Some(deployment) = self.end_deployment(&id)
            {
                self.emit(ServiceEvent::DeploymentFailed { deployment, reason, rollback: None });
            }
        }
    }

    /// Ends a deployment and starts the one that takes its apps back to their original
    /// specs (and config versions, so the instances still running them stay).
    pub(super) fn roll_back(
        &mut self,
        now_ms: u64,
        id: &DeploymentId,
        timed_out: bool,
        why: &str,
    ) -> Result<(DeploymentId, Timestamp), PlanError> {
        let Some(deployment) = self.deployments.get(id).cloned() else {
            return Err(PlanError::NotFound(format!("DeploymentPlan {id} does not exist")));
        };
        let desired = deployment
            .original
            .iter()
            .map(|(app, spec)| {
                let want = match spec {
                    Some(spec) => Desired::Put {
                        spec: (**spec).clone(),
                        restore: deployment.original_versions.get(app).copied(),
                        restart: false,
                    },
                    None => Desired::Remove,
                };
                (app.clone(), want)
            })
            .collect();
        let request = Request {
            desired,
            groups: None,
            origin: DeploymentOrigin::Rollback { of: id.clone(), timed_out },
            force: false,
            validate: false,
            kill_first: Vec::new(),
        };
        // Ended first, so that its apps are free for the rollback. Restoring specs that
        // were in place is not refused (their ports are assigned, their counts valid).
        self.end_deployment(id);
        let (rollback, version) = self.deploy(now_ms, request)?;
        self.emit(ServiceEvent::DeploymentStepFailure { deployment: deployment.clone() });
        self.emit(ServiceEvent::DeploymentFailed {
            deployment,
            reason: format!("{why}; rolled back by deployment {rollback}"),
            rollback: Some(rollback.clone()),
        });
        Ok((rollback, version))
    }
}
