//! Identifier newtypes, so that an agent id can never be passed where a task id belongs.
//!
//! An id is an immutable shared string: the master copies ids into every offer, event
//! and index, and a copy is a reference count, not an allocation.

use std::fmt;
use std::sync::Arc;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(Arc<str>);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(Arc::from(value.into()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0.as_ref().to_owned()
            }
        }

        // Serialized as a plain string, as when the id was a `String`.
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                String::deserialize(deserializer).map(Self::new)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(Arc::from(value))
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(Arc::from(value))
            }
        }
    };
}

id_type!(
    /// An agent, assigned by the master when the agent first registers.
    AgentId
);
id_type!(
    /// A framework, assigned by the master when the framework first subscribes.
    FrameworkId
);
id_type!(
    /// An offer, unique for the lifetime of a master.
    OfferId
);
id_type!(
    /// A task, chosen by its framework; unique within that framework.
    TaskId
);
id_type!(
    /// One subscription of a framework; calls must name the stream they belong to.
    StreamId
);
id_type!(
    /// One reliable status update, acknowledged by the framework.
    UpdateId
);
