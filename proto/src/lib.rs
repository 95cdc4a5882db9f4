//! Agora's wire protocols and the domain vocabulary every crate shares.
//!
//! `pb` holds the code generated from `proto/agora/v1/*.proto`; `model` holds the plain
//! Rust types the cores work with (identifiers as newtypes, exact resource arithmetic,
//! task states). `convert` is the only place where the two meet: one `From`/`TryFrom`
//! pair per message, rejecting malformed input with an error naming the field.
//! `etcd_client` is the etcd v3 client the masters elect their leader with and agents
//! find that leader with. `auth` reads credentials and `Authorization` values; `acl`
//! evaluates Mesos' JSON ACLs. `edge` is what every HTTP server shares against hostile
//! callers: the JSON error shape, the cross-site guard on changes, rate and size limits.

pub mod acl;
pub mod auth;
pub mod codec;
pub mod convert;
pub mod edge;
pub mod model;

/// Generated protobuf and gRPC code. These types stay at the edges of each process.
#[allow(missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("agora.v1");
}

/// Generated code for the subset of etcd's v3 API Agora uses (leader election and the
/// registry on etcd). It stays inside [`etcd_client`].
#[allow(missing_debug_implementations, clippy::all)]
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

pub mod etcd_client;
pub mod tls;

pub use convert::WireError;
