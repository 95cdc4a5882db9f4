//! The SDK's one error type, for driver runs, scheduler calls and task building alike.

/// What went wrong in the driver or in a call to the master.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The [`DriverConfig`](crate::DriverConfig) cannot work; the message names the field.
    #[error("driver configuration: {0}")]
    Config(String),
    /// A call was made while no subscription is live (before the first SUBSCRIBED, or while
    /// the driver reconnects). Calls are not queued: offers and task states may have moved on
    /// by the time the driver is subscribed again, so the scheduler decides afresh.
    #[error("not subscribed to a master")]
    NotSubscribed,
    /// The master refused the call itself (`INVALID_ARGUMENT` and the like); retrying the
    /// same call will fail the same way.
    #[error("the master rejected the call ({code:?}): {message}")]
    Rejected { code: tonic::Code, message: String },
    /// The master no longer knows this framework's subscription (`NOT_FOUND` or
    /// `FAILED_PRECONDITION`); the driver re-subscribes on its own.
    #[error("the subscription is stale ({message}); re-subscribing")]
    StaleSubscription { message: String },
    /// The master could not be reached or did not answer in time; the call may or may not
    /// have taken effect.
    #[error("the master is unavailable: {0}")]
    Unavailable(String),
    /// The driver ran out of subscription attempts (`BackoffConfig::max_attempts`).
    #[error("gave up after {attempts} failed attempts to subscribe; last: {last}")]
    GaveUp { attempts: u32, last: String },
    /// The master refused the subscription for good (bad framework info, or a framework id
    /// it has removed), or sent an ERROR event, after which Mesos frameworks must stop.
    #[error("the master refused the framework: {0}")]
    Refused(String),
    /// TLS stands between the driver and the master: its certificate is not trusted (give
    /// the CA with `--tls-ca`), or one side speaks TLS and the other does not.
    #[error("{0}")]
    Tls(String),
    /// A task description that the master would reject; the message names the field.
    #[error("invalid task: {0}")]
    InvalidTask(String),
}
