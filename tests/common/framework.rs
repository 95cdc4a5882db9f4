//! A small framework on the SDK for end-to-end tests: it launches one long-running task on
//! the first offer big enough and hands every status update to the test.

use agora_proto::model::{FrameworkId, FrameworkInfo, Offer, Role, TaskState, TaskStatus};
use agora_sdk::{Driver, DriverConfig, DriverHandle, Scheduler, TaskBuilder, TaskRequirements, carve};
use tokio::sync::mpsc;

use super::WAIT;

/// Launches one long-running task on the first offer big enough and reports every update.
struct Sleeper {
    command: String,
    launched: bool,
    updates: mpsc::UnboundedSender<TaskStatus>,
}

impl Scheduler for Sleeper {
    async fn offers(&mut self, driver: &DriverHandle, offers: Vec<Offer>) {
        for offer in offers {
            let carving = carve(&offer.resources, &TaskRequirements::new(100, 32), 1);
            match carving.tasks.into_iter().next() {
                Some(resources) if !self.launched => {
                    let task = TaskBuilder::shell("sleeper", self.command.as_str())
                        .build(&offer.agent_id, resources)
                        .expect("a valid task");
                    driver.accept(vec![offer.id], vec![task], Some(60.0)).await.expect("accept");
                    self.launched = true;
                }
                _ => {
                    let _ = driver.decline(vec![offer.id], Some(60.0)).await;
                }
            }
        }
    }

    async fn update(&mut self, _driver: &DriverHandle, status: TaskStatus) {
        let _ = self.updates.send(status);
    }
}

pub struct Framework {
    pub handle: DriverHandle,
    pub updates: mpsc::UnboundedReceiver<TaskStatus>,
    task: tokio::task::JoinHandle<()>,
}

impl Framework {
    pub fn start(master: &str, command: &str) -> Framework {
        Framework::start_with_id(master, command, None)
    }

    /// Starts the framework under an id it had before (failover).
    pub fn start_with_id(master: &str, command: &str, id: Option<FrameworkId>) -> Framework {
        let info = FrameworkInfo {
            id,
            name: "sleeper".into(),
            user: "root".into(),
            roles: vec![Role::unreserved()],
            failover_timeout_ms: 60_000,
            hostname: String::new(),
            principal: String::new(),
        };
        // Several masters (comma-separated) are all given to the driver, which follows the leader.
        let masters = master.split(',').map(str::to_owned).collect();
        let driver = Driver::new(DriverConfig::new(masters, info)).expect("driver");
        let handle = driver.handle();
        let (tx, updates) = mpsc::unbounded_channel();
        let mut sleeper = Sleeper { command: command.to_owned(), launched: false, updates: tx };
        let task = tokio::spawn(async move {
            let _ = driver.run(&mut sleeper).await;
        });
        Framework { handle, updates, task }
    }

    /// Waits for the task to reach `state`, failing on any terminal state on the way.
    /// The driver returned (it stopped, or the master refused the framework).
    pub fn task_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub async fn wait_for(&mut self, state: TaskState) -> TaskStatus {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let status = tokio::time::timeout_at(deadline, self.updates.recv())
                .await
                .unwrap_or_else(|_| panic!("timed out waiting for {state}"))
                .expect("the driver is running");
            if status.state == state {
                return status;
            }
            assert!(!status.state.is_terminal(), "expected {state}, got {status:?}");
        }
    }
}

impl Drop for Framework {
    fn drop(&mut self) {
        self.handle.stop();
        self.task.abort();
    }
}
