//! The engine of a partitioned shell (the Kafka worker): lateness per customer's own partition
//! from the start, not only from its first partitioned event.

use super::Engine;

impl Engine {
    /// Measure lateness against each customer's own stream (its input partition's time) from
    /// now on, as accept() with a stream time does, even before any event. A worker's first act
    /// after recovering partitions can be advance() to the whole input's time (timeouts); on one
    /// stream's watermark that would forget, and then refuse as too late, history its customers'
    /// own partitions have not passed yet.
    pub fn mark_partitioned(&mut self) {
        self.single_stream = false;
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

    fn accept(engine: &mut Engine, id: &str, touchpoint: &str, ts: i64) -> Placement {
        let core =
            Occurrence { ts, event_id: id.into(), touchpoint: touchpoint.into(), channel: "web".into() };
        let event = Event {
            core,
            outcome: None,
            persona: None,
            employee_id: None,
            survey_kind: None,
            survey_score: None,
        };
        let extras =
            EventExtras { customer_id: "c1".into(), attributes: "{}".into(), ..EventExtras::default() };
        engine.accept(event, extras, Some(ts))
    }

    /// A fresh core takes a customer's state (an open journey), fires timeouts on another partition's time three
    /// days ahead (more than the lateness) and then gets the customer's next event, an hour on.
    fn after_a_restore(partitioned: bool) -> Placement {
        let mut first = Engine::new(model(), "live".into());
        for (id, touchpoint, ts) in [("e1", "web.a", 0), ("e2", "web.b", 10)] {
            assert_eq!(accept(&mut first, id, touchpoint, ts), Placement::Accepted);
        }
        let mut raw = Vec::new();
        first.drain_changed(Some(&mut raw));
        let mut fresh = Engine::new(model(), "live".into());
        if partitioned {
            fresh.mark_partitioned();
        }
        let decoded = state::decode(&raw, &mut fresh.model).unwrap();
        fresh.restore(decoded);
        fresh.advance(72 * HOUR);
        fresh.drain_changed(None);
        accept(&mut fresh, "e4", "web.a", HOUR)
    }

    #[test]
    fn a_partitioned_core_keeps_history_another_partitions_time_has_passed() {
        assert_eq!(after_a_restore(true), Placement::Accepted);
        assert_eq!(after_a_restore(false), Placement::TooLate, "one stream: the watermark bounds lateness");
    }
}
