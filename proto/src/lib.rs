//! Agora's wire protocols and the domain vocabulary every crate shares.
//!
//! `pb` holds the code generated from `proto/agora/v1/*.proto`; `model` holds the plain
//! Rust types the cores work with (identifiers as newtypes, exact resource arithmetic,
//! task states). `convert` is the only place where the two meet: one `From`/`TryFrom`
//! pair per message, rejecting malformed input with an error naming the field.

pub mod convert;
pub mod model;

/// Generated protobuf and gRPC code. These types stay at the edges of each process.
#[allow(missing_debug_implementations, clippy::all)]
pub mod pb {
    tonic::include_proto!("agora.v1");
}

/// Generated code for the subset of etcd's v3 API the masters use (leader election and
/// the registry on etcd). It stays in the master's etcd edge.
#[allow(missing_debug_implementations, clippy::all)]
pub mod etcd {
    tonic::include_proto!("etcdserverpb");
}

pub use convert::WireError;
