//! Identifier newtypes, so that an agent id can never be passed where a task id belongs.
//!
//! An id is an immutable shared string: the master copies ids into every offer, event
//! and index, and a copy is a reference count, not an allocation. An offer id the master
//! mints is a shared prefix and a number, its text formed only when it is shown or sent.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
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

/// An offer, unique for the lifetime of a master.
///
/// The master mints `{prefix}{n}` (`{master_id}-O{n}`) for every offer it makes, one per
/// agent and round: held as the shared prefix and the number, minting one allocates
/// nothing. Any other id (one a framework sent) is held as its text. Both forms compare,
/// order and hash as their text, so that `numbered("m-O", 7)` equals `new("m-O7")`.
#[derive(Clone)]
pub struct OfferId(OfferIdForm);

#[derive(Clone)]
enum OfferIdForm {
    Text(Arc<str>),
    Numbered { prefix: Arc<str>, n: u64 },
}

/// Longest minted id formed on the stack; longer prefixes are formed in a `String`.
const MAX_STACK_ID: usize = 128;

/// The decimal digits of `n`, right-aligned in the buffer, and where they start.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> usize {
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            return at;
        }
    }
}

impl OfferId {
    pub fn new(value: impl Into<String>) -> Self {
        Self(OfferIdForm::Text(Arc::from(value.into())))
    }

    /// The id `{prefix}{n}`, sharing `prefix`.
    pub fn numbered(prefix: &Arc<str>, n: u64) -> Self {
        Self(OfferIdForm::Numbered { prefix: Arc::clone(prefix), n })
    }

    /// `n` when the id is `{prefix}{n}` with `n` written as the master writes it (no sign,
    /// no leading zero).
    pub fn number_after(&self, prefix: &str) -> Option<u64> {
        match &self.0 {
            OfferIdForm::Numbered { prefix: mine, n } if **mine == *prefix => Some(*n),
            _ => self.with_text(|text| {
                let digits = text.strip_prefix(prefix)?;
                let canonical = !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && (digits == "0" || !digits.starts_with('0'));
                canonical.then(|| digits.parse().ok()).flatten()
            }),
        }
    }

    /// Calls `f` with the id's text, formed on the stack for a minted id.
    pub fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match &self.0 {
            OfferIdForm::Text(text) => f(text),
            OfferIdForm::Numbered { prefix, n } => {
                let mut digits = [0u8; 20];
                let start = decimal(*n, &mut digits);
                let number = digits.get(start..).unwrap_or_default();
                let len = prefix.len() + number.len();
                let mut buffer = [0u8; MAX_STACK_ID];
                if let Some(text) = buffer.get_mut(..len) {
                    let (head, tail) = text.split_at_mut(prefix.len());
                    head.copy_from_slice(prefix.as_bytes());
                    tail.copy_from_slice(number);
                    // The prefix is text and digits are ASCII: this does not fail.
                    if let Ok(text) = std::str::from_utf8(text) {
                        return f(text);
                    }
                }
                f(&format!("{prefix}{n}"))
            }
        }
    }

    pub fn into_string(self) -> String {
        self.to_string()
    }
}

impl PartialEq for OfferId {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (OfferIdForm::Text(a), OfferIdForm::Text(b)) => a == b,
            (OfferIdForm::Numbered { prefix: pa, n: a }, OfferIdForm::Numbered { prefix: pb, n: b })
                if Arc::ptr_eq(pa, pb) || pa == pb =>
            {
                a == b
            }
            _ => self.with_text(|a| other.with_text(|b| a == b)),
        }
    }
}

impl Eq for OfferId {}

impl Ord for OfferId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.with_text(|a| other.with_text(|b| a.cmp(b)))
    }
}

impl PartialOrd for OfferId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Hash for OfferId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.with_text(|text| text.hash(state));
    }
}

/// Printed as the string it was before minted ids were numbers: `OfferId("m-O7")`.
impl fmt::Debug for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| f.debug_tuple("OfferId").field(&text).finish())
    }
}

impl fmt::Display for OfferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            OfferIdForm::Text(text) => f.write_str(text),
            OfferIdForm::Numbered { prefix, n } => write!(f, "{prefix}{n}"),
        }
    }
}

impl serde::Serialize for OfferId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_text(|text| serializer.serialize_str(text))
    }
}

impl<'de> serde::Deserialize<'de> for OfferId {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::new)
    }
}

impl From<&str> for OfferId {
    fn from(value: &str) -> Self {
        Self(OfferIdForm::Text(Arc::from(value)))
    }
}

impl From<String> for OfferId {
    fn from(value: String) -> Self {
        Self(OfferIdForm::Text(Arc::from(value)))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::hash_map::DefaultHasher;

    use super::*;

    fn hash(id: &OfferId) -> u64 {
        let mut hasher = DefaultHasher::new();
        id.hash(&mut hasher);
        hasher.finish()
    }

    #[test]
    fn a_minted_offer_id_is_its_text_in_every_respect() {
        let prefix: Arc<str> = Arc::from("m-O");
        for n in [0, 7, 10, 99, 1_234_567_890, u64::MAX] {
            let minted = OfferId::numbered(&prefix, n);
            let text = OfferId::new(format!("m-O{n}"));
            assert_eq!(minted, text);
            assert_eq!(minted.to_string(), format!("m-O{n}"));
            assert_eq!(format!("{minted:?}"), format!("OfferId(\"m-O{n}\")"));
            assert_eq!(hash(&minted), hash(&text));
            assert_eq!(serde_json::to_string(&minted).ok(), serde_json::to_string(&text).ok());
            assert_eq!(minted.number_after("m-O"), Some(n));
            assert_eq!(text.number_after("m-O"), Some(n));
        }
        // Ordered as text: `m-O10` sorts before `m-O9`, and a different prefix by its text.
        let ten = OfferId::numbered(&prefix, 10);
        assert!(ten < OfferId::numbered(&prefix, 9));
        assert!(ten < OfferId::new("m-O9"));
        assert_eq!(OfferId::numbered(&Arc::from("m-O1"), 2), OfferId::numbered(&prefix, 12));
        assert_ne!(OfferId::numbered(&Arc::from("n-O"), 1), OfferId::numbered(&prefix, 1));
        let long: Arc<str> = Arc::from("x".repeat(300));
        assert_eq!(OfferId::numbered(&long, 42).to_string(), format!("{long}42"));
        assert_eq!(OfferId::numbered(&long, 42), OfferId::new(format!("{long}42")));
    }

    #[test]
    fn only_the_masters_own_writing_of_a_number_is_read_back() {
        for other in ["m-O07", "m-O+7", "n-O7", "m-O", "m-O7x", "O7", "", "m-O99999999999999999999999"] {
            assert_eq!(OfferId::new(other).number_after("m-O"), None, "{other}");
        }
        assert_eq!(OfferId::numbered(&Arc::from("n-O"), 7).number_after("m-O"), None);
    }
}
