//! [`CronHandle`]: how the REST API reaches the core. Every call is a request on the
//! owner task's bounded channel with a oneshot for the answer; nothing but the owner
//! touches the core.

use jiff::Timestamp;
use tokio::sync::{mpsc, oneshot};

use crate::core::{Command, CoreError, Cron, Reply};
use crate::model::{JobName, RunRecord};

/// A read of the core with the current time; it sends its own answer.
pub(crate) type ReadFn = Box<dyn FnOnce(&Cron, Timestamp) + Send>;

/// A request to the owner task.
pub(crate) enum Request {
    /// Runs the closure against the core, after the records of every change before it
    /// are committed: a read shows only what is durable.
    Read(ReadFn),
    /// A change: applied, its records committed, then answered.
    Command(Command, oneshot::Sender<Result<Reply, CoreError>>),
    /// A job's runs, finished (from the store) and in flight, after every change before it
    /// is committed.
    Runs(JobName, oneshot::Sender<RunsAnswer>),
}

/// The answer to [`Request::Runs`]: `None` when there is no such job; an error when the
/// store could not be read.
pub(crate) type RunsAnswer = Result<Option<Vec<RunRecord>>, String>;

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Request::Read(_) => f.write_str("Read"),
            Request::Command(command, _) => f.debug_tuple("Command").field(command).finish(),
            Request::Runs(name, _) => f.debug_tuple("Runs").field(name).finish(),
        }
    }
}

/// The owner is gone (stopping) or this process is not the leader.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("cron is not running here (stopping, or not the leader)")]
pub struct Unavailable;

/// A cheap, cloneable handle on the owner task.
#[derive(Clone, Debug)]
pub struct CronHandle {
    requests: mpsc::Sender<Request>,
}

impl CronHandle {
    pub(crate) fn new(requests: mpsc::Sender<Request>) -> Self {
        Self { requests }
    }

    /// Runs `read` on the owner task with the current time and returns what it computed.
    pub async fn read<R, F>(&self, read: F) -> Result<R, Unavailable>
    where
        R: Send + 'static,
        F: FnOnce(&Cron, Timestamp) -> R + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let request = Request::Read(Box::new(move |cron, now| {
            let _ = reply.send(read(cron, now));
        }));
        self.requests.send(request).await.map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)
    }

    /// The job's runs kept and in flight, oldest first (`None`: no such job); the finished
    /// ones are read from the store.
    pub async fn runs(&self, name: JobName) -> Result<Result<Option<Vec<RunRecord>>, String>, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Runs(name, reply)).await.map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)
    }

    /// Applies a change; answers once its records are committed.
    pub async fn command(&self, command: Command) -> Result<Result<Reply, CoreError>, Unavailable> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Command(command, reply)).await.map_err(|_| Unavailable)?;
        answer.await.map_err(|_| Unavailable)
    }
}

/// The REST API's view of the owner.
impl crate::http::CronApi for CronHandle {
    async fn read<R, F>(&self, read: F) -> Result<R, crate::chronos::ApiError>
    where
        R: Send + 'static,
        F: FnOnce(&Cron, Timestamp) -> R + Send + 'static,
    {
        CronHandle::read(self, read).await.map_err(|e| crate::chronos::ApiError::unavailable(e.to_string()))
    }

    async fn command(&self, command: Command) -> Result<Result<Reply, CoreError>, crate::chronos::ApiError> {
        CronHandle::command(self, command).await.map_err(|e| crate::chronos::ApiError::unavailable(e.to_string()))
    }

    async fn runs(&self, name: JobName) -> Result<Option<Vec<RunRecord>>, crate::chronos::ApiError> {
        let answer =
            CronHandle::runs(self, name).await.map_err(|e| crate::chronos::ApiError::unavailable(e.to_string()))?;
        answer.map_err(crate::chronos::ApiError::internal)
    }
}
