//! Erasure (right to be forgotten): drop one customer's state, pending changes and timeouts.

use std::cmp::Reverse;

use super::Engine;

impl Engine {
    /// Drop everything the engine holds for a customer (JourneyEngine.forget): its state, its
    /// changes and event rows not drained yet, and its scheduled timeouts. Returns whether it had
    /// a state. The customer's slot is taken by the last one (whose references are renumbered).
    pub fn forget(&mut self, customer_id: &str) -> bool {
        let Some(slot) = self.index.remove(customer_id) else {
            return false;
        };
        self.dirty.retain(|&s| s != slot);
        let last = self.customers.len() - 1;
        let renumber = |s: usize| if s == last { slot } else { s };
        let deadlines = std::mem::take(&mut self.deadlines);
        self.deadlines = deadlines
            .into_iter()
            .filter(|Reverse((_, _, s))| *s != slot)
            .map(|Reverse((deadline, key, s))| Reverse((deadline, key, renumber(s))))
            .collect();
        for s in &mut self.dirty {
            *s = renumber(*s);
        }
        self.customers.swap_remove(slot);
        if slot != last {
            let key = self.customers[slot].key.clone();
            self.index.insert(key, slot);
        }
        true
    }
}
