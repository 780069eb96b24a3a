//! Pending instance deadlines: a min-heap of (time, customer slot) that pops in (time, customer
//! id) order, the order of the reference engine's heap of (time, customer id) tuples.
//!
//! An entry is 16 bytes and names its customer by slot; the id is looked up only to break a tie
//! between two deadlines of the same millisecond. (A heap of (time, Arc<str>, slot) was 32 bytes
//! an entry and touched the id's allocation, a cache miss, on every push and pop.) Stale entries
//! (a customer's earlier deadlines) stay in the heap as in the reference: the order in which
//! customers time out, and so the order of their rows in a drain, depends on them.

/// The deadlines; `id` arguments map a slot to its customer id.
#[derive(Debug, Default)]
pub struct Deadlines {
    heap: Vec<(i64, u32)>,
}

/// Whether entry `a` pops before entry `b`.
#[inline]
fn before<'a>(a: (i64, u32), b: (i64, u32), id: &impl Fn(u32) -> &'a str) -> bool {
    a.0 < b.0 || (a.0 == b.0 && a.1 != b.1 && id(a.1) < id(b.1))
}

impl Deadlines {
    pub fn push<'a>(&mut self, at: i64, slot: u32, id: impl Fn(u32) -> &'a str) {
        let heap = &mut self.heap;
        let entry = (at, slot);
        let mut i = heap.len();
        heap.push(entry);
        while i > 0 {
            let parent = (i - 1) / 2;
            if !before(entry, heap[parent], &id) {
                break;
            }
            heap[i] = heap[parent];
            i = parent;
        }
        heap[i] = entry;
    }

    /// The slot of the first entry if its time is before `bound`, removed from the heap.
    pub fn pop_before<'a>(&mut self, bound: i64, id: impl Fn(u32) -> &'a str) -> Option<u32> {
        let heap = &mut self.heap;
        let &(at, slot) = heap.first()?;
        if at >= bound {
            return None;
        }
        let last = heap.pop().expect("not empty");
        let n = heap.len();
        if n > 0 {
            // Sift `last` down from the root.
            let mut i = 0;
            loop {
                let left = 2 * i + 1;
                if left >= n {
                    break;
                }
                let right = left + 1;
                let child = if right < n && before(heap[right], heap[left], &id) { right } else { left };
                if !before(heap[child], last, &id) {
                    break;
                }
                heap[i] = heap[child];
                i = child;
            }
            heap[i] = last;
        }
        Some(slot)
    }

    /// Keep the entries whose slot `slot_of` maps to a new slot (renumbered), drop the others, and
    /// restore the heap order (for erasure, which is rare: a rebuild is fine).
    pub fn retain_renumbered<'a>(
        &mut self,
        mut slot_of: impl FnMut(u32) -> Option<u32>,
        id: impl Fn(u32) -> &'a str,
    ) {
        for (at, slot) in std::mem::take(&mut self.heap) {
            if let Some(new) = slot_of(slot) {
                self.push(at, new, &id);
            }
        }
    }

    pub fn clear(&mut self) {
        self.heap.clear();
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Bytes the heap's allocation holds.
    pub fn capacity_bytes(&self) -> usize {
        self.heap.capacity() * std::mem::size_of::<(i64, u32)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

    /// A small deterministic generator (xorshift), so the test needs no dependency.
    fn numbers(mut x: u64) -> impl FnMut(u64) -> u64 {
        move |below| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % below
        }
    }

    #[test]
    fn pops_in_time_then_customer_id_order_like_a_heap_of_tuples() {
        // Ids whose order differs from their slots' order, and times with many ties.
        let ids: Vec<String> = (0..50).map(|n| format!("c{}", (n * 37) % 50)).collect();
        let id = |slot: u32| ids[slot as usize].as_str();
        let mut next = numbers(0x9e37_79b9_7f4a_7c15);
        let mut deadlines = Deadlines::default();
        let mut reference = BinaryHeap::new();
        let mut bound = 0;
        for round in 0..200 {
            for _ in 0..next(20) {
                let (at, slot) = (bound + next(30) as i64, next(50) as u32);
                deadlines.push(at, slot, id);
                reference.push(Reverse((at, ids[slot as usize].clone())));
            }
            bound += next(15) as i64;
            let mut popped = Vec::new();
            while let Some(slot) = deadlines.pop_before(bound, id) {
                popped.push((round, ids[slot as usize].clone()));
            }
            let mut expected = Vec::new();
            while reference.peek().is_some_and(|Reverse((at, _))| *at < bound) {
                let Reverse((_, customer)) = reference.pop().unwrap();
                expected.push((round, customer));
            }
            assert_eq!(popped, expected);
            assert_eq!(deadlines.len(), reference.len());
        }
        assert!(!deadlines.is_empty());
        deadlines.clear();
        assert_eq!(deadlines.pop_before(i64::MAX, id), None);
    }
}
