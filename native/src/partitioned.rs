//! The engine of a partitioned shell (the Kafka worker): lateness per customer's own partition
//! from the start, not only from its first partitioned event; Kafka's partitioner (murmur2).

use super::Engine;

/// Kafka's murmur2 (the Java client's, as kafka-python's) of a key.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    let length = data.len();
    let mut h: u32 = SEED ^ (length as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner gives a record keyed by this customer id.
pub fn home_partition(customer_id: &str, partitions: i32) -> i32 {
    (murmur2(customer_id.as_bytes()) & 0x7fff_ffff) % partitions
}

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

    use super::home_partition;

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
            id_hash: 0, // set by fold::add_event
        };
        let extras = EventExtras { customer_id: "c1", attributes: "{}", ..EventExtras::default() };
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

    #[test]
    fn customers_go_where_kafkas_default_partitioner_puts_them() {
        // streams.common.topics.partition_for (kafka-python's murmur2) of the same keys.
        let keys = ["", "a", "ab", "abc", "abcd", "cust-00420", "customer-é-12345"];
        let homes: Vec<i32> = keys.iter().map(|key| home_partition(key, 1_000_003)).collect();
        assert_eq!(homes, [645_856, 100_772, 154_486, 468_670, 831_631, 364_319, 781_368]);
    }
}
