//! `ClientHeap`: a role's clients by (share, client number), lowest first — the queue the
//! allocator takes the next client of a role from, once per grant.
//!
//! An entry is one `u128` (share above, client number below), so that one integer
//! comparison orders by share and then by client. Entries live in two places: a binary
//! min-heap, and a *run* — a queue whose entries are in increasing order — and the lowest
//! entry is the lower of the heap's top and the run's front. A new entry goes at the back
//! of the run when it is not lower than the run's back, else into the heap.
//!
//! Why: a grant re-keys the client just picked to a higher share. In a round of similar
//! grants (most rounds: agents alike, clients alike) the re-keyed client sorts after every
//! client re-keyed before it, so it joins the run in O(1), and once every client has been
//! picked once the round takes clients from the run's front in O(1) — where a heap sifts
//! each re-keyed client down its whole depth (ten levels for a thousand clients) on every
//! grant. When grants differ, entries go to the heap and cost what a heap costs. Which
//! entry is lowest never depends on where entries are held, so the order is exactly a
//! heap's.

use std::collections::VecDeque;

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
    heap: Vec<u128>,
    /// Entries in increasing order.
    run: VecDeque<u128>,
}

impl ClientHeap {
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty() && self.run.is_empty()
    }

    /// The lowest (share, client).
    pub fn peek(&self) -> Option<(u64, u32)> {
        let lowest = match (self.heap.first(), self.run.front()) {
            (Some(&h), Some(&r)) => h.min(r),
            (Some(&h), None) => h,
            (None, Some(&r)) => r,
            (None, None) => return None,
        };
        Some(unpack(lowest))
    }

    pub fn push(&mut self, key: u64, client: u32) {
        let new = entry(key, client);
        if self.run.back().is_none_or(|&back| back <= new) {
            self.run.push_back(new);
        } else {
            self.heap.push(new);
            self.sift_up(self.heap.len() - 1);
        }
    }

    pub fn pop(&mut self) -> Option<(u64, u32)> {
        let from_run = match (self.heap.first(), self.run.front()) {
            (Some(h), Some(r)) => r < h,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (None, None) => return None,
        };
        if from_run {
            return self.run.pop_front().map(unpack);
        }
        let last = self.heap.pop()?;
        let Some(top) = self.heap.first_mut() else { return Some(unpack(last)) };
        let lowest = std::mem::replace(top, last);
        self.sift_down_from_top();
        Some(unpack(lowest))
    }

    /// Replaces the lowest entry (which must be there) by (key, client), which must not
    /// be lower: a client re-keyed after a grant.
    pub fn replace_top(&mut self, key: u64, client: u32) {
        debug_assert!(self.peek().is_none_or(|(k, c)| entry(k, c) <= entry(key, client)), "shares only grow");
        let new = entry(key, client);
        // The common case of a round of similar grants: the lowest entry is the run's
        // front and the re-keyed one belongs at its back, so it moves from the front to
        // the back, without a pop and a push each looking again at where entries are.
        let top_in_run = match (self.heap.first(), self.run.front()) {
            (Some(h), Some(r)) => r < h,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if top_in_run && self.run.back().is_some_and(|&back| back <= new) {
            self.run.pop_front();
            self.run.push_back(new);
            return;
        }
        self.pop();
        self.push(key, client);
    }

    /// Moves the heap's top entry to its place: down the path of smaller children to a
    /// leaf, then up while its parent is greater (Floyd's method: one comparison per
    /// level on the way down, where an entry that belongs low ends up).
    fn sift_down_from_top(&mut self) {
        let len = self.heap.len();
        let Some(&moving) = self.heap.first() else { return };
        let mut hole = 0;
        loop {
            let left = 2 * hole + 1;
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right] < self.heap[left] { right } else { left };
            self.heap[hole] = self.heap[child];
            hole = child;
        }
        self.heap[hole] = moving;
        self.sift_up(hole);
    }

    fn sift_up(&mut self, mut at: usize) {
        let moving = self.heap[at];
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.heap[parent] <= moving {
                break;
            }
            self.heap[at] = self.heap[parent];
            at = parent;
        }
        self.heap[at] = moving;
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
