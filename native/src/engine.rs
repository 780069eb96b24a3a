//! The journey engine: folds accepted events into customer state and renders projection rows
//! (a port of projections/engine.py; same rows, same order within a drain).

use std::sync::Arc;

use crate::alignment::{format_duration, Deviation};
use crate::blake2b;
use crate::deadlines::Deadlines;
use crate::fold::{self, CustomerState, Event, Instance, Model, Placement, Status, NEVER};
use crate::fxhash::FastMap;
use crate::rows::{EventCols, Rows};
use crate::signals;
use crate::state;

#[path = "forget.rs"]
mod forget;
#[path = "partitioned.rs"]
pub mod partitioned; // mark_partitioned, home_partition (the Kafka worker)

/// What the event row needs beside the occurrence, borrowed from the decoded record: it is only
/// copied into the row columns, so an accepted event allocates nothing for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct EventExtras<'a> {
    pub customer_id: &'a str,
    pub survey_comment: Option<&'a str>,
    pub attributes: &'a str,
    pub source: Option<&'a str>,
}

/// Content-derived id of a signal: the same evidence always has the same id.
pub fn signal_id_of(instance_id: &str, kind: &str, touchpoint: &str, event_ids: &[String]) -> String {
    let mut parts: Vec<&[u8]> =
        vec![instance_id.as_bytes(), b"\x00", kind.as_bytes(), b"\x00", touchpoint.as_bytes()];
    for id in event_ids {
        parts.push(b"\x00");
        parts.push(id.as_bytes());
    }
    blake2b::hex8(&parts)
}

struct Customer {
    state: CustomerState, // its customer_id is the index's key (one shared allocation)
    queued: bool,         // in `dirty` since the last drain
    pending: Vec<usize>,  // its touchpoint_events rows (in Engine::events) not drained yet
}

/// Where one customer's rows end in a drain's tables (exclusive, in Rows::tables() order).
pub type RowEnds = [usize; 6];

/// The pure journey engine of one scenario (JourneyEngine): no I/O, time comes from event time.
pub struct Engine {
    pub model: Model,
    pub scenario: String,
    pub watermark: i64,
    // Customers are kept in a slab (never removed, as JourneyEngine keeps its states) and found
    // by id once per event; deadlines and the dirty list name their slot. A deadline sorts by
    // (time, customer id) as the reference's heap does (see deadlines.rs).
    index: FastMap<Arc<str>, usize>,
    customers: Vec<Customer>,
    dirty: Vec<usize>,
    deadlines: Deadlines,
    single_stream: bool,
    events: EventCols,        // accepted events' rows in arrival order, until the next drain
    spare: (EventCols, Rows), // emptied buffers of earlier drains, reused for their capacity
}

fn copy_event_row(to: &mut EventCols, from: &EventCols, i: usize) {
    to.scenario.push_from(&from.scenario, i);
    to.event_id.push_from(&from.event_id, i);
    to.customer_id.push_from(&from.customer_id, i);
    to.occurred_at.push(from.occurred_at[i]);
    to.channel.push_from(&from.channel, i);
    to.touchpoint.push_from(&from.touchpoint, i);
    to.owner_team.push_from(&from.owner_team, i);
    to.persona.push_from(&from.persona, i);
    to.outcome.push_from(&from.outcome, i);
    to.employee_id.push_from(&from.employee_id, i);
    to.survey_kind.push_from(&from.survey_kind, i);
    to.survey_score.push(from.survey_score.get(i));
    to.survey_comment.push_from(&from.survey_comment, i);
    to.attributes.push_from(&from.attributes, i);
    to.source.push_from(&from.source, i);
}

impl Engine {
    pub fn new(model: Model, scenario: String) -> Self {
        Engine {
            model,
            scenario,
            watermark: NEVER,
            index: FastMap::default(),
            customers: Vec::new(),
            dirty: Vec::new(),
            deadlines: Deadlines::default(),
            single_stream: true,
            events: EventCols::default(),
            spare: (EventCols::default(), Rows::default()),
        }
    }

    /// Fold one event that passed the registry checks (JourneyEngine.accept after check()).
    pub fn accept(&mut self, event: Event, extras: EventExtras<'_>, stream_time: Option<i64>) -> Placement {
        let ts = event.core.ts;
        self.watermark = self.watermark.max(ts);
        let slot = match self.index.get(extras.customer_id) {
            Some(&slot) => slot,
            None => {
                let slot = self.customers.len();
                let key: Arc<str> = Arc::from(extras.customer_id);
                let state = CustomerState::new(key.clone());
                self.customers.push(Customer { state, queued: false, pending: Vec::new() });
                self.index.insert(key, slot);
                slot
            }
        };
        let customer = &mut self.customers[slot];
        if let Some(stream_time) = stream_time {
            self.single_stream = false;
            customer.state.stream_time = customer.state.stream_time.max(stream_time);
        }
        // The row is written before folding (which takes the event) and dropped if not accepted.
        let rows = &mut self.events;
        let mark = rows.occurred_at.len();
        rows.scenario.push(&self.scenario);
        rows.event_id.push(&event.core.event_id);
        rows.customer_id.push(extras.customer_id);
        rows.occurred_at.push(ts);
        rows.channel.push(&event.core.channel);
        rows.touchpoint.push(&event.core.touchpoint);
        rows.owner_team.push(self.model.owner_of.get(&*event.core.touchpoint).map_or("", String::as_str));
        rows.persona.push(event.persona.as_deref());
        rows.outcome.push(event.outcome.as_deref());
        rows.employee_id.push(event.employee_id.as_deref());
        rows.survey_kind.push(event.survey_kind.as_deref());
        rows.survey_score.push(event.survey_score);
        rows.survey_comment.push(extras.survey_comment);
        rows.attributes.push(extras.attributes);
        rows.source.push(extras.source);
        let placement = fold::add_event(&mut customer.state, &mut self.model, event, self.watermark);
        if placement != Placement::Accepted {
            truncate_events(&mut self.events, mark);
            return placement;
        }
        customer.pending.push(mark);
        if !customer.queued {
            customer.queued = true;
            self.dirty.push(slot);
        }
        if let Some(current) = customer.state.open_instance() {
            let last = current.events.last().expect("non-empty").core.ts;
            let deadline = last + self.model.journeys[current.journey].abandon_after_ms;
            let customers = &self.customers;
            self.deadlines.push(deadline, slot as u32, |s| &customers[s as usize].state.customer_id);
        }
        placement
    }

    /// Move time forward: close instances idle for longer than their abandon_after.
    pub fn advance(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
        loop {
            let customers = &self.customers;
            let Some(slot) =
                self.deadlines.pop_before(self.watermark, |s| &customers[s as usize].state.customer_id)
            else {
                break;
            };
            let customer = &mut self.customers[slot as usize];
            if fold::expire(&mut customer.state, &self.model, self.watermark) && !customer.queued {
                customer.queued = true;
                self.dirty.push(slot as usize);
            }
        }
    }

    /// Rows of every customer changed since the last drain, customer after customer, and where
    /// each customer's rows end (JourneyEngine.drain_updates without the states).
    pub fn drain_updates(&mut self) -> (Rows, Vec<(Arc<str>, RowEnds)>) {
        let (rows, ends) = self.drain_changed(None);
        (rows, ends.into_iter().map(|(customer, to, _)| (customer, to)).collect())
    }

    /// drain_updates, and with `states` each changed customer's state after its rows, encoded
    /// (state::encode) into `states` one after another: the third item is where it ends there.
    pub fn drain_changed(
        &mut self,
        mut states: Option<&mut Vec<u8>>,
    ) -> (Rows, Vec<(Arc<str>, RowEnds, usize)>) {
        self.advance(self.watermark);
        let lateness = self.model.allowed_lateness;
        let dirty = std::mem::take(&mut self.dirty);
        let accepted = std::mem::replace(&mut self.events, std::mem::take(&mut self.spare.0));
        let mut rows = std::mem::take(&mut self.spare.1);
        let mut ends = Vec::with_capacity(dirty.len());
        for slot in dirty {
            let customer = &mut self.customers[slot];
            customer.queued = false;
            for i in std::mem::take(&mut customer.pending) {
                copy_event_row(&mut rows.events, &accepted, i);
            }
            render_customer(&self.model, &self.scenario, &mut customer.state, &mut rows);
            let stream_time = if self.single_stream { self.watermark } else { customer.state.stream_time };
            fold::forget_settled(&mut customer.state, &self.model, stream_time - lateness);
            shrink(&mut customer.state);
            let end = match states.as_deref_mut() {
                Some(out) => {
                    state::encode(&customer.state, &self.model, out);
                    out.len()
                }
                None => 0,
            };
            ends.push((customer.state.customer_id.clone(), rows.counts(), end));
        }
        self.spare.0 = accepted;
        self.spare.0.clear();
        (rows, ends)
    }

    /// Take over a customer's kept state (decoded by state::decode), replacing what the engine
    /// holds for that customer; its open instance is scheduled to time out (JourneyEngine.schedule).
    pub fn restore(&mut self, mut state: CustomerState) {
        let slot = match self.index.get(&*state.customer_id) {
            Some(&slot) => slot,
            None => {
                let slot = self.customers.len();
                let key = state.customer_id.clone();
                self.customers.push(Customer {
                    state: CustomerState::new(key.clone()),
                    queued: false,
                    pending: Vec::new(),
                });
                self.index.insert(key, slot);
                slot
            }
        };
        let customer = &mut self.customers[slot];
        state.customer_id = customer.state.customer_id.clone(); // keep sharing the index's key
        customer.state = state;
        shrink(&mut customer.state);
        if let Some(current) = customer.state.open_instance() {
            let last = current.events.last().expect("non-empty").core.ts;
            self.watermark = self.watermark.max(last);
            let deadline = last + self.model.journeys[current.journey].abandon_after_ms;
            let customers = &self.customers;
            self.deadlines.push(deadline, slot as u32, |s| &customers[s as usize].state.customer_id);
        }
    }

    /// Hand a drain's rows back once read: their buffers serve the next drain.
    pub fn recycle(&mut self, mut rows: Rows) {
        rows.clear();
        self.spare.1 = rows;
    }

    /// Rows of everything accepted or changed since the last drain.
    pub fn drain(&mut self) -> Rows {
        self.drain_updates().0
    }

    /// Fold one customer's recorded events and render their rows (into `rows`) as of the
    /// watermark; the state is dropped afterwards (JourneyEngine.replay_customer). Returns how
    /// many were duplicates.
    pub fn replay_customer(&mut self, customer_id: &str, events: Vec<Event>, rows: &mut Rows) -> usize {
        let mut state = CustomerState::new(Arc::from(customer_id));
        state.stream_time = self.watermark;
        let mut duplicates = 0;
        for event in events {
            if fold::add_event(&mut state, &mut self.model, event, self.watermark) == Placement::Duplicate {
                duplicates += 1;
            }
        }
        fold::expire(&mut state, &self.model, self.watermark);
        render_customer(&self.model, &self.scenario, &mut state, rows);
        duplicates
    }

    /// Drop pending deadlines, changes and event rows (after a rebalance).
    pub fn forget_cached(&mut self) {
        self.deadlines.clear();
        self.events = EventCols::default();
        for slot in std::mem::take(&mut self.dirty) {
            let customer = &mut self.customers[slot];
            customer.queued = false;
            customer.pending.clear();
        }
    }

    /// How many journey instances are open now.
    pub fn open_instances(&self) -> usize {
        self.customers.iter().filter(|c| c.state.open_instance().is_some()).count()
    }

    /// Customers with an open instance, and the bytes of their encoded states (state::encode).
    pub fn open_state_bytes(&self) -> (usize, usize) {
        let mut out = Vec::new();
        let (mut open, mut total) = (0, 0);
        for customer in self.customers.iter().filter(|c| c.state.open_instance().is_some()) {
            out.clear();
            state::encode(&customer.state, &self.model, &mut out);
            open += 1;
            total += out.len();
        }
        (open, total)
    }

    /// Heap and slab bytes the engine holds for its customers (states, index, deadlines), counted
    /// from capacities: what allocations hold, without the allocator's own overhead; the shared
    /// touchpoint, channel and persona names are counted once, in the model, not here.
    /// With `open_only`, the customers with an open instance alone (their slab slots included).
    pub fn resident_state_bytes(&self, open_only: bool) -> usize {
        use std::mem::size_of;
        fn map_bytes(capacity: usize, entry: usize) -> usize {
            // hashbrown: one control byte per bucket, buckets a power of two >= capacity * 8 / 7.
            let buckets = if capacity == 0 { 0 } else { (capacity * 8 / 7).next_power_of_two() };
            buckets * (entry + 1)
        }
        fn instance_bytes(instance: &Instance) -> usize {
            let events: usize = instance
                .events
                .iter()
                .map(|e| e.core.event_id.heap_bytes() + e.employee_id.as_ref().map_or(0, String::capacity))
                .sum();
            instance.instance_id.capacity() // the persona's name is shared, counted in the model
                + instance.events.capacity() * size_of::<Event>()
                + events
        }
        let mut total = if open_only {
            0
        } else {
            self.customers.capacity() * size_of::<Customer>()
                + map_bytes(self.index.capacity(), size_of::<(Arc<str>, usize)>())
                + self.deadlines.capacity_bytes()
                + self.dirty.capacity() * size_of::<usize>()
        };
        for customer in &self.customers {
            if open_only && customer.state.open_instance().is_none() {
                continue;
            }
            if open_only {
                total += size_of::<Customer>() + map_bytes(1, size_of::<(Arc<str>, usize)>()) / 2;
            }
            let state = &customer.state;
            total += 2 * size_of::<usize>() + state.customer_id.len() // the Arc's counts and the id
                + customer.pending.capacity() * size_of::<usize>()
                + state.seen.as_ref().map_or(0, |index| {
                    size_of::<FastMap<u64, u32>>() + map_bytes(index.capacity(), size_of::<(u64, u32)>())
                })
                + (state.instances.capacity() + state.retired.capacity()) * size_of::<Instance>();
            total += state.instances.iter().chain(&state.retired).map(instance_bytes).sum::<usize>();
        }
        total
    }

    pub fn customers(&self) -> usize {
        self.customers.len()
    }

    pub fn state(&self, customer_id: &str) -> Option<&CustomerState> {
        self.index.get(customer_id).map(|&slot| &self.customers[slot].state)
    }
}

/// Give back what a state's lists hold beyond their length: a state lives on between drains
/// (for most customers, long after their last event), the growth slack need not.
fn shrink(state: &mut CustomerState) {
    state.instances.shrink_to_fit();
    for instance in &mut state.instances {
        instance.events.shrink_to_fit();
    }
}

/// Drop the event rows from `mark` on (an event that was not accepted after all).
fn truncate_events(rows: &mut EventCols, mark: usize) {
    fn strs(c: &mut crate::rows::Strs, mark: usize) {
        c.offsets.truncate(mark + 1);
        c.data.truncate(c.offsets[mark] as usize);
    }
    fn opt(c: &mut crate::rows::OptStrs, mark: usize) {
        strs(&mut c.values, mark);
        c.valid.truncate(mark);
    }
    for c in [&mut rows.scenario, &mut rows.event_id, &mut rows.customer_id, &mut rows.channel] {
        strs(c, mark);
    }
    for c in [&mut rows.touchpoint, &mut rows.owner_team, &mut rows.attributes] {
        strs(c, mark);
    }
    rows.occurred_at.truncate(mark);
    for c in [&mut rows.persona, &mut rows.outcome, &mut rows.employee_id, &mut rows.survey_kind] {
        opt(c, mark);
    }
    for c in [&mut rows.survey_comment, &mut rows.source] {
        opt(c, mark);
    }
    rows.survey_score.values.truncate(mark);
    rows.survey_score.valid.truncate(mark);
}

fn render_customer(model: &Model, scenario: &str, state: &mut CustomerState, rows: &mut Rows) {
    let version = state.revision;
    let retired = std::mem::take(&mut state.retired);
    for gone in &retired {
        // Never written: nothing to delete; an id that lives on is rewritten below.
        if gone.written && !state.instances.iter().any(|i| i.instance_id == gone.instance_id) {
            tombstone(model, scenario, &state.customer_id, gone, version, rows);
        }
    }
    let customer_id = state.customer_id.clone();
    for instance in &mut state.instances {
        if instance.dirty {
            render_instance(model, scenario, &customer_id, instance, version, rows);
            instance.dirty = false;
        }
    }
}

fn tombstone(
    model: &Model,
    scenario: &str,
    customer_id: &str,
    gone: &Instance,
    version: u64,
    rows: &mut Rows,
) {
    let journey = &model.journeys[gone.journey];
    let t = &mut rows.instances;
    t.scenario.push(scenario);
    t.instance_id.push(&gone.instance_id);
    t.customer_id.push(customer_id);
    t.persona.push(&gone.persona);
    t.journey_id.push(&journey.id);
    t.journey_version.push(journey.version as u32);
    t.status.push(gone.status().as_str());
    t.end_reason.push(None);
    t.path.push([]);
    t.path_event_ids.push([]);
    t.events.push(0);
    t.cost.push(0);
    t.fitness.push(0.0);
    t.deviation_count.push(0);
    t.started_at.push(gone.events[0].core.ts);
    t.last_event_at.push(gone.events[gone.events.len() - 1].core.ts);
    t.ended_at.push(None);
    t.version.push(version);
    t.is_deleted.push(1);
    tombstone_tail(model, scenario, customer_id, gone, version, rows, [0, 0, 0]);
}

/// Delete rows idx >= keep[i] that an earlier render wrote for this instance.
fn tombstone_tail(
    model: &Model,
    scenario: &str,
    customer_id: &str,
    instance: &Instance,
    version: u64,
    rows: &mut Rows,
    keep: [usize; 3],
) {
    let ts = instance.events[0].core.ts;
    let journey = &model.journeys[instance.journey];
    let jver = journey.version as u32;
    let t = &mut rows.deviations;
    for idx in keep[0]..instance.emitted[0] {
        t.scenario.push(scenario);
        t.instance_id.push(&instance.instance_id);
        t.idx.push(idx as u16);
        t.customer_id.push(customer_id);
        t.persona.push(&instance.persona);
        t.journey_id.push(&journey.id);
        t.journey_version.push(jver);
        t.kind.push("");
        t.step.push("");
        t.touchpoint.push("");
        t.channel.push("");
        t.owner_team.push("");
        t.occurred_at.push(ts);
        t.event_ids.push([]);
        t.detail.push("");
        t.cost.push(0);
        t.version.push(version);
        t.is_deleted.push(1);
    }
    let t = &mut rows.friction;
    for idx in keep[1]..instance.emitted[1] {
        t.scenario.push(scenario);
        t.instance_id.push(&instance.instance_id);
        t.idx.push(idx as u16);
        t.signal_id.push("");
        t.customer_id.push(customer_id);
        t.persona.push(&instance.persona);
        t.journey_id.push(&journey.id);
        t.journey_version.push(jver);
        t.touchpoint.push("");
        t.owner_team.push("");
        t.kind.push("");
        t.weight.push(0.0);
        t.occurred_at.push(ts);
        t.event_ids.push([]);
        t.version.push(version);
        t.is_deleted.push(1);
    }
    let t = &mut rows.delight;
    for idx in keep[2]..instance.emitted[2] {
        t.scenario.push(scenario);
        t.instance_id.push(&instance.instance_id);
        t.idx.push(idx as u16);
        t.customer_id.push(customer_id);
        t.persona.push(&instance.persona);
        t.touchpoint.push("");
        t.owner_team.push("");
        t.employee_id.push(None);
        t.survey_kind.push("");
        t.score.push(0);
        t.occurred_at.push(ts);
        t.event_ids.push([]);
        t.version.push(version);
        t.is_deleted.push(1);
    }
}

const DEVIATING_KINDS: [&str; 4] =
    ["unexpected_step", "out_of_order", "repeated_step", "time_budget_exceeded"];

fn owner<'m>(model: &'m Model, touchpoint: &str) -> &'m str {
    model.owner_of.get(touchpoint).map_or("", String::as_str)
}

/// The instance row and its deviation, friction, delight and attribution rows (render_instance).
fn render_instance(
    model: &Model,
    scenario: &str,
    customer_id: &str,
    instance: &mut Instance,
    version: u64,
    rows: &mut Rows,
) {
    let journey = &model.journeys[instance.journey];
    let events = &instance.events;
    let path: Vec<&str> = events.iter().map(|e| &*e.core.touchpoint).collect();
    let status = instance.status();
    let end_state = instance.full_alignment().then_some(journey.core.steps.len());
    let moves = journey.core.align(&path, end_state);
    let mut deviations = journey.core.deviations_of(events, &moves, &model.channel_of);
    let last = &events[events.len() - 1];
    if status == Status::Abandoned {
        let done = moves.iter().filter(|m| m.event.is_some()).map(|m| m.step).max().unwrap_or(0);
        let steps = &journey.core.steps;
        let next_step = &steps[done.min(steps.len() - 1)];
        deviations.push(Deviation {
            kind: "abandoned",
            step: next_step.name.clone(),
            touchpoint: last.core.touchpoint.to_string(),
            channel: last.core.channel.to_string(),
            ts: last.core.ts,
            event_ids: vec![last.core.event_id.to_string()],
            detail: format!(
                "no event within {} before step '{}'",
                format_duration(journey.abandon_after_ms),
                next_step.name
            ),
            cost: 1,
        });
    }
    let cost = instance.cost(model);
    let fitness = 1.0 - f64::from(cost) / (path.len() as f64 + f64::from(journey.shortest_ideal_length));
    let settings = &model.friction;
    // A handful of deviations per instance: a scan beats building a set.
    let deviating = |id: &str| {
        deviations.iter().any(|d| DEVIATING_KINDS.contains(&d.kind) && d.event_ids.iter().any(|e| e == id))
    };
    let attributions = signals::attribute_support(events, &deviating, settings);
    let friction =
        signals::friction_of(events, &deviations, &attributions, status == Status::Abandoned, settings);
    let delight = signals::delight_of(events, settings);

    let iid = instance.instance_id.as_str();
    let persona = &*instance.persona;
    let jver = journey.version as u32;
    let t = &mut rows.instances;
    t.scenario.push(scenario);
    t.instance_id.push(iid);
    t.customer_id.push(customer_id);
    t.persona.push(persona);
    t.journey_id.push(&journey.id);
    t.journey_version.push(jver);
    t.status.push(status.as_str());
    t.end_reason.push(instance.closure.map(|c| c.as_str()));
    t.path.push(path.iter().copied());
    t.path_event_ids.push(events.iter().map(|e| &*e.core.event_id));
    t.events.push(path.len() as u32);
    t.cost.push(cost);
    t.fitness.push(fitness);
    t.deviation_count.push(deviations.len() as u32);
    t.started_at.push(events[0].core.ts);
    t.last_event_at.push(last.core.ts);
    t.ended_at.push(instance.closure.map(|_| last.core.ts));
    t.version.push(version);
    t.is_deleted.push(0);
    let counts = [deviations.len(), friction.len(), delight.len()];
    let t = &mut rows.deviations;
    for (idx, deviation) in deviations.iter().enumerate() {
        t.scenario.push(scenario);
        t.instance_id.push(iid);
        t.idx.push(idx as u16);
        t.customer_id.push(customer_id);
        t.persona.push(persona);
        t.journey_id.push(&journey.id);
        t.journey_version.push(jver);
        t.kind.push(deviation.kind);
        t.step.push(&deviation.step);
        t.touchpoint.push(&deviation.touchpoint);
        t.channel.push(&deviation.channel);
        t.owner_team.push(owner(model, &deviation.touchpoint));
        t.occurred_at.push(deviation.ts);
        t.event_ids.push(deviation.event_ids.iter().map(String::as_str));
        t.detail.push(&deviation.detail);
        t.cost.push(deviation.cost as u8);
        t.version.push(version);
        t.is_deleted.push(0);
    }
    let t = &mut rows.friction;
    for (idx, signal) in friction.iter().enumerate() {
        t.scenario.push(scenario);
        t.instance_id.push(iid);
        t.idx.push(idx as u16);
        t.signal_id.push(&signal_id_of(iid, signal.kind, &signal.touchpoint, &signal.event_ids));
        t.customer_id.push(customer_id);
        t.persona.push(persona);
        t.journey_id.push(&journey.id);
        t.journey_version.push(jver);
        t.touchpoint.push(&signal.touchpoint);
        t.owner_team.push(owner(model, &signal.touchpoint));
        t.kind.push(signal.kind);
        t.weight.push(signal.weight);
        t.occurred_at.push(signal.ts);
        t.event_ids.push(signal.event_ids.iter().map(String::as_str));
        t.version.push(version);
        t.is_deleted.push(0);
    }
    let t = &mut rows.delight;
    for (idx, delighted) in delight.iter().enumerate() {
        t.scenario.push(scenario);
        t.instance_id.push(iid);
        t.idx.push(idx as u16);
        t.customer_id.push(customer_id);
        t.persona.push(persona);
        t.touchpoint.push(&delighted.touchpoint);
        t.owner_team.push(owner(model, &delighted.touchpoint));
        t.employee_id.push(delighted.employee_id.as_deref());
        t.survey_kind.push(&delighted.survey_kind);
        t.score.push(delighted.score as i16);
        t.occurred_at.push(delighted.ts);
        t.event_ids.push(delighted.event_ids.iter().map(String::as_str));
        t.version.push(version);
        t.is_deleted.push(0);
    }
    let t = &mut rows.attribution;
    for item in &attributions {
        let support = &events[item.support].core;
        let upstream = item.upstream.map(|u| &events[u].core);
        t.scenario.push(scenario);
        t.support_event_id.push(&support.event_id);
        t.instance_id.push(iid);
        t.customer_id.push(customer_id);
        t.persona.push(persona);
        t.support_touchpoint.push(&support.touchpoint);
        t.upstream_touchpoint.push(upstream.map(|u| &*u.touchpoint));
        t.upstream_owner_team.push(upstream.map(|u| owner(model, &u.touchpoint)));
        t.upstream_event_id.push(upstream.map(|u| &*u.event_id));
        t.rule.push(item.rule);
        t.occurred_at.push(support.ts);
        t.version.push(version);
        t.is_deleted.push(0);
    }
    tombstone_tail(model, scenario, customer_id, instance, version, rows, counts);
    instance.emitted = counts;
    instance.written = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alignment::{Journey, Occurrence, Step};
    use crate::fold::JourneySpec;
    use crate::fxhash::{FastMap, FastSet};
    use crate::rows::InstanceCols;
    use std::collections::HashMap;

    fn copy_instance_row(to: &mut InstanceCols, from: &InstanceCols, i: usize) {
        to.instance_id.push(from.instance_id.get(i));
        to.status.push(from.status.get(i));
        to.end_reason.push(from.end_reason.get(i));
        to.path.push(from.path.get(i));
        to.cost.push(from.cost[i]);
        to.version.push(from.version[i]);
        to.is_deleted.push(from.is_deleted[i]);
    }
    use crate::signals::FrictionSettings;

    const HOUR: i64 = 3_600_000;

    fn step(name: &str, touchpoint: &str, goal: bool) -> Step {
        Step {
            name: name.into(),
            touchpoints: vec![touchpoint.into()],
            primary: touchpoint.into(),
            primary_channel: "web".into(),
            optional: false,
            repeatable: false,
            within_ms: None,
            goal,
        }
    }

    /// One journey: web.a, web.b (goal), web.c; abandoned after an hour, lateness a day.
    pub(super) fn model() -> Model {
        let steps = vec![step("a", "web.a", false), step("b", "web.b", true), step("c", "web.c", false)];
        let step_of =
            HashMap::from([("web.a".into(), vec![1]), ("web.b".into(), vec![2]), ("web.c".into(), vec![3])]);
        let core = Journey::new(steps, step_of, vec![0, 1, 1, 1], vec![0, 1, 2, 3]).unwrap();
        let set = |t: &str| FastSet::from_iter([t.to_string()]);
        let journey = JourneySpec {
            id: "j".into(),
            version: 1,
            abandon_after_ms: HOUR,
            entry: set("web.a"),
            goal: set("web.b"),
            last_step: set("web.c"),
            shortest_ideal_length: 3,
            core,
        };
        let channels =
            ["web.a", "web.b", "web.c", "support.call"].map(|t| (t.to_string(), "web".to_string()));
        Model {
            journeys: vec![journey],
            by_persona: FastMap::from_iter([("p".into(), vec![0])]),
            default_persona: "p".into(),
            channel_of: FastMap::from_iter(channels.clone()),
            owner_of: FastMap::from_iter(channels.map(|(t, _)| (t, "team".to_string()))),
            allowed_lateness: 24 * HOUR,
            friction: FrictionSettings {
                repeat_window: HOUR,
                escalation_lookback: HOUR,
                survey_lookback: HOUR,
            },
            names: FastSet::default(),
        }
    }

    fn event(id: &str, touchpoint: &str, ts: i64) -> (Event, EventExtras<'static>) {
        let core =
            Occurrence { ts, event_id: id.into(), touchpoint: touchpoint.into(), channel: "web".into() };
        let event = Event {
            core,
            outcome: None,
            persona: None,
            employee_id: None,
            survey_kind: None,
            survey_score: None,
            id_hash: 0,
        };
        (event, EventExtras { customer_id: "c1", attributes: "{}", ..EventExtras::default() })
    }

    fn feed(engine: &mut Engine, events: &[(&str, &str, i64)]) -> Vec<Placement> {
        events
            .iter()
            .map(|&(id, touchpoint, ts)| {
                let (event, extras) = event(id, touchpoint, ts);
                engine.accept(event, extras, None)
            })
            .collect()
    }

    type Summary = (String, String, Option<String>, Vec<String>, u32, u8);

    /// The latest row of each live instance (highest version wins, as ReplacingMergeTree keeps it):
    /// (id, status, end reason, path, cost, deleted).
    fn latest(t: &InstanceCols) -> Vec<Summary> {
        let mut by_id: HashMap<&str, usize> = HashMap::new();
        for i in 0..t.version.len() {
            let keep = by_id.get(t.instance_id.get(i)).is_none_or(|&old| t.version[old] <= t.version[i]);
            if keep {
                by_id.insert(t.instance_id.get(i), i);
            }
        }
        let mut out: Vec<Summary> = by_id
            .into_values()
            .filter(|&i| t.is_deleted[i] == 0)
            .map(|i| {
                let path = t.path.get(i).map(str::to_string).collect();
                let reason = t.end_reason.get(i).map(str::to_string);
                (t.instance_id.get(i).to_string(), t.status.get(i).to_string(), reason, path, t.cost[i], 0)
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn an_ideal_path_completes_at_no_cost_with_the_reference_ids() {
        let mut engine = Engine::new(model(), "live".into());
        feed(&mut engine, &[("e1", "web.a", 0), ("e2", "web.b", 10), ("e3", "web.c", 20)]);
        let rows = engine.drain();
        assert_eq!(rows.events.event_id.len(), 3);
        let t = &rows.instances;
        assert_eq!((t.status.get(0), t.end_reason.get(0), t.cost[0]), ("completed", Some("final_step"), 0));
        assert_eq!(t.fitness[0], 1.0);
        // hashlib.blake2b on the Python side gives the same ids.
        assert_eq!(t.instance_id.get(0), "2ac722cb1255e3f9");
        assert_eq!(signal_id_of("abc", "repeat", "web.a", &["e1".into(), "e2".into()]), "33cf2005ad523867");
        assert!(rows.deviations.version.is_empty());
    }

    #[test]
    fn arrival_order_does_not_change_the_final_rows() {
        let events =
            [("e1", "web.a", 0), ("e2", "web.b", 10), ("e3", "web.c", 20), ("e4", "web.a", 3 * HOUR)];
        let mut in_order = Engine::new(model(), "live".into());
        feed(&mut in_order, &events);
        let mut shuffled = Engine::new(model(), "live".into());
        let mut reversed = InstanceCols::default();
        for item in events.iter().rev() {
            feed(&mut shuffled, &[*item]);
            let rows = shuffled.drain();
            for i in 0..rows.instances.version.len() {
                copy_instance_row(&mut reversed, &rows.instances, i);
            }
        }
        assert!(reversed.is_deleted.contains(&1), "a retired instance is tombstoned");
        assert_eq!(latest(&reversed), latest(&in_order.drain().instances));
    }

    #[test]
    fn duplicates_are_found_before_and_after_a_customer_has_its_ids_indexed() {
        let ids: Vec<String> = (0..fold::SEEN_INDEX_FROM + 8).map(|n| format!("e{n}")).collect();
        let mut engine = Engine::new(model(), "live".into());
        for (n, id) in ids.iter().enumerate() {
            let placements = feed(&mut engine, &[(id, "web.a", n as i64 * 10), ("e0", "web.a", 0)]);
            assert_eq!(placements, vec![Placement::Accepted, Placement::Duplicate], "at {n}");
            let indexed = engine.state("c1").unwrap().seen.is_some();
            assert_eq!(indexed, n >= fold::SEEN_INDEX_FROM, "at {n}");
        }
        // Out of order, into the indexed state: new ids are taken, every retained id refused.
        let late = feed(&mut engine, &[("x", "web.a", 15), ("x", "web.a", 15), (&ids[7], "web.b", 5)]);
        assert_eq!(late, vec![Placement::Accepted, Placement::Duplicate, Placement::Duplicate]);
        let rows = engine.drain();
        assert_eq!(rows.events.event_id.len(), ids.len() + 1);
        // A restored state indexes its ids again.
        let mut raw = Vec::new();
        state::encode(engine.state("c1").unwrap(), &engine.model, &mut raw);
        let mut restored = Engine::new(model(), "live".into());
        let decoded = state::decode(&raw, &mut restored.model).unwrap();
        assert!(decoded.seen.is_some());
        restored.restore(decoded);
        assert_eq!(
            feed(&mut restored, &[("x", "web.a", 15), ("y", "web.a", 16)]),
            [Placement::Duplicate, Placement::Accepted]
        );
    }

    #[test]
    fn duplicates_change_nothing_and_settled_journeys_refuse_late_events() {
        let mut engine = Engine::new(model(), "live".into());
        let placements = feed(&mut engine, &[("e1", "web.a", 0), ("e1", "web.a", 0)]);
        assert_eq!(placements, vec![Placement::Accepted, Placement::Duplicate]);
        assert_eq!(engine.drain().events.event_id.len(), 1);
        feed(&mut engine, &[("e2", "web.a", 48 * HOUR)]);
        let rows = engine.drain();
        let t = &rows.instances;
        let first =
            (0..t.version.len()).find(|&i| t.path_event_ids.get(i).eq(["e1"])).expect("first instance");
        assert_eq!((t.status.get(first), t.end_reason.get(first)), ("abandoned", Some("idle")));
        assert!((0..rows.deviations.version.len()).any(|i| rows.deviations.kind.get(i) == "abandoned"));
        assert_eq!(feed(&mut engine, &[("e0", "web.b", 1)]), vec![Placement::TooLate]);
    }
}

#[cfg(test)]
mod state_tests {
    use super::*;
    use crate::alignment::Occurrence;
    use crate::state;

    const HOUR: i64 = 3_600_000;

    fn feed(engine: &mut Engine, customer: &str, events: &[(&str, &str, i64)]) {
        for &(id, touchpoint, ts) in events {
            let core =
                Occurrence { ts, event_id: id.into(), touchpoint: touchpoint.into(), channel: "web".into() };
            let event = Event {
                core,
                outcome: Some("success".into()),
                persona: None,
                employee_id: None,
                survey_kind: None,
                survey_score: Some(4),
                id_hash: 0,
            };
            let extras = EventExtras { customer_id: customer, attributes: "{}", ..EventExtras::default() };
            engine.accept(event, extras, None);
        }
    }

    /// Every customer's state bytes after a drain, by customer.
    fn drained_states(engine: &mut Engine) -> (Rows, Vec<(String, Vec<u8>)>) {
        let mut buffer = Vec::new();
        let (rows, ends) = engine.drain_changed(Some(&mut buffer));
        let mut start = 0;
        let mut states = Vec::new();
        for (customer, _, end) in ends {
            states.push((customer.to_string(), buffer[start..end].to_vec()));
            start = end;
        }
        (rows, states)
    }

    #[test]
    fn a_state_reads_as_the_python_codec_writes_it() {
        let mut engine = Engine::new(tests_model(), "live".into());
        feed(&mut engine, "c\"1é", &[("e1", "web.a", 0), ("e2\n", "web.b", 10)]);
        let (_, states) = drained_states(&mut engine);
        // projections.state_codec.encode_state of the same state (orjson's bytes).
        let expected = "[2,\"c\\\"1é\",null,null,2,2,null,[[\"j@1\",\"p\",null,[0,0,0],true,\
                        [[0,\"e1\",\"web.a\",\"success\",null,null,null,4],\
                        [10,\"e2\\n\",\"web.b\",\"success\",null,null,null,4]]]]]";
        assert_eq!(String::from_utf8(states[0].1.clone()).unwrap(), expected);
        // Format 1 (channel in place, no field left out, "never" spelled out) reads the same.
        let format_1 = "[1,\"c\\\"1é\",-4611686018427387904,null,2,2,-4611686018427387904,[[\"j@1\",\
                        \"p\",null,[0,0,0],true,[[0,\"e1\",\"web.a\",\"web\",\"success\",null,null,null,4],\
                        [10,\"e2\\n\",\"web.b\",\"web\",\"success\",null,null,null,4]]]]]";
        let mut model = tests_model();
        let old = state::decode(format_1.as_bytes(), &mut model).unwrap();
        let mut upgraded = Vec::new();
        state::encode(&old, &model, &mut upgraded);
        assert_eq!(upgraded, expected.as_bytes());
        // A channel other than the touchpoint's prefix is kept, last.
        let moved = expected.replacen("null,4]", "null,4,\"store\"]", 1);
        let decoded = state::decode(moved.as_bytes(), &mut model).unwrap();
        assert_eq!(&*decoded.instances[0].events[0].core.channel, "store");
        let mut again = Vec::new();
        state::encode(&decoded, &model, &mut again);
        assert_eq!(String::from_utf8(again).unwrap(), moved);
        let mut model = tests_model();
        let decoded = state::decode(expected.as_bytes(), &mut model).unwrap();
        let mut again = Vec::new();
        state::encode(&decoded, &model, &mut again);
        assert_eq!(again, expected.as_bytes());
        let unknown = expected.replace("j@1", "j@9");
        assert!(state::decode(unknown.as_bytes(), &mut model).unwrap_err().contains("unknown journey j@9"));
        assert!(state::decode(b"[2]", &mut model).is_err());
    }

    #[test]
    fn a_restored_engine_continues_as_if_it_had_never_stopped() {
        let first = [("e1", "web.a", 0), ("e2", "web.b", 10), ("x1", "web.a", 5)];
        let later = [("e3", "web.c", 20), ("x0", "web.b", 1), ("e1", "web.a", 0), ("y1", "web.a", 3 * HOUR)];
        let mut through = Engine::new(tests_model(), "live".into());
        for customer in ["c1", "c2"] {
            feed(&mut through, customer, &first);
        }
        let (_, states) = drained_states(&mut through);
        let watermark = through.watermark;
        let mut resumed = Engine::new(tests_model(), "live".into());
        for (_, raw) in &states {
            let decoded = state::decode(raw, &mut resumed.model).unwrap();
            resumed.restore(decoded);
        }
        resumed.advance(watermark);
        for engine in [&mut through, &mut resumed] {
            for customer in ["c1", "c2"] {
                feed(engine, customer, &later);
            }
            engine.advance(engine.watermark + 2 * HOUR);
        }
        let (rows, after) = drained_states(&mut resumed);
        let (expected_rows, expected) = drained_states(&mut through);
        assert_eq!(after, expected);
        assert_eq!(rows.len(), expected_rows.len());
        assert_eq!(latest_instances(&rows), latest_instances(&expected_rows));
        assert_eq!(rows.events.event_id.len(), 6, "the re-sent e1 is a duplicate after the restore too");
    }

    fn latest_instances(rows: &Rows) -> Vec<(String, String, u64)> {
        let t = &rows.instances;
        let mut out: Vec<_> = (0..t.version.len())
            .map(|i| (t.instance_id.get(i).to_string(), t.status.get(i).to_string(), t.version[i]))
            .collect();
        out.sort();
        out
    }

    fn tests_model() -> Model {
        super::tests::model()
    }
}
