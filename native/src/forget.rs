//! Erasure (right to be forgotten): drop one customer's state, pending changes and timeouts.

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
        for s in &mut self.dirty {
            *s = renumber(*s);
        }
        self.customers.swap_remove(slot);
        if slot != last {
            let key = self.customers[slot].state.customer_id.clone();
            self.index.insert(key, slot);
        }
        // Its deadlines go; the moved customer's follow it to its new slot (ids, and so the pop
        // order, are unchanged).
        let customers = &self.customers;
        let (gone, moved) = (slot as u32, last as u32);
        self.deadlines.retain_renumbered(
            |s| match s {
                s if s == gone => None,
                s if s == moved => Some(gone),
                s => Some(s),
            },
            |s| &customers[s as usize].state.customer_id,
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::model;
    use crate::alignment::Occurrence;
    use crate::engine::{Engine, EventExtras};
    use crate::fold::{Event, Placement};
    use crate::state;

    const HOUR: i64 = 3_600_000;

    fn accept(engine: &mut Engine, customer: &str, id: &str, ts: i64) -> Placement {
        let core = Occurrence { ts, event_id: id.into(), touchpoint: "web.a".into(), channel: "web".into() };
        let event = Event {
            core,
            outcome: None,
            persona: None,
            employee_id: None,
            survey_kind: None,
            survey_score: None,
            id_hash: 0, // set by fold::add_event
        };
        let extras = EventExtras { customer_id: customer, attributes: "{}", ..EventExtras::default() };
        engine.accept(event, extras, None)
    }

    fn encoded(engine: &Engine, customer: &str) -> Option<Vec<u8>> {
        engine.state(customer).map(|s| {
            let mut out = Vec::new();
            state::encode(s, &engine.model, &mut out);
            out
        })
    }

    /// Three customers with open journeys, the first forgotten with changes pending: the others
    /// (the last one moved into its slot) keep their states, rows and timeouts; it has none, and
    /// its next event (the same id) is no duplicate.
    #[test]
    fn a_forgotten_customer_leaves_no_trace_and_the_others_are_unchanged() {
        let mut engine = Engine::new(model(), "live".into());
        for (n, customer) in ["c1", "c2", "c3"].iter().enumerate() {
            assert_eq!(
                accept(&mut engine, customer, &format!("{customer}-e1"), n as i64),
                Placement::Accepted
            );
        }
        let before = encoded(&engine, "c3");
        assert!(engine.forget("c1"));
        assert!(!engine.forget("c1"));
        assert_eq!((engine.customers(), engine.open_instances()), (2, 2));
        assert!(engine.state("c1").is_none());
        assert_eq!(encoded(&engine, "c3"), before);
        let (rows, ends) = engine.drain_updates();
        let customers: Vec<&str> = ends.iter().map(|(c, _)| &**c).collect();
        assert_eq!(customers, ["c2", "c3"]);
        assert_eq!(rows.events.occurred_at.len(), 2, "c1's event row is dropped");
        engine.advance(3 * HOUR);
        let (_, ends) = engine.drain_updates();
        let timed_out: Vec<&str> = ends.iter().map(|(c, _)| &**c).collect();
        assert_eq!(timed_out, ["c2", "c3"]);
        assert_eq!(accept(&mut engine, "c1", "c1-e1", 3 * HOUR), Placement::Accepted);
    }
}
