//! `ClientHeap`: a role's clients by (share, client number), lowest first — the heap the
//! allocator takes the next client of a role from, once per grant.
//!
//! `std`'s `BinaryHeap` of `Reverse<(u64, u32)>` did the same, but a grant re-keys the
//! top client, whose share then usually sorts last: `PeekMut` sifts it down comparing both
//! children and the entry at every level, each comparison a branchy tuple comparison.
//! Here an entry is one `u128` (share above, client number below, so that one integer
//! comparison orders by share and then by client), and a re-keyed top goes down the path
//! of smaller children to a leaf with one comparison per level and back up as far as it
//! must (Floyd's method) — where it belongs, with about half the comparisons.

/// (share, client) packed so that integer order is tuple order.
fn entry(key: u64, client: u32) -> u128 {
    (u128::from(key) << 32) | u128::from(client)
}

fn unpack(entry: u128) -> (u64, u32) {
    // Truncations that take the two halves back apart.
    ((entry >> 32) as u64, entry as u32)
}

#[derive(Clone, Debug, Default)]
pub(crate) struct ClientHeap {
    /// A binary min-heap: each entry no greater than its children (`2i + 1`, `2i + 2`).
    entries: Vec<u128>,
}

impl ClientHeap {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The lowest (share, client).
    pub fn peek(&self) -> Option<(u64, u32)> {
        self.entries.first().copied().map(unpack)
    }

    pub fn push(&mut self, key: u64, client: u32) {
        self.entries.push(entry(key, client));
        self.sift_up(self.entries.len() - 1);
    }

    pub fn pop(&mut self) -> Option<(u64, u32)> {
        let last = self.entries.pop()?;
        let Some(top) = self.entries.first_mut() else { return Some(unpack(last)) };
        let lowest = std::mem::replace(top, last);
        self.sift_down_from_top();
        Some(unpack(lowest))
    }

    /// Replaces the top entry (which must be there) by (key, client), which must not be
    /// lower: a re-keyed client after a grant.
    pub fn replace_top(&mut self, key: u64, client: u32) {
        if let Some(top) = self.entries.first_mut() {
            debug_assert!(entry(key, client) >= *top, "a share only grows during a round");
            *top = entry(key, client);
            self.sift_down_from_top();
        }
    }

    /// Moves the top entry to its place: down the path of smaller children to a leaf,
    /// then up while its parent is greater.
    fn sift_down_from_top(&mut self) {
        let len = self.entries.len();
        let Some(&moving) = self.entries.first() else { return };
        let mut hole = 0;
        loop {
            let left = 2 * hole + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.entries[right] < self.entries[left] { right } else { left };
            self.entries[hole] = self.entries[child];
            hole = child;
        }
        self.entries[hole] = moving;
        self.sift_up(hole);
    }

    fn sift_up(&mut self, mut at: usize) {
        let moving = self.entries[at];
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.entries[parent] <= moving {
                break;
            }
            self.entries[at] = self.entries[parent];
            at = parent;
        }
        self.entries[at] = moving;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    #[test]
    fn the_client_heap_answers_as_a_binary_heap_of_reversed_pairs() {
        let mut rng = ChaCha8Rng::seed_from_u64(21);
        let mut heap = ClientHeap::default();
        let mut reference: BinaryHeap<Reverse<(u64, u32)>> = BinaryHeap::new();
        for step in 0..20_000 {
            match rng.random_range(0..4) {
                0 | 1 => {
                    let (key, client) = (rng.random_range(0..50) << 40, rng.random_range(0..u32::MAX));
                    heap.push(key, client);
                    reference.push(Reverse((key, client)));
                }
                2 => assert_eq!(heap.pop(), reference.pop().map(|Reverse(e)| e), "step {step}"),
                _ => {
                    if let Some((key, client)) = heap.peek() {
                        let key = key + rng.random_range(0..3);
                        heap.replace_top(key, client);
                        reference.pop();
                        reference.push(Reverse((key, client)));
                    }
                }
            }
            assert_eq!(heap.peek(), reference.peek().map(|Reverse(e)| *e), "step {step}");
            assert_eq!(heap.is_empty(), reference.is_empty());
        }
    }
}
