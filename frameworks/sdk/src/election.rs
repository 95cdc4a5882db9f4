//! Leader election among several processes of one framework on etcd (`agora services
//! --etcd`, `agora cron --etcd`), as the masters elect theirs: each campaigns by creating
//! `<root>/leader` (holding its advertised REST address) under a lease it keeps alive; the key's creator leads, the others watch the key and
//! campaign again when it goes. The leader's term (the key's create revision) fences every
//! write to the state in etcd. A leader that loses its lease or its key stops (fail-stop):
//! another process may lead by then, and this one's view of the state may be stale.

use std::time::Duration;

use agora_proto::etcd_client::{Etcd, EtcdError, Holder, Term};
use tokio::sync::watch;

/// Longest wait on one watch of the leader key before reading it again, so that a lost
/// watch cannot leave a follower waiting for ever.
const WATCH_LIMIT: Duration = Duration::from_secs(10);
/// Backoff after etcd errors while campaigning: capped and jittered.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Where one framework's processes meet in etcd.
#[derive(Clone, Debug)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    /// The key prefix, one per framework (`/agora/services`, `/agora/cron`): the leader
    /// key and the state live under it (apart from the masters' `/agora/leader` and
    /// `/agora/registry/`).
    pub root: String,
    /// The leader's lease: a leader that dies is replaced within about this long.
    pub lease_ttl_s: u32,
}

impl EtcdConfig {
    /// `endpoints` meeting under `root`, with a 5-second lease.
    pub fn new(endpoints: Vec<String>, root: &str) -> Self {
        Self { endpoints, root: root.into(), lease_ttl_s: 5 }
    }

    pub fn leader_key(&self) -> Vec<u8> {
        format!("{}/leader", self.root.trim_end_matches('/')).into_bytes()
    }
}

/// What this process is now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    /// Following `leader` (its advertised `host:port`), or nobody while none is elected.
    Follower {
        leader: Option<String>,
    },
}

/// Campaigns until this process leads, publishing who leads meanwhile; returns the term.
pub async fn campaign(client: &Etcd, config: &EtcdConfig, advertise: &str, role: &watch::Sender<Role>) -> Term {
    let key = config.leader_key();
    let mut backoff = RETRY_MIN;
    loop {
        match campaign_once(client, config, &key, advertise).await {
            Ok(Ok(term)) => return term,
            Ok(Err(holder)) => {
                backoff = RETRY_MIN;
                // A key naming this very process is a previous life's whose lease has not
                // expired yet: redirecting clients to it would send them in a circle.
                let leader = (holder.address != advertise).then(|| holder.address.clone());
                role.send_replace(Role::Follower { leader });
                tracing::info!(leader = %holder.address, "following");
                if let Err(error) = client.wait_for_change(&key, holder.read_revision, WATCH_LIMIT).await {
                    tracing::warn!(%error, "watching the leader key failed");
                    tokio::time::sleep(jittered(backoff)).await;
                }
            }
            Err(error) => {
                tracing::warn!(%error, "campaign failed; retrying");
                tokio::time::sleep(jittered(backoff)).await;
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

/// One attempt with a fresh lease; a lost attempt revokes its lease at once.
async fn campaign_once(
    client: &Etcd,
    config: &EtcdConfig,
    key: &[u8],
    advertise: &str,
) -> Result<Result<Term, Holder>, EtcdError> {
    let lease = client.grant_lease(i64::from(config.lease_ttl_s)).await?;
    let result = client.campaign(key, advertise, lease).await;
    if !matches!(result, Ok(Ok(_))) {
        let _ = client.revoke_lease(lease).await;
    }
    result
}

/// Holds leadership for `term`: keeps its lease alive and watches the key. Returns only
/// when leadership is lost, saying why.
pub async fn hold(client: &Etcd, config: &EtcdConfig, term: &Term) -> EtcdError {
    let ttl = Duration::from_secs(u64::from(config.lease_ttl_s));
    // Three refreshes per TTL: one lost refresh costs nothing.
    let keep_alive = client.keep_alive(term.lease_id, ttl, ttl / 3);
    let watch_key = async {
        loop {
            match client.holder(&term.key).await {
                Ok(Some(holder)) if holder.create_revision == term.create_revision => {
                    let _ = client.wait_for_change(&term.key, holder.read_revision, WATCH_LIMIT).await;
                }
                Ok(_) => return EtcdError::Deposed,
                Err(error) => {
                    tracing::warn!(%error, "reading the leader key failed");
                    tokio::time::sleep(jittered(RETRY_MAX)).await;
                }
            }
        }
    };
    tokio::select! {
        error = keep_alive => error,
        error = watch_key => error,
    }
}

fn jittered(base: Duration) -> Duration {
    base.mul_f64(0.5 + rand::random::<f64>())
}
