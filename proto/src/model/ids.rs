//! Identifier newtypes, so that an agent id can never be passed where a task id belongs.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }

            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
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
