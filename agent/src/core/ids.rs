//! Update ids: version-4 UUIDs drawn from a seeded generator, so tests and simulations
//! know every id in advance.

use agora_proto::model::UpdateId;
use rand::{Rng, SeedableRng};

/// A deterministic sequence of UUIDs.
#[derive(Debug, Clone)]
pub struct UpdateIds {
    rng: rand_chacha::ChaCha8Rng,
}

impl UpdateIds {
    pub fn new(seed: u64) -> Self {
        Self { rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed) }
    }

    /// The next id of the sequence.
    pub fn next_id(&mut self) -> UpdateId {
        let bytes: [u8; 16] = self.rng.random();
        UpdateId::new(uuid::Builder::from_random_bytes(bytes).into_uuid().to_string())
    }
}
