//! The agent gRPC service: one bidirectional stream per agent. The first message must be
//! a registration; after the master accepts it, heartbeats and status updates flow up and
//! the owner task's messages flow down. With `--authenticate-agents` the stream carries
//! the agent's credential (`authorization` metadata); an agent id stays with the principal
//! that registered it (`AgentPrincipals`).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agora_proto::convert::{self, WireError, id, optional_id};
use agora_proto::model::{AgentId, AgentInfo, TaskStatus};
use agora_proto::pb;
use agora_proto::pb::agent_link_server::{AgentLink, AgentLinkServer};
use futures::{Stream, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request as GrpcRequest, Response, Status, Streaming};

use super::auth::{Kind, Security};
use super::owner::{AGENT_QUEUE_LEN, Handle, Request};
use crate::core::{ConnId, ReportedTask};

/// How long a new stream may take to send its registration.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);
/// Most tasks an agent may report when it re-registers.
const MAX_REPORTED_TASKS: usize = 100_000;

/// The agents' service. With `require_client_certificate` (the master was started with
/// `--tls-client-ca`) an agent must present a certificate that client CA signed.
pub fn server(
    handle: Handle,
    stop: watch::Receiver<bool>,
    security: Arc<Security>,
    require_client_certificate: bool,
) -> AgentLinkServer<AgentLinkService> {
    AgentLinkServer::new(AgentLinkService {
        handle,
        stop,
        security,
        principals: AgentPrincipals::default(),
        require_client_certificate,
    })
}

#[derive(Debug)]
pub struct AgentLinkService {
    handle: Handle,
    stop: watch::Receiver<bool>,
    security: Arc<Security>,
    principals: AgentPrincipals,
    require_client_certificate: bool,
}

/// The principal each agent id was registered by (`None`: no credential), so that an
/// agent cannot take over another principal's agent id. Held in memory: after a master
/// restart, the first agent to re-register an id claims it again.
#[derive(Clone, Debug, Default)]
struct AgentPrincipals(Arc<Mutex<HashMap<AgentId, Option<String>>>>);

impl AgentPrincipals {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<AgentId, Option<String>>> {
        // Nothing awaits or panics while the map is held.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Refuses a registration under an id another principal registered.
    fn check(&self, agent_id: &AgentId, principal: &Option<String>) -> Result<(), Status> {
        match self.lock().get(agent_id) {
            Some(owner) if owner != principal => {
                tracing::warn!(%agent_id, ?principal, "agent refused: the id was registered by another principal");
                Err(Status::permission_denied(format!(
                    "agent {agent_id} was registered by another principal; register afresh without an id"
                )))
            }
            _ => Ok(()),
        }
    }

    fn record(&self, agent_id: AgentId, principal: Option<String>) {
        self.lock().insert(agent_id, principal);
    }
}

type MasterStream = Pin<Box<dyn Stream<Item = Result<pb::MasterMessage, Status>> + Send>>;

fn reported_tasks(tasks: Vec<pb::AgentTask>) -> Result<Vec<ReportedTask>, WireError> {
    if tasks.len() > MAX_REPORTED_TASKS {
        return Err(WireError::new("register.tasks", format!("more than {MAX_REPORTED_TASKS} tasks")));
    }
    tasks
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let field = format!("register.tasks[{i}]");
            let task = t.task.ok_or_else(|| WireError::new(format!("{field}.task"), "is required"))?;
            Ok(ReportedTask {
                framework_id: id(&format!("{field}.framework_id"), &t.framework_id)?,
                task: task.try_into().map_err(|e: WireError| e.in_field(&format!("{field}.task")))?,
                state: convert::task_state(&format!("{field}.state"), t.state)?,
                healthy: t.healthy,
                ready: t.ready,
            })
        })
        .collect()
}

fn registration(register: pb::Register) -> Result<(AgentInfo, Option<AgentId>, Vec<ReportedTask>), WireError> {
    let info = register.info.ok_or_else(|| WireError::new("register.info", "is required"))?;
    let info = AgentInfo::try_from(info).map_err(|e| e.in_field("register.info"))?;
    let previous_id = optional_id("register.agent_id", &register.agent_id)?;
    Ok((info, previous_id, reported_tasks(register.tasks)?))
}

#[tonic::async_trait]
impl AgentLink for AgentLinkService {
    type AttachStream = MasterStream;

    async fn attach(
        &self,
        request: GrpcRequest<Streaming<pb::AgentMessage>>,
    ) -> Result<Response<MasterStream>, Status> {
        // The TLS listener verified the certificate against the client CA; here it only
        // matters that there is one (who it names is for authentication to judge).
        if self.require_client_certificate && agora_proto::tls::grpc_client_identity(&request).is_none() {
            tracing::warn!("refused an agent without a client certificate");
            return Err(Status::unauthenticated(
                "this master requires agents to present a client certificate signed by its --tls-client-ca \
                 (start the agent with --tls-cert and --tls-key)",
            ));
        }
        let principal = self
            .security
            .authenticate_grpc(Kind::Agent, request.metadata())
            .map_err(|refusal| super::auth::unauthenticated(&refusal))?;
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(REGISTER_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no registration within 10 s"))??
            .ok_or_else(|| Status::invalid_argument("the stream closed before registering"))?;
        let Some(pb::agent_message::Message::Register(register)) = first.message else {
            return Err(Status::invalid_argument("message: the first message on a stream must be register"));
        };
        let (info, previous_id, tasks) = registration(register)?;
        if let Some(previous_id) = &previous_id {
            self.principals.check(previous_id, &principal)?;
        }

        let conn = self.handle.next_conn();
        let (outbox, rx) = mpsc::channel(AGENT_QUEUE_LEN);
        let (registered, answer) = oneshot::channel();
        let request = Request::AgentAttach { conn, info, previous_id, tasks, outbox, registered };
        self.handle.send(request).await.map_err(|e| Status::unavailable(e.to_string()))?;
        let registered_by = (self.principals.clone(), principal);
        tokio::spawn(read_agent(self.handle.clone(), conn, answer, inbound, registered_by));

        // The stream ends when the owner drops the outbox (another connection took over,
        // the agent was refused) or when the master stops.
        let mut stop = self.stop.clone();
        let stream = ReceiverStream::new(rx)
            .map(|mail| Ok(mail.into_pb()))
            .take_until(async move { super::stopped(&mut stop).await });
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Reads heartbeats and status updates once the master has accepted the registration;
/// tells the owner when the stream ends.
///
/// One of these waits on every agent's stream for as long as the agent is attached, so
/// the task is kept small: what it awaits only now and then (the registration's answer,
/// a place in the owner's queue, whose future holds the request) is boxed for that
/// moment instead of being part of the task's state for good (1.6 KB a task otherwise).
async fn read_agent(
    handle: Handle,
    conn: ConnId,
    answer: oneshot::Receiver<Result<AgentId, String>>,
    mut inbound: Streaming<pb::AgentMessage>,
    (principals, principal): (AgentPrincipals, Option<String>),
) {
    let agent_id = match Box::pin(tokio::time::timeout(REGISTER_TIMEOUT, answer)).await {
        Ok(Ok(Ok(agent_id))) => {
            principals.record(agent_id.clone(), principal);
            agent_id
        }
        Ok(Ok(Err(reason))) => {
            tracing::info!(?conn, %reason, "agent refused");
            return;
        }
        _ => return,
    };
    loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break,
            Err(status) => {
                tracing::info!(%agent_id, error = %status, "agent stream broke");
                break;
            }
        };
        let request = match message.message {
            Some(pb::agent_message::Message::Heartbeat(_)) => Request::AgentHeartbeat { agent_id: agent_id.clone() },
            Some(pb::agent_message::Message::StatusUpdate(update)) => match status_update(update) {
                Ok((framework_id, status)) => Request::AgentStatus { agent_id: agent_id.clone(), framework_id, status },
                Err(error) => {
                    tracing::warn!(%agent_id, %error, "malformed status update ignored");
                    continue;
                }
            },
            Some(pb::agent_message::Message::Register(_)) | None => {
                tracing::warn!(%agent_id, "unexpected message on an established agent stream ignored");
                continue;
            }
        };
        if Box::pin(handle.send(request)).await.is_err() {
            return;
        }
    }
    let _ = Box::pin(handle.send(Request::AgentGone { agent_id, conn })).await;
}

fn status_update(update: pb::StatusUpdate) -> Result<(agora_proto::model::FrameworkId, TaskStatus), WireError> {
    let framework_id = id("status_update.framework_id", &update.framework_id)?;
    let status = update.status.ok_or_else(|| WireError::new("status_update.status", "is required"))?;
    let status = TaskStatus::try_from(status).map_err(|e| e.in_field("status_update.status"))?;
    Ok((framework_id, status))
}
