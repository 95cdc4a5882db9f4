//! The link to the master: dial, register, forward the master's messages to the owner,
//! send heartbeats, and reconnect with capped, jittered backoff whenever the stream breaks.
//! Tasks keep running while the link is down; the owner holds their updates until the agent
//! has registered again.

use std::time::Duration;

use agora_proto::convert::id;
use agora_proto::model::AgentId;
use agora_proto::pb;
use agora_proto::pb::agent_link_client::AgentLinkClient;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::{Event, LinkEvent};
use crate::core::jittered;

/// Messages waiting to go up the stream. Heartbeats and updates are offered without
/// waiting: an update that does not fit is resent later by the core's retries, a heartbeat
/// that does not fit is skipped.
pub(crate) const OUTBOX_LEN: usize = 1_024;
/// The heartbeat interval used when the master names none.
const DEFAULT_HEARTBEAT_MS: u64 = 5_000;
/// Bounds on the interval the master asks for, so that a bad value can neither flood it nor
/// let the agent look dead.
const HEARTBEAT_BOUNDS_MS: (u64, u64) = (100, 60_000);
/// HTTP/2 pings find a master that vanished without closing the connection (a host that
/// lost power), which a stream that only carries heartbeats up would not notice.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub(crate) struct LinkConfig {
    pub master: String,
    pub register_timeout: Duration,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    pub seed: u64,
}

/// How one connection ended.
#[derive(Debug)]
enum Ended {
    /// It was registered, then the stream closed or broke.
    AfterRegistering(String),
    /// The master refused the agent, which registers afresh at once.
    Refused,
}

/// Why a connection failed, and the leading master when a follower named it.
#[derive(Debug)]
struct Failed {
    why: String,
    leader: Option<String>,
}

impl From<String> for Failed {
    fn from(why: String) -> Self {
        Failed { why, leader: None }
    }
}

impl From<&str> for Failed {
    fn from(why: &str) -> Self {
        Failed { why: why.to_owned(), leader: None }
    }
}

impl Failed {
    /// A gRPC error; a follower master's UNAVAILABLE names the leader in `agora-leader`.
    fn status(context: &str, status: &tonic::Status) -> Failed {
        let leader = (status.code() == tonic::Code::Unavailable)
            .then(|| status.metadata().get("agora-leader")?.to_str().ok().map(str::to_owned))
            .flatten();
        Failed { why: format!("{context}: {status}"), leader }
    }
}

/// Keeps the agent linked to the master until `stop` turns true. With several masters
/// (`config.master` is a comma-separated list) it dials them in turn, and dials at once the
/// leader a follower names; the backoff grows only after a whole round of the list failed.
pub(crate) async fn run(config: LinkConfig, events: mpsc::Sender<Event>, mut stop: watch::Receiver<bool>) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let mut delay_ms = config.reconnect_initial_ms.max(1);
    let masters: Vec<String> = config.master.split(',').map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
    let (mut next, mut master) = (0, masters.first().cloned().unwrap_or_default());
    loop {
        let outcome = tokio::select! {
            outcome = session(&config, &master, &events) => outcome,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let mut grow = true;
        match outcome {
            Ok(Ended::AfterRegistering(why)) => {
                tracing::warn!(%master, %why, "lost the master; reconnecting");
                delay_ms = config.reconnect_initial_ms.max(1);
            }
            Ok(Ended::Refused) => delay_ms = config.reconnect_initial_ms.max(1),
            Err(Failed { why, leader: Some(leader) }) if leader != master => {
                tracing::info!(%master, %leader, %why, "following the leading master");
                master = leader;
                delay_ms = config.reconnect_initial_ms.max(1);
                grow = false;
            }
            Err(Failed { why, .. }) => {
                tracing::info!(%master, error = %why, retry_in_ms = delay_ms, "cannot reach the master");
                if masters.len() > 1 {
                    next = (next + 1) % masters.len();
                    master = masters[next].clone();
                    grow = next == 0;
                }
            }
        }
        let pause = Duration::from_millis(jittered(delay_ms, &mut rng));
        if grow {
            delay_ms = delay_ms.saturating_mul(2).min(config.reconnect_max_ms.max(1));
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// One connection: dial, register, then relay until the stream ends. Tells the owner
/// `Disconnected` on the way out once it has told it `Registered`.
async fn session(config: &LinkConfig, master: &str, events: &mpsc::Sender<Event>) -> Result<Ended, Failed> {
    let url = if master.contains("://") { master.to_owned() } else { format!("http://{master}") };
    let endpoint = tonic::transport::Endpoint::from_shared(url)
        .map_err(|e| format!("master address {master:?}: {e}"))?
        .connect_timeout(config.register_timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {}", chain(&e)))?;
    let mut client = AgentLinkClient::new(channel);

    let (reply, register) = oneshot::channel();
    events.send(Event::Link(LinkEvent::Connecting { reply })).await.map_err(|_| "the agent is stopping")?;
    let register = register.await.map_err(|_| "the agent is stopping")?;
    let (outbox, outgoing) = mpsc::channel(OUTBOX_LEN);
    let first = pb::AgentMessage { message: Some(pb::agent_message::Message::Register(register)) };
    outbox.try_send(first).map_err(|_| "the new outbox is full")?;

    let registering = async {
        let response = client.attach(ReceiverStream::new(outgoing)).await.map_err(|s| Failed::status("attach", &s))?;
        let mut inbound = response.into_inner();
        let answer = inbound.message().await.map_err(|s| Failed::status("register", &s))?;
        Ok::<_, Failed>((inbound, answer))
    };
    let (mut inbound, answer) = tokio::time::timeout(config.register_timeout, registering)
        .await
        .map_err(|_| format!("no answer to the registration within {:?}", config.register_timeout))??;
    let heartbeat_ms = match answer.and_then(|m| m.message) {
        Some(pb::master_message::Message::Registered(registered)) => {
            let agent_id: AgentId = id("registered.agent_id", &registered.agent_id).map_err(|e| e.to_string())?;
            tracing::info!(%agent_id, %master, "registered with the master");
            let outbox = outbox.clone();
            events
                .send(Event::Link(LinkEvent::Registered { agent_id, outbox }))
                .await
                .map_err(|_| "the agent is stopping")?;
            match registered.heartbeat_interval_ms {
                0 => DEFAULT_HEARTBEAT_MS,
                ms => ms.clamp(HEARTBEAT_BOUNDS_MS.0, HEARTBEAT_BOUNDS_MS.1),
            }
        }
        Some(pb::master_message::Message::Refused(refused)) => {
            let _ = events.send(Event::Link(LinkEvent::Refused { reason: refused.reason })).await;
            return Ok(Ended::Refused);
        }
        Some(_) => return Err("the master answered the registration with something else".into()),
        None => return Err("the master closed the stream before answering the registration".into()),
    };

    let ended = relay(&mut inbound, &outbox, events, Duration::from_millis(heartbeat_ms)).await;
    if !matches!(ended, Ended::Refused) {
        let _ = events.send(Event::Link(LinkEvent::Disconnected)).await;
    }
    Ok(ended)
}

/// Forwards the master's messages to the owner and sends heartbeats, until the stream ends.
async fn relay(
    inbound: &mut tonic::Streaming<pb::MasterMessage>,
    outbox: &mpsc::Sender<pb::AgentMessage>,
    events: &mpsc::Sender<Event>,
    heartbeat_interval: Duration,
) -> Ended {
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat_interval, heartbeat_interval);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(pb::MasterMessage { message: Some(pb::master_message::Message::Refused(refused)) })) => {
                    let _ = events.send(Event::Link(LinkEvent::Refused { reason: refused.reason })).await;
                    return Ended::Refused;
                }
                Ok(Some(message)) => {
                    if events.send(Event::Link(LinkEvent::Message(Box::new(message)))).await.is_err() {
                        return Ended::AfterRegistering("the agent is stopping".to_owned());
                    }
                }
                Ok(None) => return Ended::AfterRegistering("the master closed the stream".to_owned()),
                Err(status) => return Ended::AfterRegistering(format!("the stream broke: {status}")),
            },
            _ = heartbeat.tick() => {
                let beat = pb::AgentMessage { message: Some(pb::agent_message::Message::Heartbeat(pb::Heartbeat {})) };
                match outbox.try_send(beat) {
                    Ok(()) => {}
                    // Full of updates (right after re-registering with many tasks, say): the
                    // master is reading, only behind, so this beat is skipped rather than the
                    // stream dropped. A master that stopped reading altogether is found by
                    // the HTTP/2 keepalive.
                    Err(mpsc::error::TrySendError::Full(_)) => tracing::debug!("heartbeat skipped: the stream is full"),
                    Err(mpsc::error::TrySendError::Closed(_)) => {
                        return Ended::AfterRegistering("the stream to the master closed".to_owned());
                    }
                }
            }
        }
    }
}

/// An error with its causes, `outer: inner: root`, since tonic's transport errors say
/// little on their own ("transport error").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
