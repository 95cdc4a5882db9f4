//! A small client for the part of etcd's v3 API Agora uses: the masters hold the leader
//! key under a lease (election) and write the registry's keys in fenced transactions;
//! agents read the leader key to find the master to register with.
//!
//! The leader key's `create_revision` identifies one term of leadership: it changes every
//! time a master creates the key, so a write compared against it fails once the key was
//! deleted (lease expired) and created again by another master, even by the same process.

use std::time::Duration;

use crate::etcd as pb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::kv_client::KvClient;
use pb::lease_client::LeaseClient;
use pb::watch_client::WatchClient;
use tonic::transport::{Channel, Endpoint};

/// How long one etcd request may take before it is an error.
const RPC_TIMEOUT: Duration = Duration::from_secs(5);
/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Keys read per request when loading a range, so a large registry never meets a
/// message-size limit.
const RANGE_PAGE: i64 = 1000;
/// Most pages read for one range (with `RANGE_PAGE`, ten million keys).
const MAX_PAGES: usize = 10_000;
/// Largest etcd answer accepted; a page of `RANGE_PAGE` registry records is far below it.
const MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("--etcd {endpoint}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("--etcd needs at least one endpoint")]
    NoEndpoint,
    #[error("etcd request failed: {0}")]
    Rpc(#[from] tonic::Status),
    /// A fenced write found the leader key gone or created by another term.
    #[error("this master is no longer the leader: the leader key changed")]
    Deposed,
    #[error("etcd answered unexpectedly: {0}")]
    Protocol(String),
}

/// One term of leadership: the lease the leader key is held under and the revision at
/// which this master created it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Term {
    pub key: Vec<u8>,
    pub lease_id: i64,
    pub create_revision: i64,
}

/// Who holds the leader key now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    /// The leader's advertised `host:port`.
    pub address: String,
    pub create_revision: i64,
    /// The revision at which this was read; a watch from the next one sees every change.
    pub read_revision: i64,
}

/// The key the masters campaign on (under their root, `/agora`): it holds the leading
/// master's advertised `host:port`, under the leader's lease, and is absent while no
/// master leads.
pub const LEADER_KEY: &str = "/agora/leader";

/// Most endpoints one client takes: an etcd cluster has a handful of members.
pub const MAX_ENDPOINTS: usize = 64;

/// A connection to an etcd cluster (any of its endpoints).
#[derive(Clone, Debug)]
pub struct Etcd {
    kv: KvClient<Channel>,
    lease: LeaseClient<Channel>,
    watch: WatchClient<Channel>,
}

/// Reads a comma-separated list of etcd endpoints, `host:port` or `http://host:port`,
/// as `--etcd` takes them. Errors name the endpoint at fault; the caller adds the flag.
pub fn parse_endpoints(value: &str) -> Result<Vec<String>, EtcdError> {
    let endpoints: Vec<String> =
        value.split(',').map(str::trim).filter(|e| !e.is_empty()).map(check_endpoint).collect::<Result<_, _>>()?;
    if endpoints.is_empty() {
        return Err(EtcdError::NoEndpoint);
    }
    if endpoints.len() > MAX_ENDPOINTS {
        return Err(EtcdError::Endpoint {
            endpoint: value.to_owned(),
            reason: format!("at most {MAX_ENDPOINTS} endpoints"),
        });
    }
    Ok(endpoints)
}

/// One endpoint: `host:port` with a port above zero, optionally after `http://`. TLS
/// (`https://`) is refused here rather than failing later at every connection attempt.
fn check_endpoint(raw: &str) -> Result<String, EtcdError> {
    let bad = |reason: &str| EtcdError::Endpoint { endpoint: raw.to_owned(), reason: reason.to_owned() };
    if raw.starts_with("https://") {
        return Err(bad("TLS is not supported; give an http:// endpoint"));
    }
    let bare = raw.strip_prefix("http://").unwrap_or(raw);
    if bare.contains("://") {
        return Err(bad("expected HOST:PORT or http://HOST:PORT"));
    }
    let valid = bare.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty() && !host.contains('/') && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !valid {
        return Err(bad("expected HOST:PORT or http://HOST:PORT, like 127.0.0.1:2379"));
    }
    endpoint(raw)?;
    Ok(raw.to_owned())
}

/// `http://` is added to an endpoint given as `host:port`.
fn endpoint(raw: &str) -> Result<Endpoint, EtcdError> {
    let url = if raw.contains("://") { raw.to_owned() } else { format!("http://{raw}") };
    let bad = |reason: String| EtcdError::Endpoint { endpoint: raw.to_owned(), reason };
    Ok(Endpoint::from_shared(url)
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(RPC_TIMEOUT)
        .tcp_nodelay(true))
}

/// The first key after every key that starts with `prefix`, etcd's way of naming a range.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Every byte was 0xff: the range runs to the end of the key space.
    vec![0]
}

impl Etcd {
    /// A client balancing over `endpoints` (`host:port` or URLs). Connections are made
    /// lazily, so an unreachable cluster shows as the first request failing. Must be
    /// called within a tokio runtime, which then drives the connections.
    pub fn connect(endpoints: &[String]) -> Result<Etcd, EtcdError> {
        let endpoints: Vec<Endpoint> = endpoints.iter().map(|e| endpoint(e)).collect::<Result<_, _>>()?;
        if endpoints.is_empty() {
            return Err(EtcdError::NoEndpoint);
        }
        let channel = Channel::balance_list(endpoints.into_iter());
        Ok(Etcd {
            kv: KvClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE_BYTES),
            lease: LeaseClient::new(channel.clone()),
            watch: WatchClient::new(channel).max_decoding_message_size(MAX_MESSAGE_BYTES),
        })
    }

    /// Every key and value under `prefix`, read at one revision, in key order.
    pub async fn range_prefix(&self, prefix: &[u8]) -> Result<Vec<pb::KeyValue>, EtcdError> {
        let end = prefix_end(prefix);
        let mut start = prefix.to_vec();
        let mut revision = 0;
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            let request = pb::RangeRequest { key: start.clone(), range_end: end.clone(), limit: RANGE_PAGE, revision };
            let response = self.kv.clone().range(request).await?.into_inner();
            if revision == 0 {
                revision = response.header.map_or(0, |h| h.revision);
            }
            let more = response.more;
            if let Some(last) = response.kvs.last() {
                // The next page starts just after the last key read.
                start = last.key.clone();
                start.push(0);
            }
            all.extend(response.kvs);
            if !more {
                return Ok(all);
            }
        }
        Err(EtcdError::Protocol(format!("more than {MAX_PAGES} pages under one prefix")))
    }

    /// Grants a lease of `ttl_s` seconds.
    pub async fn grant_lease(&self, ttl_s: i64) -> Result<i64, EtcdError> {
        let response = self.lease.clone().lease_grant(pb::LeaseGrantRequest { ttl: ttl_s, id: 0 }).await?.into_inner();
        if !response.error.is_empty() {
            return Err(EtcdError::Protocol(format!("lease grant: {}", response.error)));
        }
        Ok(response.id)
    }

    /// Revokes a lease, deleting the keys held under it (stepping down at once instead of
    /// letting the followers wait for the lease to expire).
    pub async fn revoke_lease(&self, lease_id: i64) -> Result<(), EtcdError> {
        self.lease.clone().lease_revoke(pb::LeaseRevokeRequest { id: lease_id }).await?;
        Ok(())
    }

    /// Keeps `lease_id` alive with one refresh every `interval` until the lease is lost:
    /// etcd reports it expired, or no refresh succeeded for `ttl` (then it has expired, or
    /// this master cannot tell). Returns why it was lost; it never returns while held.
    pub async fn keep_alive(&self, lease_id: i64, ttl: Duration, interval: Duration) -> EtcdError {
        let mut last_refresh = tokio::time::Instant::now();
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if last_refresh.elapsed() >= ttl {
                return EtcdError::Protocol(format!("no lease refresh succeeded within {ttl:?}"));
            }
            // One request per stream: a stream broken by a failed etcd member is simply
            // opened again on the next tick, through another endpoint.
            let request = tokio_stream::iter([pb::LeaseKeepAliveRequest { id: lease_id }]);
            let answer = async {
                let mut responses = self.lease.clone().lease_keep_alive(request).await?.into_inner();
                responses.message().await
            };
            match tokio::time::timeout(interval, answer).await {
                Ok(Ok(Some(response))) if response.ttl > 0 => last_refresh = tokio::time::Instant::now(),
                Ok(Ok(Some(_))) => return EtcdError::Protocol("the lease expired".into()),
                Ok(Ok(None)) => tracing::warn!("etcd closed the lease keep-alive stream; retrying"),
                Ok(Err(status)) => tracing::warn!(%status, "lease keep-alive failed; retrying"),
                Err(_) => tracing::warn!("lease keep-alive timed out; retrying"),
            }
        }
    }

    /// Creates `key` holding `value` under `lease_id` if nobody holds it: `Ok(Ok(term))`
    /// when this master now leads, `Ok(Err(holder))` when another does.
    pub async fn campaign(&self, key: &[u8], value: &str, lease_id: i64) -> Result<Result<Term, Holder>, EtcdError> {
        let absent = pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: key.to_vec(),
            target_union: Some(TargetUnion::CreateRevision(0)),
        };
        let put = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: key.to_vec(),
                value: value.as_bytes().to_vec(),
                lease: lease_id,
            })),
        };
        let get = pb::RequestOp {
            request: Some(pb::request_op::Request::RequestRange(pb::RangeRequest {
                key: key.to_vec(),
                ..Default::default()
            })),
        };
        let txn = pb::TxnRequest { compare: vec![absent], success: vec![put], failure: vec![get] };
        let response = self.kv.clone().txn(txn).await?.into_inner();
        let revision = response.header.map_or(0, |h| h.revision);
        if response.succeeded {
            // The put is the transaction's only write, so the key was created at the
            // revision the transaction produced.
            return Ok(Ok(Term { key: key.to_vec(), lease_id, create_revision: revision }));
        }
        let kv = response.responses.into_iter().find_map(|op| match op.response {
            Some(pb::response_op::Response::ResponseRange(range)) => range.kvs.into_iter().next(),
            _ => None,
        });
        match kv {
            Some(kv) => Ok(Err(holder(kv, revision))),
            // The holder's lease expired between the compare and the read: try again.
            None => Err(EtcdError::Protocol("the leader key vanished during the campaign".into())),
        }
    }

    /// Who holds `key`, if anyone.
    pub async fn holder(&self, key: &[u8]) -> Result<Option<Holder>, EtcdError> {
        Ok(self.holder_at(key).await?.0)
    }

    /// Who holds `key`, if anyone, and the revision at which that was read: a watch from
    /// the next revision ([`Etcd::wait_for_change`]) sees the key appear, change or go.
    async fn holder_at(&self, key: &[u8]) -> Result<(Option<Holder>, i64), EtcdError> {
        let request = pb::RangeRequest { key: key.to_vec(), ..Default::default() };
        let response = self.kv.clone().range(request).await?.into_inner();
        let revision = response.header.map_or(0, |h| h.revision);
        Ok((response.kvs.into_iter().next().map(|kv| holder(kv, revision)), revision))
    }

    /// The leading master's advertised `host:port` as [`LEADER_KEY`] holds it (`None` while
    /// no master leads), and the revision it was read at: a watch of the key from the next
    /// revision ([`Etcd::wait_for_change`]) sees the next leader appear. What agents and
    /// frameworks dial.
    pub async fn leader(&self) -> Result<(Option<String>, i64), EtcdError> {
        let (holder, revision) = self.holder_at(LEADER_KEY.as_bytes()).await?;
        let address = holder.map(|holder| holder.address.trim().to_owned()).filter(|address| !address.is_empty());
        Ok((address, revision))
    }

    /// Waits until `key` changes after `revision` (deleted, or created again), or until
    /// `limit` passes; the caller reads the key again either way.
    pub async fn wait_for_change(&self, key: &[u8], revision: i64, limit: Duration) -> Result<(), EtcdError> {
        let create = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(pb::WatchCreateRequest {
                key: key.to_vec(),
                range_end: Vec::new(),
                start_revision: revision + 1,
            })),
        };
        // The request stream stays open while watching: etcd cancels a watch whose
        // request stream has ended.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(create).await.map_err(|_| EtcdError::Protocol("watch request channel closed".into()))?;
        let requests = tokio_stream::wrappers::ReceiverStream::new(rx);
        let watch = async {
            let mut responses = self.watch.clone().watch(requests).await?.into_inner();
            while let Some(response) = responses.message().await? {
                if response.canceled || !response.events.is_empty() {
                    return Ok(());
                }
            }
            Ok(())
        };
        let result = tokio::time::timeout(limit, watch).await.unwrap_or(Ok(()));
        drop(tx);
        result
    }

    /// Applies `writes` (a value to put, or `None` to delete, per key) if `term` still
    /// holds the leader key, in transactions of at most `max_ops` writes.
    pub async fn fenced_write(
        &self,
        term: &Term,
        writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
        max_ops: usize,
    ) -> Result<(), EtcdError> {
        let ops: Vec<pb::RequestOp> = writes
            .into_iter()
            .map(|(key, value)| pb::RequestOp {
                request: Some(match value {
                    Some(value) => pb::request_op::Request::RequestPut(pb::PutRequest { key, value, lease: 0 }),
                    None => pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                        key,
                        range_end: Vec::new(),
                    }),
                }),
            })
            .collect();
        for chunk in ops.chunks(max_ops.max(1)) {
            let fence = pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Create as i32,
                key: term.key.clone(),
                target_union: Some(TargetUnion::CreateRevision(term.create_revision)),
            };
            let txn = pb::TxnRequest { compare: vec![fence], success: chunk.to_vec(), failure: Vec::new() };
            if !self.kv.clone().txn(txn).await?.into_inner().succeeded {
                return Err(EtcdError::Deposed);
            }
        }
        Ok(())
    }
}

/// One write of a [`Etcd::fenced_txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KvWrite {
    Put {
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        key: Vec<u8>,
    },
    /// Every key that starts with `prefix`.
    DeletePrefix {
        prefix: Vec<u8>,
    },
}

impl KvWrite {
    /// Bytes the write adds to a request, for keeping transactions under etcd's limit.
    pub fn size(&self) -> usize {
        match self {
            KvWrite::Put { key, value } => key.len() + value.len(),
            KvWrite::Delete { key } => key.len(),
            KvWrite::DeletePrefix { prefix } => 2 * prefix.len(),
        }
    }
}

impl Etcd {
    /// Applies `writes` in ONE transaction if `term` still holds the leader key;
    /// [`EtcdError::Deposed`] when it does not. The caller keeps the transaction within
    /// etcd's limits (`--max-txn-ops`, 128 by default; `--max-request-bytes`, 1.5 MiB).
    pub async fn fenced_txn(&self, term: &Term, writes: &[KvWrite]) -> Result<(), EtcdError> {
        let success = writes
            .iter()
            .map(|write| pb::RequestOp {
                request: Some(match write {
                    KvWrite::Put { key, value } => pb::request_op::Request::RequestPut(pb::PutRequest {
                        key: key.clone(),
                        value: value.clone(),
                        lease: 0,
                    }),
                    KvWrite::Delete { key } => pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                        key: key.clone(),
                        range_end: Vec::new(),
                    }),
                    KvWrite::DeletePrefix { prefix } => {
                        pb::request_op::Request::RequestDeleteRange(pb::DeleteRangeRequest {
                            key: prefix.clone(),
                            range_end: prefix_end(prefix),
                        })
                    }
                }),
            })
            .collect();
        let fence = pb::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: term.key.clone(),
            target_union: Some(TargetUnion::CreateRevision(term.create_revision)),
        };
        let txn = pb::TxnRequest { compare: vec![fence], success, failure: Vec::new() };
        if self.kv.clone().txn(txn).await?.into_inner().succeeded { Ok(()) } else { Err(EtcdError::Deposed) }
    }
}

fn holder(kv: pb::KeyValue, read_revision: i64) -> Holder {
    Holder {
        address: String::from_utf8_lossy(&kv.value).into_owned(),
        create_revision: kv.create_revision,
        read_revision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_of_a_prefix_range_is_the_prefix_with_its_last_byte_incremented() {
        assert_eq!(prefix_end(b"/agora/registry/"), b"/agora/registry0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff"), vec![0]);
    }

    #[test]
    fn endpoints_are_host_port_pairs_with_or_without_http() {
        let parsed = parse_endpoints("10.0.0.1:2379, http://etcd-2:2379,,").expect("valid endpoints");
        assert_eq!(parsed, ["10.0.0.1:2379", "http://etcd-2:2379"]);
    }

    #[test]
    fn a_bad_endpoint_is_refused_naming_it() {
        for bad in ["etcd", "etcd:", ":2379", "etcd:0", "etcd:99999", "https://etcd:2379", "ftp://etcd:2379", "a/b:1"] {
            let error = parse_endpoints(bad).expect_err(bad).to_string();
            assert!(error.starts_with(&format!("--etcd {bad}: ")), "{bad}: {error}");
        }
        assert_eq!(parse_endpoints(" , ").expect_err("empty").to_string(), "--etcd needs at least one endpoint");
    }
}
