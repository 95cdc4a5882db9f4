//! The live framework subscriptions of both scheduler transports, by the stream token
//! each was given: a random UUID (122 bits from the OS), so no one can guess another
//! framework's stream, while the core's own stream ids are sequential and never leave
//! the master. An entry lives exactly as long as its event stream, and remembers the
//! principal that subscribed, so each call can be checked against it.
//!
//! Invariant: a token that is unknown, ended, or another framework's gets one answer,
//! which never tells a guesser whether the framework exists.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agora_proto::model::{FrameworkId, StreamId};

/// What a stream token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subscription {
    pub framework_id: FrameworkId,
    pub stream_id: StreamId,
    /// The principal that authenticated the subscription, if any did.
    pub principal: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Streams(Arc<Mutex<HashMap<String, Subscription>>>);

/// The one refusal for a token that is not the framework's current subscription.
pub const NOT_CURRENT: &str = "the stream id is not a current subscription of this framework: SUBSCRIBE first";

impl Streams {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Subscription>> {
        // Nothing awaits or panics while the map is held, so a poisoned lock still holds
        // a consistent map.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a subscription under a fresh token; the entry goes when the guard drops.
    pub fn register(&self, subscription: Subscription) -> StreamToken {
        let token = uuid::Uuid::new_v4().to_string();
        self.lock().insert(token.clone(), subscription);
        StreamToken { streams: self.clone(), token }
    }

    /// The subscription `token` names, if it is `framework_id`'s.
    pub fn lookup(&self, token: &str, framework_id: &FrameworkId) -> Option<Subscription> {
        self.lock().get(token).filter(|s| &s.framework_id == framework_id).cloned()
    }
}

/// Holds a stream token registered; removes it on drop.
#[derive(Debug)]
pub struct StreamToken {
    streams: Streams,
    token: String,
}

impl StreamToken {
    pub fn token(&self) -> &str {
        &self.token
    }
}

impl Drop for StreamToken {
    fn drop(&mut self) {
        self.streams.lock().remove(&self.token);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_names_its_framework_only_while_its_guard_lives() {
        let streams = Streams::default();
        let subscription =
            Subscription { framework_id: FrameworkId::new("f1"), stream_id: StreamId::new("s1"), principal: None };
        let guard = streams.register(subscription.clone());
        let other = streams.register(Subscription { framework_id: FrameworkId::new("f2"), ..subscription.clone() });
        assert_ne!(guard.token(), other.token());
        assert_eq!(guard.token().len(), 36);
        assert_eq!(streams.lookup(guard.token(), &FrameworkId::new("f1")), Some(subscription));
        assert_eq!(streams.lookup(guard.token(), &FrameworkId::new("f2")), None, "another framework's token");
        let token = guard.token().to_owned();
        drop(guard);
        assert_eq!(streams.lookup(&token, &FrameworkId::new("f1")), None);
    }
}
