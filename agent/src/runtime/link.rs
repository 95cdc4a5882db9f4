//! The link to the master: find it (a list of masters, or the leader key in etcd), dial,
//! register, forward the master's messages to the owner, send heartbeats, and reconnect
//! with capped, jittered backoff whenever the stream breaks.
//! Tasks keep running while the link is down; the owner holds their updates until the agent
//! has registered again.

use std::time::Duration;

use agora_proto::convert::id;
use agora_proto::etcd_client::{Etcd, LEADER_KEY};
use agora_proto::model::AgentId;
use agora_proto::pb;
use agora_proto::pb::agent_link_client::AgentLinkClient;
use rand::SeedableRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::ReceiverStream;

use super::{Event, LinkEvent};
use crate::config::Masters;
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
    pub register_timeout: Duration,
    /// The `authorization` metadata of every attach (the agent's credential as Basic).
    pub authorization: Option<tonic::metadata::AsciiMetadataValue>,
    pub reconnect_initial_ms: u64,
    pub reconnect_max_ms: u64,
    pub seed: u64,
    /// `None`: plain text (bare addresses mean `http://`).
    pub tls: Option<agora_proto::tls::ClientTls>,
}

/// How the link finds the master to dial next.
#[derive(Debug)]
pub(crate) enum Finder {
    /// A list of masters (never empty), dialled in turn: `current` is the master dialled
    /// next, from the list or a leader a follower named; `next` indexes the list's entry
    /// after it.
    List { masters: Vec<String>, next: usize, current: String },
    /// The leader key in etcd, read before each attempt; `named` is a leader a follower
    /// named, dialled once before etcd is asked again, and `revision` the one the key was
    /// last read at, to wait for its next change.
    /// The client is boxed: it is far larger than the list variant.
    Etcd { client: Box<Etcd>, named: Option<String>, revision: Option<i64> },
}

impl Finder {
    /// A finder for `masters`. Fails only on an etcd endpoint that is not an address.
    pub(crate) fn new(masters: &Masters) -> anyhow::Result<Finder> {
        match masters {
            Masters::List(list) => {
                let masters: Vec<String> = list.iter().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty()).collect();
                let current = masters.first().cloned().ok_or_else(|| anyhow::anyhow!("master: no address given"))?;
                Ok(Finder::List { masters, next: 1, current })
            }
            Masters::Etcd(endpoints) => {
                let client = Box::new(Etcd::connect(endpoints)?);
                Ok(Finder::Etcd { client, named: None, revision: None })
            }
        }
    }

    /// The master to dial now; with etcd, the leader it names (an error says why there is
    /// none to dial).
    async fn target(&mut self) -> Result<String, String> {
        match self {
            Finder::List { current, .. } => Ok(current.clone()),
            Finder::Etcd { client, named, revision } => {
                if let Some(leader) = named.take() {
                    return Ok(leader);
                }
                let (leader, read_at) =
                    client.leader().await.map_err(|e| format!("reading the leader from etcd: {e}"))?;
                *revision = Some(read_at);
                let leader = leader.ok_or("etcd names no leading master yet")?;
                tracing::debug!(%leader, "etcd names the leading master");
                Ok(leader)
            }
        }
    }

    /// A follower named the leader: dial it next.
    fn follow(&mut self, leader: String) {
        match self {
            Finder::List { current, .. } => *current = leader,
            Finder::Etcd { named, .. } => *named = Some(leader),
        }
    }

    /// Dialling the last target failed; returns whether the backoff should grow: with a
    /// list, once per round of it, so that finding the leader among live masters stays
    /// quick; with etcd, each time.
    fn failed(&mut self) -> bool {
        match self {
            Finder::List { masters, next, current } => {
                // Back to the list even from a named leader, which may be gone for good.
                let len = masters.len();
                *current = masters[*next % len].clone();
                *next = (*next + 1) % len;
                len == 1 || *next == 1
            }
            Finder::Etcd { .. } => true,
        }
    }

    /// Waits `pause` before the next attempt. With etcd the wait ends early (after at
    /// least `min_pause`) when the leader key changes: the old leader's lease expired, or a
    /// new leader was elected.
    async fn pause(&self, pause: Duration, min_pause: Duration) {
        let Finder::Etcd { client, revision: Some(revision), .. } = self else {
            return tokio::time::sleep(pause).await;
        };
        let changed = async {
            match client.wait_for_change(LEADER_KEY.as_bytes(), *revision, pause).await {
                Ok(()) => tokio::time::sleep(min_pause).await,
                // A failed watch (etcd unreachable) must not end the pause early.
                Err(_) => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = changed => {}
        }
    }
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
        Failed { why: format!("{context}: {:?}: {}", status.code(), status.message()), leader }
    }
}

/// Keeps the agent linked to the master until `stop` turns true. With several masters it
/// dials them in turn, with etcd the leader named there; either way it dials at once the
/// leader a follower names. The backoff between attempts is capped and jittered.
pub(crate) async fn run(
    config: LinkConfig,
    mut finder: Finder,
    events: mpsc::Sender<Event>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let initial_ms = config.reconnect_initial_ms.max(1);
    let mut delay_ms = initial_ms;
    loop {
        let attempt = async {
            match finder.target().await {
                Ok(master) => {
                    let outcome = session(&config, &master, &events).await;
                    (master, outcome)
                }
                Err(why) => (String::new(), Err(Failed::from(why))),
            }
        };
        let (master, outcome) = tokio::select! {
            attempt = attempt => attempt,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        let mut grow = true;
        match outcome {
            Ok(Ended::AfterRegistering(why)) => {
                tracing::warn!(%master, %why, "lost the master; reconnecting");
                delay_ms = initial_ms;
            }
            Ok(Ended::Refused) => delay_ms = initial_ms,
            Err(Failed { why, leader: Some(leader) }) if leader != master => {
                tracing::info!(%master, %leader, %why, "following the leading master");
                finder.follow(leader);
                delay_ms = initial_ms;
                grow = false;
            }
            Err(Failed { why, .. }) if master.is_empty() => {
                tracing::info!(error = %why, retry_in_ms = delay_ms, "cannot find the master");
                grow = finder.failed();
            }
            Err(Failed { why, .. }) => {
                tracing::info!(%master, error = %why, retry_in_ms = delay_ms, "cannot reach the master");
                grow = finder.failed();
            }
        }
        let pause = Duration::from_millis(jittered(delay_ms, &mut rng));
        if grow {
            delay_ms = delay_ms.saturating_mul(2).min(config.reconnect_max_ms.max(1));
        }
        tokio::select! {
            () = finder.pause(pause, Duration::from_millis(initial_ms)) => {}
            _ = stop.wait_for(|stopped| *stopped) => return,
        }
    }
}

/// One connection: dial, register, then relay until the stream ends. Tells the owner
/// `Disconnected` on the way out once it has told it `Registered`.
async fn session(config: &LinkConfig, master: &str, events: &mpsc::Sender<Event>) -> Result<Ended, Failed> {
    let endpoint = agora_proto::tls::endpoint(master, config.tls.as_ref())
        .map_err(|e| format!("master address {e}"))?
        .connect_timeout(config.register_timeout)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    let channel = endpoint.connect().await.map_err(|e| format!("connect: {}", agora_proto::tls::describe(&e)))?;
    let mut client = AgentLinkClient::new(channel);

    let (reply, register) = oneshot::channel();
    events.send(Event::Link(LinkEvent::Connecting { reply })).await.map_err(|_| "the agent is stopping")?;
    let register = register.await.map_err(|_| "the agent is stopping")?;
    let (outbox, outgoing) = mpsc::channel(OUTBOX_LEN);
    let first = pb::AgentMessage { message: Some(pb::agent_message::Message::Register(register)) };
    outbox.try_send(first).map_err(|_| "the new outbox is full")?;

    let registering = async {
        let mut request = tonic::Request::new(ReceiverStream::new(outgoing));
        if let Some(value) = &config.authorization {
            request.metadata_mut().insert(agora_proto::auth::AUTHORIZATION, value.clone());
        }
        let response = client.attach(request).await.map_err(|s| Failed::status("attach", &s))?;
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
            let master = master.to_owned();
            events
                .send(Event::Link(LinkEvent::Registered { agent_id, master, outbox }))
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
        None => {
            return Err("the master closed the stream before answering the registration".into());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn list(masters: &[&str]) -> Finder {
        Finder::new(&Masters::List(masters.iter().map(|m| (*m).to_owned()).collect())).expect("a valid list")
    }

    #[tokio::test]
    async fn masters_are_dialled_in_turn_and_the_backoff_grows_once_per_round() {
        let mut finder = list(&["a:1", "b:1", "c:1"]);
        let mut dialled = vec![finder.target().await.expect("a master")];
        let mut grows = Vec::new();
        for _ in 0..3 {
            grows.push(finder.failed());
            dialled.push(finder.target().await.expect("a master"));
        }
        assert_eq!(dialled, ["a:1", "b:1", "c:1", "a:1"]);
        assert_eq!(grows, [false, false, true]);
    }

    #[tokio::test]
    async fn a_named_leader_is_dialled_next_and_a_failed_one_sends_the_agent_back_to_its_list() {
        let mut finder = list(&["a:1"]);
        finder.follow("leader:1".to_owned());
        assert_eq!(finder.target().await.as_deref(), Ok("leader:1"));
        assert!(finder.failed(), "a one-master list grows the backoff on every failure");
        assert_eq!(finder.target().await.as_deref(), Ok("a:1"));
    }

    #[tokio::test]
    async fn with_etcd_a_named_leader_is_dialled_once_before_etcd_is_asked_again() {
        // Nothing listens on port 1: reading the key fails, quickly.
        let mut finder = Finder::new(&Masters::Etcd(vec!["127.0.0.1:1".to_owned()])).expect("a valid endpoint");
        finder.follow("leader:1".to_owned());
        assert_eq!(finder.target().await.as_deref(), Ok("leader:1"));
        let error = finder.target().await.expect_err("etcd is unreachable");
        assert!(error.starts_with("reading the leader from etcd"), "{error}");
    }

    #[test]
    fn an_empty_list_of_masters_is_refused() {
        let error = Finder::new(&Masters::List(vec![" ".to_owned()])).expect_err("no master");
        assert!(error.to_string().starts_with("master"), "{error}");
    }
}
