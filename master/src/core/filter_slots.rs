//! `FilterSlots`: the set of framework filter slots that filter one agent, checked by the
//! allocator for every client it considers for the agent.
//!
//! A busy cluster's agents are filtered by hundreds of frameworks (every decline of an
//! offer filters its agent for the framework, often for long), and the check runs for
//! every grant, in a round that visits agents in random order: the set is read cold.
//! A sorted vector costs a binary search over up to a few kilobytes, each probe a cache
//! miss; a bitmap over the slots answers with one word, and is smaller once a good part
//! of the slots are in the set. So the set is a sorted vector while it is sparse and a
//! bitmap while it is dense (the bitmap never more than twice the vector's size).

use super::prefetch::prefetch;

/// Below this many slots the set stays a sorted vector whatever their spread.
const MIN_BITMAP_SLOTS: usize = 16;

#[derive(Clone, Debug, Default)]
pub(crate) enum FilterSlots {
    #[default]
    Empty,
    /// The slots, sorted.
    Sorted(Vec<u64>),
    /// Bit `s % 64` of word `s / 64` is set for each slot `s`; `len` of them are set.
    Bitmap { words: Vec<u64>, len: usize },
}

impl FilterSlots {
    pub fn contains(&self, slot: u64) -> bool {
        match self {
            FilterSlots::Empty => false,
            FilterSlots::Sorted(slots) => slots.binary_search(&slot).is_ok(),
            FilterSlots::Bitmap { words, .. } => {
                word_of(slot).and_then(|w| words.get(w)).is_some_and(|word| word & bit_of(slot) != 0)
            }
        }
    }

    /// Word `w` of the set as a bitmap: bit `i` set when slot `64 w + i` is in it. A
    /// big role's clients are laid out by slot and read a word at a time (`ClientTree`).
    pub fn word(&self, w: u64) -> u64 {
        match self {
            FilterSlots::Empty => 0,
            FilterSlots::Sorted(slots) => {
                let first = w.saturating_mul(64);
                let from = slots.partition_point(|&s| s < first);
                let mut word = 0;
                for &s in slots.get(from..).unwrap_or_default().iter().take_while(|&&s| s - first < 64) {
                    word |= 1 << (s - first);
                }
                word
            }
            FilterSlots::Bitmap { words, .. } => {
                usize::try_from(w).ok().and_then(|w| words.get(w)).copied().unwrap_or(0)
            }
        }
    }

    pub fn len(&self) -> usize {
        match self {
            FilterSlots::Empty => 0,
            FilterSlots::Sorted(slots) => slots.len(),
            FilterSlots::Bitmap { len, .. } => *len,
        }
    }

    pub fn insert(&mut self, slot: u64) {
        match self {
            FilterSlots::Empty => *self = FilterSlots::Sorted(vec![slot]),
            FilterSlots::Sorted(slots) => {
                if let Err(at) = slots.binary_search(&slot) {
                    slots.insert(at, slot);
                }
                let max = slots.last().copied().unwrap_or(0);
                if slots.len() >= MIN_BITMAP_SLOTS && words_for(max) <= slots.len() {
                    *self = FilterSlots::Bitmap { words: bitmap_of(slots), len: slots.len() };
                }
            }
            FilterSlots::Bitmap { .. } if self.contains(slot) => {}
            FilterSlots::Bitmap { words, len } => {
                let needed = words_for(slot);
                if needed > words.len() {
                    if needed > 2 * (*len + 1) {
                        // Too far out for a bitmap this full: back to a sorted vector.
                        let mut slots = bitmap_slots(words);
                        slots.push(slot);
                        slots.sort_unstable();
                        *self = FilterSlots::Sorted(slots);
                        return;
                    }
                    words.resize(needed, 0);
                }
                if let Some(word) = word_of(slot).and_then(|w| words.get_mut(w)) {
                    *word |= bit_of(slot);
                    *len += 1;
                }
            }
        }
    }

    pub fn remove(&mut self, slot: u64) {
        match self {
            FilterSlots::Empty => {}
            FilterSlots::Sorted(slots) => {
                if let Ok(at) = slots.binary_search(&slot) {
                    slots.remove(at);
                }
                if slots.is_empty() {
                    *self = FilterSlots::Empty;
                }
            }
            FilterSlots::Bitmap { words, len } => {
                if let Some(word) = word_of(slot).and_then(|w| words.get_mut(w))
                    && *word & bit_of(slot) != 0
                {
                    *word &= !bit_of(slot);
                    *len -= 1;
                }
                if 2 * *len < words.len() || *len < MIN_BITMAP_SLOTS / 2 {
                    // Too sparse for a bitmap: back to a sorted vector.
                    let slots = self.slots();
                    *self = if slots.is_empty() { FilterSlots::Empty } else { FilterSlots::Sorted(slots) };
                }
            }
        }
    }

    /// Every slot, in increasing order.
    pub fn slots(&self) -> Vec<u64> {
        match self {
            FilterSlots::Empty => Vec::new(),
            FilterSlots::Sorted(slots) => slots.clone(),
            FilterSlots::Bitmap { words, .. } => bitmap_slots(words),
        }
    }

    /// Prefetches the lines `contains` is likely to read: a bitmap's words (up to four
    /// lines), or the first probes of a binary search and the vector's start.
    pub fn prefetch(&self) {
        match self {
            FilterSlots::Empty => {}
            FilterSlots::Sorted(slots) => {
                // 8 slots to a line: a vector of up to 8 lines is fetched whole, a longer
                // one at 8 evenly spread lines, near the search's first probes.
                let lines = slots.len().div_ceil(8);
                let step = lines.div_ceil(8).max(1) * 8;
                for slot in slots.iter().step_by(step) {
                    prefetch(slot);
                }
            }
            FilterSlots::Bitmap { words, .. } => {
                for w in (0..words.len()).step_by(8).take(4) {
                    if let Some(word) = words.get(w) {
                        prefetch(word);
                    }
                }
            }
        }
    }
}

fn word_of(slot: u64) -> Option<usize> {
    usize::try_from(slot / 64).ok()
}

fn bit_of(slot: u64) -> u64 {
    1 << (slot % 64)
}

/// Words of a bitmap that holds `max`.
fn words_for(max: u64) -> usize {
    word_of(max).map_or(usize::MAX, |w| w.saturating_add(1))
}

fn bitmap_slots(words: &[u64]) -> Vec<u64> {
    let mut slots = Vec::new();
    for (w, &word) in (0u64..).zip(words) {
        let mut bits = word;
        while bits != 0 {
            slots.push(w * 64 + u64::from(bits.trailing_zeros()));
            bits &= bits - 1;
        }
    }
    slots
}

fn bitmap_of(sorted: &[u64]) -> Vec<u64> {
    let mut words = vec![0; sorted.last().map_or(0, |&max| words_for(max))];
    for &slot in sorted {
        if let Some(word) = word_of(slot).and_then(|w| words.get_mut(w)) {
            *word |= bit_of(slot);
        }
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::collections::BTreeSet;

    #[test]
    fn filter_slots_answer_as_a_sorted_set_through_every_form() {
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let mut set = FilterSlots::default();
        let mut reference: BTreeSet<u64> = BTreeSet::new();
        let (mut sorted, mut bitmap) = (false, false);
        for step in 0..20_000 {
            // Phases: dense growth, sparse far slots, shrinking.
            let (range, grow) = match step / 5_000 {
                0 => (200, 0.7),
                1 => (5_000, 0.6),
                2 => (300, 0.5),
                _ => (5_000, 0.2),
            };
            let slot = rng.random_range(0..range);
            if rng.random_bool(grow) {
                set.insert(slot);
                reference.insert(slot);
            } else {
                set.remove(slot);
                reference.remove(&slot);
            }
            sorted |= matches!(set, FilterSlots::Sorted(_));
            bitmap |= matches!(set, FilterSlots::Bitmap { .. });
            assert_eq!(set.len(), reference.len(), "step {step}");
            let probe = rng.random_range(0..range + 64);
            assert_eq!(set.contains(probe), reference.contains(&probe), "step {step}");
            let w = probe / 64;
            let word = (0..64).filter(|i| reference.contains(&(w * 64 + i))).fold(0u64, |word, i| word | 1 << i);
            assert_eq!(set.word(w), word, "step {step}");
            if let FilterSlots::Bitmap { words, len } = &set {
                assert!(words.len() <= 2 * *len + 2, "a bitmap stays within twice the vector's size");
            }
            if step % 1_000 == 0 {
                assert_eq!(set.slots(), reference.iter().copied().collect::<Vec<u64>>());
            }
        }
        assert!(sorted && bitmap, "both forms were used");
    }
}
