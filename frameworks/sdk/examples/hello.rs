//! The smallest useful framework: launches N tasks that each print a greeting, prints every
//! state change, and exits when all of them are done.
//!
//! ```text
//! cargo run -p agora-sdk --example hello -- 127.0.0.1:5050 3
//! ```

use std::collections::BTreeMap;
use std::process::ExitCode;

use agora_proto::model::{DEFAULT_FAILOVER_TIMEOUT_MS, FrameworkInfo, Offer, Role, TaskId, TaskState, TaskStatus};
use agora_sdk::{Driver, DriverConfig, DriverHandle, Scheduler, TaskBuilder, TaskRequirements, carve};

/// Declined resources stay away this long, so that the master offers them to others.
const REFUSE_SECONDS: f64 = 30.0;

struct Hello {
    wanted: usize,
    launched: usize,
    /// The last state of each launched task.
    states: BTreeMap<TaskId, TaskState>,
}

impl Hello {
    fn all_terminal(&self) -> bool {
        self.launched == self.wanted && self.states.values().all(|s| s.is_terminal())
    }
}

impl Scheduler for Hello {
    async fn subscribed(&mut self, _driver: &DriverHandle, framework_id: &agora_proto::model::FrameworkId, _: bool) {
        println!("subscribed as {framework_id}");
    }

    async fn offers(&mut self, driver: &DriverHandle, offers: Vec<Offer>) {
        let requirements = TaskRequirements::new(100, 32);
        for offer in offers {
            let carving = carve(&offer.resources, &requirements, self.wanted - self.launched);
            let mut tasks = Vec::new();
            for resources in carving.tasks {
                let task_id = format!("hello-{}", self.launched + tasks.len());
                match TaskBuilder::shell(task_id.as_str(), "echo hello from $AGORA_TASK_ID")
                    .build(&offer.agent_id, resources)
                {
                    Ok(task) => tasks.push(task),
                    Err(error) => eprintln!("cannot build {task_id}: {error}"),
                }
            }
            if tasks.is_empty() {
                let _ = driver.decline(vec![offer.id], Some(REFUSE_SECONDS)).await;
                continue;
            }
            let ids: Vec<TaskId> = tasks.iter().map(|t| t.task_id.clone()).collect();
            match driver.accept(vec![offer.id.clone()], tasks, Some(REFUSE_SECONDS)).await {
                Ok(()) => {
                    println!("launching {} task(s) on {}", ids.len(), offer.hostname());
                    self.launched += ids.len();
                    self.states.extend(ids.into_iter().map(|id| (id, TaskState::TaskStaging)));
                }
                Err(error) => eprintln!("accept failed: {error}"),
            }
        }
        if self.launched == self.wanted {
            let _ = driver.suppress().await;
        }
    }

    async fn update(&mut self, driver: &DriverHandle, status: TaskStatus) {
        println!("{} {} {}", status.task_id, status.state, status.message);
        self.states.insert(status.task_id, status.state);
        if self.all_terminal()
            && let Err(error) = driver.teardown().await
        {
            eprintln!("teardown failed: {error}");
            driver.stop();
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let master = args.next().unwrap_or_else(|| "127.0.0.1:5050".to_owned());
    let wanted = match args.next().map(|n| n.parse::<usize>()) {
        None => 3,
        Some(Ok(n)) if (1..=1_000).contains(&n) => n,
        Some(_) => {
            eprintln!("usage: hello [MASTER] [TASKS 1..=1000]");
            return ExitCode::FAILURE;
        }
    };
    let framework = FrameworkInfo {
        id: None,
        name: "hello".into(),
        user: std::env::var("USER").unwrap_or_else(|_| "nobody".into()),
        roles: vec![Role::unreserved()],
        // A one-shot framework: if it dies, its tasks need not outlive it for long.
        failover_timeout_ms: DEFAULT_FAILOVER_TIMEOUT_MS.min(60_000),
        hostname: String::new(),
        principal: String::new(),
    };
    let mut hello = Hello { wanted, launched: 0, states: BTreeMap::new() };
    let result = match Driver::new(DriverConfig::new(vec![master], framework)) {
        Ok(driver) => driver.run(&mut hello).await,
        Err(error) => Err(error),
    };
    if let Err(error) = result {
        eprintln!("hello: {error}");
        return ExitCode::FAILURE;
    }
    let all_finished = hello.states.values().all(|s| *s == TaskState::TaskFinished);
    if all_finished { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}
