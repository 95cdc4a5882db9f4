//! The Mesos v1 scheduler API's messages, in Mesos' names and field numbers: each type is
//! both a protobuf message (prost, for `application/x-protobuf`) and a serde DTO (for
//! `application/json`, where enums are their names and bytes are base64), so the two
//! encodings cannot drift apart. Only the parts Agora reads or writes are declared;
//! protobuf skips unknown fields and serde ignores unknown keys, as Mesos' own parsers
//! do. Fields Agora cannot honour are declared as `Opaque` so that their presence can be
//! refused by name instead of silently dropped.

use serde::{Deserialize, Serialize};

/// Declares a Mesos enum as its (name, number) table and a serde module reading and
/// writing an `Option<i32>` field by name.
macro_rules! mesos_enum {
    ($module:ident { $($name:literal = $value:literal),+ $(,)? }) => {
        pub mod $module {
            pub const VALUES: &[(&str, i32)] = &[$(($name, $value)),+];

            /// The number of `name`, if Mesos defines it.
            pub fn value(name: &str) -> Option<i32> {
                VALUES.iter().find(|(n, _)| *n == name).map(|&(_, v)| v)
            }

            /// The name of `value`, if Mesos defines it.
            pub fn name(value: i32) -> Option<&'static str> {
                VALUES.iter().find(|(_, v)| *v == value).map(|&(n, _)| n)
            }

            pub fn serialize<S: serde::Serializer>(value: &Option<i32>, serializer: S) -> Result<S::Ok, S::Error> {
                match value.and_then(name) {
                    Some(name) => serializer.serialize_str(name),
                    None => serializer.serialize_none(),
                }
            }

            pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<i32>, D::Error> {
                let text: Option<String> = serde::Deserialize::deserialize(deserializer)?;
                match text {
                    None => Ok(None),
                    Some(text) => value(&text).map(Some).ok_or_else(|| {
                        let known: Vec<&str> = VALUES.iter().map(|&(n, _)| n).collect();
                        serde::de::Error::custom(format!("unknown value `{text}`, expected one of {}", known.join(", ")))
                    }),
                }
            }
        }
    };
}

mesos_enum!(call_type {
    "UNKNOWN" = 0, "SUBSCRIBE" = 1, "TEARDOWN" = 2, "ACCEPT" = 3, "DECLINE" = 4,
    "ACCEPT_INVERSE_OFFERS" = 13, "DECLINE_INVERSE_OFFERS" = 14, "REVIVE" = 5, "KILL" = 6,
    "SHUTDOWN" = 7, "ACKNOWLEDGE" = 8, "ACKNOWLEDGE_OPERATION_STATUS" = 15, "RECONCILE" = 9,
    "RECONCILE_OPERATIONS" = 16, "MESSAGE" = 10, "REQUEST" = 11, "SUPPRESS" = 12,
    "UPDATE_FRAMEWORK" = 17,
});

mesos_enum!(event_type {
    "UNKNOWN" = 0, "SUBSCRIBED" = 1, "OFFERS" = 2, "INVERSE_OFFERS" = 9, "RESCIND" = 3,
    "RESCIND_INVERSE_OFFER" = 10, "UPDATE" = 4, "MESSAGE" = 5, "FAILURE" = 6, "ERROR" = 7,
    "HEARTBEAT" = 8,
});

mesos_enum!(operation_type {
    "UNKNOWN" = 0, "LAUNCH" = 1, "LAUNCH_GROUP" = 6, "RESERVE" = 2, "UNRESERVE" = 3,
    "CREATE" = 4, "DESTROY" = 5, "GROW_VOLUME" = 11, "SHRINK_VOLUME" = 12,
    "CREATE_DISK" = 13, "DESTROY_DISK" = 14,
});

mesos_enum!(value_type { "SCALAR" = 0, "RANGES" = 1, "SET" = 2, "TEXT" = 3 });

mesos_enum!(reservation_type { "UNKNOWN" = 0, "STATIC" = 1, "DYNAMIC" = 2 });

mesos_enum!(capability_type {
    "UNKNOWN" = 0, "REVOCABLE_RESOURCES" = 1, "TASK_KILLING_STATE" = 2, "GPU_RESOURCES" = 3,
    "SHARED_RESOURCES" = 4, "PARTITION_AWARE" = 5, "MULTI_ROLE" = 6,
    "RESERVATION_REFINEMENT" = 7, "REGION_AWARE" = 8,
});

mesos_enum!(variable_type { "UNKNOWN" = 0, "VALUE" = 1, "SECRET" = 2 });

mesos_enum!(task_state {
    "TASK_STAGING" = 6, "TASK_STARTING" = 0, "TASK_RUNNING" = 1, "TASK_KILLING" = 8,
    "TASK_FINISHED" = 2, "TASK_FAILED" = 3, "TASK_KILLED" = 4, "TASK_ERROR" = 7,
    "TASK_LOST" = 5, "TASK_DROPPED" = 9, "TASK_UNREACHABLE" = 10, "TASK_GONE" = 11,
    "TASK_GONE_BY_OPERATOR" = 12, "TASK_UNKNOWN" = 13,
});

mesos_enum!(status_source { "SOURCE_MASTER" = 0, "SOURCE_AGENT" = 1, "SOURCE_EXECUTOR" = 2 });

mesos_enum!(status_reason {
    "REASON_COMMAND_EXECUTOR_FAILED" = 0, "REASON_CONTAINER_LAUNCH_FAILED" = 21,
    "REASON_FRAMEWORK_REMOVED" = 3, "REASON_INVALID_OFFERS" = 6, "REASON_RECONCILIATION" = 9,
    "REASON_AGENT_DISCONNECTED" = 10, "REASON_AGENT_REMOVED" = 11, "REASON_AGENT_RESTARTED" = 12,
    "REASON_AGENT_UNKNOWN" = 13, "REASON_TASK_INVALID" = 14, "REASON_TASK_UNKNOWN" = 16,
    "REASON_TASK_CHECK_STATUS_UPDATED" = 28, "REASON_TASK_HEALTH_CHECK_STATUS_UPDATED" = 29,
    "REASON_TASK_KILLED_DURING_LAUNCH" = 30,
});

mesos_enum!(health_check_type { "UNKNOWN" = 0, "COMMAND" = 1, "HTTP" = 2, "TCP" = 3, "GRPC" = 4 });

/// Bytes as base64 text in JSON (Mesos' rule for `bytes` fields).
pub mod base64_bytes {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: serde::Serializer>(value: &Option<Vec<u8>>, serializer: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(bytes) => serializer.serialize_str(&STANDARD.encode(bytes)),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = serde::Deserialize::deserialize(deserializer)?;
        text.map(|text| {
            STANDARD.decode(text.as_bytes()).map_err(|e| serde::de::Error::custom(format!("not base64: {e}")))
        })
        .transpose()
    }
}

/// A message Agora does not interpret, declared so that its presence can be refused by
/// name: any JSON object, any protobuf message.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Opaque {}

/// `FrameworkID`, `AgentID`, `OfferID`, `TaskID`, `ExecutorID`: `{"value": "…"}`.
#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct Id {
    #[prost(string, required, tag = "1")]
    pub value: String,
}

impl Id {
    pub fn new(value: impl Into<String>) -> Self {
        Self { value: value.into() }
    }
}

// ---- calls ----

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Call {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_id: Option<Id>,
    #[prost(int32, optional, tag = "2")]
    #[serde(default, with = "call_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    #[prost(message, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept: Option<Accept>,
    #[prost(message, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline: Option<Decline>,
    #[prost(message, optional, tag = "13")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accept_inverse_offers: Option<InverseOffers>,
    #[prost(message, optional, tag = "14")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decline_inverse_offers: Option<InverseOffers>,
    #[prost(message, optional, tag = "15")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revive: Option<Roles>,
    #[prost(message, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    #[prost(message, optional, tag = "7")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<Shutdown>,
    #[prost(message, optional, tag = "8")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledge: Option<Acknowledge>,
    #[prost(message, optional, tag = "9")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconcile: Option<Reconcile>,
    #[prost(message, optional, tag = "10")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[prost(message, optional, tag = "11")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Opaque>,
    #[prost(message, optional, tag = "16")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppress: Option<Roles>,
    #[prost(message, optional, tag = "19")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_framework: Option<Subscribe>,
}

/// `Call.Subscribe` and `Call.UpdateFramework` (same fields).
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Subscribe {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framework_info: Option<FrameworkInfo>,
    #[prost(string, repeated, tag = "2")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub suppressed_roles: Vec<String>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer_constraints: Option<Opaque>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Accept {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub offer_ids: Vec<Id>,
    #[prost(message, repeated, tag = "2")]
    #[serde(default)]
    pub operations: Vec<Operation>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Decline {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub offer_ids: Vec<Id>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct InverseOffers {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub inverse_offer_ids: Vec<Id>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Filters>,
}

/// `Call.Revive` and `Call.Suppress`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Roles {
    #[prost(string, repeated, tag = "1")]
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Filters {
    #[prost(double, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_seconds: Option<f64>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Kill {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Id>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Shutdown {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<Id>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Acknowledge {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Id>,
    #[prost(bytes = "vec", optional, tag = "3")]
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Reconcile {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub tasks: Vec<ReconcileTask>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct ReconcileTask {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Id>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
}

/// `Call.Message` and `Event.Message`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Message {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<Id>,
    #[prost(bytes = "vec", optional, tag = "3")]
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Option::is_none")]
    pub data: Option<Vec<u8>>,
}

// ---- the shared vocabulary (mesos.proto) ----

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct FrameworkInfo {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[prost(string, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<Id>,
    #[prost(double, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_timeout: Option<f64>,
    #[prost(bool, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<bool>,
    #[prost(string, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[prost(string, optional, tag = "7")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[prost(string, optional, tag = "8")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[prost(string, optional, tag = "9")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webui_url: Option<String>,
    #[prost(message, repeated, tag = "10")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<Capability>,
    #[prost(message, optional, tag = "11")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    #[prost(string, repeated, tag = "12")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Capability {
    #[prost(int32, optional, tag = "1")]
    #[serde(default, with = "capability_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Labels {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub labels: Vec<Label>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Label {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[prost(string, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Resource {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[prost(int32, optional, tag = "2")]
    #[serde(default, with = "value_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalar: Option<Scalar>,
    #[prost(message, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<Ranges>,
    #[prost(message, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Set>,
    #[prost(string, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[prost(message, optional, tag = "7")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Opaque>,
    #[prost(message, optional, tag = "8")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reservation: Option<ReservationInfo>,
    #[prost(message, optional, tag = "9")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocable: Option<Opaque>,
    #[prost(message, optional, tag = "10")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<Opaque>,
    #[prost(message, optional, tag = "11")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
    #[prost(message, repeated, tag = "13")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reservations: Vec<ReservationInfo>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Scalar {
    #[prost(double, required, tag = "1")]
    pub value: f64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Ranges {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub range: Vec<Range>,
}

#[derive(Clone, PartialEq, Eq, prost::Message, Serialize, Deserialize)]
pub struct Range {
    #[prost(uint64, required, tag = "1")]
    pub begin: u64,
    #[prost(uint64, required, tag = "2")]
    pub end: u64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Set {
    #[prost(string, repeated, tag = "1")]
    #[serde(default)]
    pub item: Vec<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Text {
    #[prost(string, required, tag = "1")]
    pub value: String,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct ReservationInfo {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
    #[prost(string, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[prost(int32, optional, tag = "4")]
    #[serde(default, with = "reservation_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct AllocationInfo {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Attribute {
    #[prost(string, required, tag = "1")]
    pub name: String,
    #[prost(int32, optional, tag = "2")]
    #[serde(default, with = "value_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<Text>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Offer {
    #[prost(message, required, tag = "1")]
    pub id: Id,
    #[prost(message, required, tag = "2")]
    pub framework_id: Id,
    #[prost(message, required, tag = "3")]
    pub agent_id: Id,
    #[prost(string, required, tag = "4")]
    pub hostname: String,
    #[prost(message, repeated, tag = "5")]
    pub resources: Vec<Resource>,
    #[prost(message, repeated, tag = "7")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<Attribute>,
    /// When the agent's machine is scheduled for maintenance.
    #[prost(message, optional, tag = "9")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailability: Option<Unavailability>,
    #[prost(message, optional, tag = "10")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_info: Option<AllocationInfo>,
}

/// `Offer.Operation`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Operation {
    #[prost(int32, optional, tag = "1")]
    #[serde(default, with = "operation_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reserve: Option<ResourceList>,
    #[prost(message, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreserve: Option<ResourceList>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Launch {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub task_infos: Vec<TaskInfo>,
}

/// `Offer.Operation.Reserve` and `.Unreserve`.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct ResourceList {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub resources: Vec<Resource>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct TaskInfo {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<Id>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[prost(message, repeated, tag = "4")]
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[prost(message, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<Opaque>,
    #[prost(message, optional, tag = "7")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    #[prost(message, optional, tag = "8")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[prost(message, optional, tag = "9")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<Opaque>,
    #[prost(message, optional, tag = "10")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    #[prost(message, optional, tag = "12")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
    #[prost(message, optional, tag = "14")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_time: Option<Opaque>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct CommandInfo {
    #[prost(message, repeated, tag = "1")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uris: Vec<Uri>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    #[prost(string, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[prost(string, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[prost(bool, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<bool>,
    #[prost(string, repeated, tag = "7")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arguments: Vec<String>,
}

/// `CommandInfo.URI`: a file the agent fetches into the sandbox before the command runs.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Uri {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[prost(bool, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executable: Option<bool>,
    /// Mesos' default is true.
    #[prost(bool, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract: Option<bool>,
    #[prost(bool, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<bool>,
    #[prost(string, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_file: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Environment {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub variables: Vec<Variable>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Variable {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[prost(int32, optional, tag = "3")]
    #[serde(default, with = "variable_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct KillPolicy {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period: Option<DurationInfo>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct DurationInfo {
    #[prost(int64, required, tag = "1")]
    pub nanoseconds: i64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct HealthCheck {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpCheck>,
    #[prost(double, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_seconds: Option<f64>,
    #[prost(double, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_seconds: Option<f64>,
    #[prost(double, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    #[prost(uint32, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    #[prost(double, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_period_seconds: Option<f64>,
    #[prost(message, optional, tag = "7")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<CommandInfo>,
    #[prost(int32, optional, tag = "8")]
    #[serde(default, with = "health_check_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "9")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpCheck>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct HttpCheck {
    #[prost(uint32, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    #[prost(string, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[prost(string, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct TcpCheck {
    #[prost(uint32, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct TaskStatus {
    #[prost(message, required, tag = "1")]
    pub task_id: Id,
    #[prost(int32, optional, tag = "2")]
    #[serde(default, with = "task_state", skip_serializing_if = "Option::is_none")]
    pub state: Option<i32>,
    #[prost(string, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[prost(message, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[prost(double, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<f64>,
    #[prost(message, optional, tag = "7")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor_id: Option<Id>,
    #[prost(bool, optional, tag = "8")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    #[prost(int32, optional, tag = "9")]
    #[serde(default, with = "status_source", skip_serializing_if = "Option::is_none")]
    pub source: Option<i32>,
    #[prost(int32, optional, tag = "10")]
    #[serde(default, with = "status_reason", skip_serializing_if = "Option::is_none")]
    pub reason: Option<i32>,
    #[prost(bytes = "vec", optional, tag = "11")]
    #[serde(default, with = "base64_bytes", skip_serializing_if = "Option::is_none")]
    pub uuid: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct MasterInfo {
    #[prost(string, required, tag = "1")]
    pub id: String,
    #[prost(uint32, required, tag = "2")]
    pub ip: u32,
    #[prost(uint32, required, tag = "3")]
    pub port: u32,
    #[prost(string, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[prost(string, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

// ---- events ----

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Event {
    #[prost(int32, optional, tag = "1")]
    #[serde(default, with = "event_type", skip_serializing_if = "Option::is_none")]
    pub r#type: Option<i32>,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offers: Option<Offers>,
    #[prost(message, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rescind: Option<Rescind>,
    #[prost(message, optional, tag = "5")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    #[prost(message, optional, tag = "6")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[prost(message, optional, tag = "7")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    #[prost(message, optional, tag = "8")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Error>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Subscribed {
    #[prost(message, required, tag = "1")]
    pub framework_id: Id,
    #[prost(double, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_seconds: Option<f64>,
    #[prost(message, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub master_info: Option<MasterInfo>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Offers {
    #[prost(message, repeated, tag = "1")]
    #[serde(default)]
    pub offers: Vec<Offer>,
    #[prost(message, repeated, tag = "2")]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inverse_offers: Vec<InverseOffer>,
}

/// Mesos' `InverseOffer`, for maintenance: all of the agent's resources are asked back.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct InverseOffer {
    #[prost(message, required, tag = "1")]
    pub id: Id,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<Url>,
    #[prost(message, required, tag = "3")]
    pub framework_id: Id,
    #[prost(message, optional, tag = "4")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[prost(message, required, tag = "5")]
    pub unavailability: Unavailability,
}

/// Mesos' `URL`, as inverse offers name the agent.
#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Url {
    #[prost(string, required, tag = "1")]
    pub scheme: String,
    #[prost(message, required, tag = "2")]
    pub address: Address,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Address {
    #[prost(string, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[prost(int32, required, tag = "3")]
    pub port: i32,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Unavailability {
    #[prost(message, required, tag = "1")]
    pub start: TimeInfo,
    #[prost(message, optional, tag = "2")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<DurationInfo>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct TimeInfo {
    #[prost(int64, required, tag = "1")]
    pub nanoseconds: i64,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Rescind {
    #[prost(message, required, tag = "1")]
    pub offer_id: Id,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Update {
    #[prost(message, required, tag = "1")]
    pub status: TaskStatus,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Failure {
    #[prost(message, optional, tag = "1")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<Id>,
    #[prost(int32, optional, tag = "3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message, Serialize, Deserialize)]
pub struct Error {
    #[prost(string, required, tag = "1")]
    pub message: String,
}
