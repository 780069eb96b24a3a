//! The journey engine: folds accepted events into customer state and renders projection rows
//! (a port of projections/engine.py; same rows, same order within a drain).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::rc::Rc;

use crate::alignment::{format_duration, Deviation};
use crate::blake2b;
use crate::fold::{self, CustomerState, Event, Instance, Model, Placement, Status, NEVER};
use crate::signals;

/// touchpoint_events: the event as stored (the scenario is added by who writes the row).
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event_id: String,
    pub customer_id: String,
    pub ts: i64,
    pub channel: String,
    pub touchpoint: String,
    pub owner: String,
    pub persona: Option<String>,
    pub outcome: Option<String>,
    pub employee_id: Option<String>,
    pub survey_kind: Option<String>,
    pub survey_score: Option<i64>,
    pub survey_comment: Option<String>,
    pub attributes: String,
    pub source: Option<String>,
}

/// What the event row needs beside the occurrence.
#[derive(Debug, Clone, Default)]
pub struct EventExtras {
    pub customer_id: String,
    pub survey_comment: Option<String>,
    pub attributes: String,
    pub source: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub instance_id: String,
    pub customer_id: String,
    pub persona: String,
    pub journey_id: String,
    pub journey_version: i64,
    pub status: &'static str,
    pub end_reason: Option<&'static str>,
    pub path: Vec<String>,
    pub path_event_ids: Vec<String>,
    pub events: usize,
    pub cost: u32,
    pub fitness: f64,
    pub deviation_count: usize,
    pub started_at: i64,
    pub last_event_at: i64,
    pub ended_at: Option<i64>,
    pub version: u64,
    pub is_deleted: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviationRow {
    pub instance_id: String,
    pub idx: usize,
    pub customer_id: String,
    pub persona: String,
    pub journey_id: String,
    pub journey_version: i64,
    pub kind: &'static str,
    pub step: String,
    pub touchpoint: String,
    pub channel: String,
    pub owner: String,
    pub ts: i64,
    pub event_ids: Vec<String>,
    pub detail: String,
    pub cost: u32,
    pub version: u64,
    pub is_deleted: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrictionRow {
    pub instance_id: String,
    pub idx: usize,
    pub signal_id: String,
    pub customer_id: String,
    pub persona: String,
    pub journey_id: String,
    pub journey_version: i64,
    pub touchpoint: String,
    pub owner: String,
    pub kind: &'static str,
    pub weight: f64,
    pub ts: i64,
    pub event_ids: Vec<String>,
    pub version: u64,
    pub is_deleted: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DelightRow {
    pub instance_id: String,
    pub idx: usize,
    pub customer_id: String,
    pub persona: String,
    pub touchpoint: String,
    pub owner: String,
    pub employee_id: Option<String>,
    pub survey_kind: String,
    pub score: i64,
    pub ts: i64,
    pub event_ids: Vec<String>,
    pub version: u64,
    pub is_deleted: u8,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttributionRow {
    pub support_event_id: String,
    pub instance_id: String,
    pub customer_id: String,
    pub persona: String,
    pub support_touchpoint: String,
    pub upstream_touchpoint: Option<String>,
    pub upstream_owner: Option<String>,
    pub upstream_event_id: Option<String>,
    pub rule: &'static str,
    pub ts: i64,
    pub version: u64,
    pub is_deleted: u8,
}

/// Rows for each projection table the engine writes, in the order the reference adds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub events: Vec<EventRow>,
    pub instances: Vec<InstanceRow>,
    pub deviations: Vec<DeviationRow>,
    pub friction: Vec<FrictionRow>,
    pub delight: Vec<DelightRow>,
    pub attribution: Vec<AttributionRow>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.events.len()
            + self.instances.len()
            + self.deviations.len()
            + self.friction.len()
            + self.delight.len()
            + self.attribution.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn extend(&mut self, other: Rows) {
        self.events.extend(other.events);
        self.instances.extend(other.instances);
        self.deviations.extend(other.deviations);
        self.friction.extend(other.friction);
        self.delight.extend(other.delight);
        self.attribution.extend(other.attribution);
    }
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
    state: CustomerState,
    queued: bool,           // in `dirty` since the last drain
    pending: Vec<EventRow>, // touchpoint_events rows not drained yet
}

/// The pure journey engine of one scenario (JourneyEngine): no I/O, time comes from event time.
pub struct Engine {
    pub model: Model,
    pub watermark: i64,
    customers: HashMap<Rc<str>, Customer>,
    dirty: Vec<Rc<str>>,
    deadlines: BinaryHeap<Reverse<(i64, Rc<str>)>>,
    single_stream: bool,
}

impl Engine {
    pub fn new(model: Model) -> Self {
        Engine {
            model,
            watermark: NEVER,
            customers: HashMap::new(),
            dirty: Vec::new(),
            deadlines: BinaryHeap::new(),
            single_stream: true,
        }
    }

    /// Fold one event that passed the registry checks (JourneyEngine.accept after check()).
    pub fn accept(&mut self, event: Event, extras: EventExtras, stream_time: Option<i64>) -> Placement {
        let ts = event.core.ts;
        self.watermark = self.watermark.max(ts);
        let key: Rc<str> = match self.customers.get_key_value(extras.customer_id.as_str()) {
            Some((key, _)) => key.clone(),
            None => {
                let key: Rc<str> = Rc::from(extras.customer_id.as_str());
                let state = CustomerState::new(extras.customer_id.clone());
                self.customers.insert(key.clone(), Customer { state, queued: false, pending: Vec::new() });
                key
            }
        };
        let customer = self.customers.get_mut(&key).expect("inserted above");
        if let Some(stream_time) = stream_time {
            self.single_stream = false;
            customer.state.stream_time = customer.state.stream_time.max(stream_time);
        }
        let row = EventRow {
            event_id: event.core.event_id.clone(),
            customer_id: extras.customer_id,
            ts,
            channel: event.core.channel.clone(),
            touchpoint: event.core.touchpoint.clone(),
            owner: self.model.owner_of.get(&event.core.touchpoint).cloned().unwrap_or_default(),
            persona: event.persona.clone(),
            outcome: event.outcome.clone(),
            employee_id: event.employee_id.clone(),
            survey_kind: event.survey_kind.clone(),
            survey_score: event.survey_score,
            survey_comment: extras.survey_comment,
            attributes: extras.attributes,
            source: extras.source,
        };
        let placement = fold::add_event(&mut customer.state, &mut self.model, event, self.watermark);
        if placement != Placement::Accepted {
            return placement;
        }
        customer.pending.push(row);
        if !customer.queued {
            customer.queued = true;
            self.dirty.push(key.clone());
        }
        if let Some(current) = customer.state.open_instance() {
            let last = current.events.last().expect("non-empty").core.ts;
            let deadline = last + self.model.journeys[current.journey].abandon_after_ms;
            self.deadlines.push(Reverse((deadline, key)));
        }
        placement
    }

    /// Move time forward: close instances idle for longer than their abandon_after.
    pub fn advance(&mut self, watermark: i64) {
        self.watermark = self.watermark.max(watermark);
        while let Some(Reverse((deadline, _))) = self.deadlines.peek() {
            if *deadline >= self.watermark {
                break;
            }
            let Reverse((_, key)) = self.deadlines.pop().expect("peeked");
            if let Some(customer) = self.customers.get_mut(&key) {
                if fold::expire(&mut customer.state, &self.model, self.watermark) && !customer.queued {
                    customer.queued = true;
                    self.dirty.push(key);
                }
            }
        }
    }

    /// Per customer changed since the last drain: its id and new rows (JourneyEngine.drain_updates).
    pub fn drain_updates(&mut self) -> Vec<(Rc<str>, Rows)> {
        self.advance(self.watermark);
        let lateness = self.model.allowed_lateness;
        let dirty = std::mem::take(&mut self.dirty);
        let mut updates = Vec::with_capacity(dirty.len());
        for key in dirty {
            let customer = self.customers.get_mut(&key).expect("dirty customers are known");
            customer.queued = false;
            let mut rows = Rows { events: std::mem::take(&mut customer.pending), ..Rows::default() };
            render_customer(&self.model, &mut customer.state, &mut rows);
            let stream_time = if self.single_stream { self.watermark } else { customer.state.stream_time };
            fold::forget_settled(&mut customer.state, &self.model, stream_time - lateness);
            updates.push((key, rows));
        }
        updates
    }

    /// Rows of everything accepted or changed since the last drain.
    pub fn drain(&mut self) -> Rows {
        let mut all = Rows::default();
        for (_, rows) in self.drain_updates() {
            all.extend(rows);
        }
        all
    }

    /// Fold one customer's recorded events and render their rows as of the watermark; the state
    /// is dropped afterwards (JourneyEngine.replay_customer). Returns how many were duplicates.
    pub fn replay_customer(&mut self, customer_id: &str, events: Vec<Event>, rows: &mut Rows) -> usize {
        let mut state = CustomerState::new(customer_id.to_string());
        state.stream_time = self.watermark;
        let mut duplicates = 0;
        for event in events {
            if fold::add_event(&mut state, &mut self.model, event, self.watermark) == Placement::Duplicate {
                duplicates += 1;
            }
        }
        fold::expire(&mut state, &self.model, self.watermark);
        render_customer(&self.model, &mut state, rows);
        duplicates
    }

    /// Drop pending deadlines, changes and event rows (after a rebalance).
    pub fn forget_cached(&mut self) {
        self.deadlines.clear();
        for key in std::mem::take(&mut self.dirty) {
            if let Some(customer) = self.customers.get_mut(&key) {
                customer.queued = false;
                customer.pending.clear();
            }
        }
    }

    /// How many journey instances are open now.
    pub fn open_instances(&self) -> usize {
        self.customers.values().filter(|c| c.state.open_instance().is_some()).count()
    }

    pub fn customers(&self) -> usize {
        self.customers.len()
    }

    pub fn state(&self, customer_id: &str) -> Option<&CustomerState> {
        self.customers.get(customer_id).map(|c| &c.state)
    }
}

fn render_customer(model: &Model, state: &mut CustomerState, rows: &mut Rows) {
    let version = state.revision;
    let retired = std::mem::take(&mut state.retired);
    let live: HashSet<&str> = state.instances.iter().map(|i| i.instance_id.as_str()).collect();
    for gone in &retired {
        // Never written: nothing to delete; an id that lives on is rewritten below.
        if gone.written && !live.contains(gone.instance_id.as_str()) {
            tombstone(model, &state.customer_id, gone, version, rows);
        }
    }
    drop(live);
    let customer_id = state.customer_id.clone();
    for instance in &mut state.instances {
        if instance.dirty {
            render_instance(model, &customer_id, instance, version, rows);
            instance.dirty = false;
        }
    }
}

fn tombstone(model: &Model, customer_id: &str, gone: &Instance, version: u64, rows: &mut Rows) {
    let journey = &model.journeys[gone.journey];
    rows.instances.push(InstanceRow {
        instance_id: gone.instance_id.clone(),
        customer_id: customer_id.to_string(),
        persona: gone.persona.clone(),
        journey_id: journey.id.clone(),
        journey_version: journey.version,
        status: gone.status().as_str(),
        end_reason: None,
        path: Vec::new(),
        path_event_ids: Vec::new(),
        events: 0,
        cost: 0,
        fitness: 0.0,
        deviation_count: 0,
        started_at: gone.events[0].core.ts,
        last_event_at: gone.events[gone.events.len() - 1].core.ts,
        ended_at: None,
        version,
        is_deleted: 1,
    });
    tombstone_tail(model, customer_id, gone, version, rows, [0, 0, 0]);
}

/// Delete rows idx >= keep[i] that an earlier render wrote for this instance.
fn tombstone_tail(
    model: &Model,
    customer_id: &str,
    instance: &Instance,
    version: u64,
    rows: &mut Rows,
    keep: [usize; 3],
) {
    let ts = instance.events[0].core.ts;
    let journey = &model.journeys[instance.journey];
    for idx in keep[0]..instance.emitted[0] {
        rows.deviations.push(DeviationRow {
            instance_id: instance.instance_id.clone(),
            idx,
            customer_id: customer_id.to_string(),
            persona: instance.persona.clone(),
            journey_id: journey.id.clone(),
            journey_version: journey.version,
            kind: "",
            step: String::new(),
            touchpoint: String::new(),
            channel: String::new(),
            owner: String::new(),
            ts,
            event_ids: Vec::new(),
            detail: String::new(),
            cost: 0,
            version,
            is_deleted: 1,
        });
    }
    for idx in keep[1]..instance.emitted[1] {
        rows.friction.push(FrictionRow {
            instance_id: instance.instance_id.clone(),
            idx,
            signal_id: String::new(),
            customer_id: customer_id.to_string(),
            persona: instance.persona.clone(),
            journey_id: journey.id.clone(),
            journey_version: journey.version,
            touchpoint: String::new(),
            owner: String::new(),
            kind: "",
            weight: 0.0,
            ts,
            event_ids: Vec::new(),
            version,
            is_deleted: 1,
        });
    }
    for idx in keep[2]..instance.emitted[2] {
        rows.delight.push(DelightRow {
            instance_id: instance.instance_id.clone(),
            idx,
            customer_id: customer_id.to_string(),
            persona: instance.persona.clone(),
            touchpoint: String::new(),
            owner: String::new(),
            employee_id: None,
            survey_kind: String::new(),
            score: 0,
            ts,
            event_ids: Vec::new(),
            version,
            is_deleted: 1,
        });
    }
}

const DEVIATING_KINDS: [&str; 4] =
    ["unexpected_step", "out_of_order", "repeated_step", "time_budget_exceeded"];

fn owner(model: &Model, touchpoint: &str) -> String {
    model.owner_of.get(touchpoint).cloned().unwrap_or_default()
}

/// The instance row and its deviation, friction, delight and attribution rows (render_instance).
fn render_instance(model: &Model, customer_id: &str, instance: &mut Instance, version: u64, rows: &mut Rows) {
    let journey = &model.journeys[instance.journey];
    let events = &instance.events;
    let path: Vec<&str> = events.iter().map(|e| e.core.touchpoint.as_str()).collect();
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
            touchpoint: last.core.touchpoint.clone(),
            channel: last.core.channel.clone(),
            ts: last.core.ts,
            event_ids: vec![last.core.event_id.clone()],
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
    let deviating: HashSet<&str> = deviations
        .iter()
        .filter(|d| DEVIATING_KINDS.contains(&d.kind))
        .flat_map(|d| d.event_ids.iter().map(String::as_str))
        .collect();
    let attributions = signals::attribute_support(events, &|id| deviating.contains(id), settings);
    let friction =
        signals::friction_of(events, &deviations, &attributions, status == Status::Abandoned, settings);
    let delight = signals::delight_of(events, settings);

    let iid = &instance.instance_id;
    let persona = &instance.persona;
    rows.instances.push(InstanceRow {
        instance_id: iid.clone(),
        customer_id: customer_id.to_string(),
        persona: persona.clone(),
        journey_id: journey.id.clone(),
        journey_version: journey.version,
        status: status.as_str(),
        end_reason: instance.closure.map(|c| c.as_str()),
        path: path.iter().map(|t| t.to_string()).collect(),
        path_event_ids: events.iter().map(|e| e.core.event_id.clone()).collect(),
        events: path.len(),
        cost,
        fitness,
        deviation_count: deviations.len(),
        started_at: events[0].core.ts,
        last_event_at: last.core.ts,
        ended_at: instance.closure.map(|_| last.core.ts),
        version,
        is_deleted: 0,
    });
    let counts = [deviations.len(), friction.len(), delight.len()];
    for (idx, deviation) in deviations.into_iter().enumerate() {
        rows.deviations.push(DeviationRow {
            instance_id: iid.clone(),
            idx,
            customer_id: customer_id.to_string(),
            persona: persona.clone(),
            journey_id: journey.id.clone(),
            journey_version: journey.version,
            kind: deviation.kind,
            step: deviation.step,
            owner: owner(model, &deviation.touchpoint),
            touchpoint: deviation.touchpoint,
            channel: deviation.channel,
            ts: deviation.ts,
            event_ids: deviation.event_ids,
            detail: deviation.detail,
            cost: deviation.cost,
            version,
            is_deleted: 0,
        });
    }
    for (idx, signal) in friction.into_iter().enumerate() {
        rows.friction.push(FrictionRow {
            instance_id: iid.clone(),
            idx,
            signal_id: signal_id_of(iid, signal.kind, &signal.touchpoint, &signal.event_ids),
            customer_id: customer_id.to_string(),
            persona: persona.clone(),
            journey_id: journey.id.clone(),
            journey_version: journey.version,
            owner: owner(model, &signal.touchpoint),
            touchpoint: signal.touchpoint,
            kind: signal.kind,
            weight: signal.weight,
            ts: signal.ts,
            event_ids: signal.event_ids,
            version,
            is_deleted: 0,
        });
    }
    for (idx, delighted) in delight.into_iter().enumerate() {
        rows.delight.push(DelightRow {
            instance_id: iid.clone(),
            idx,
            customer_id: customer_id.to_string(),
            persona: persona.clone(),
            owner: owner(model, &delighted.touchpoint),
            touchpoint: delighted.touchpoint,
            employee_id: delighted.employee_id,
            survey_kind: delighted.survey_kind,
            score: delighted.score,
            ts: delighted.ts,
            event_ids: delighted.event_ids,
            version,
            is_deleted: 0,
        });
    }
    for item in &attributions {
        let support = &events[item.support].core;
        let upstream = item.upstream.map(|u| &events[u].core);
        rows.attribution.push(AttributionRow {
            support_event_id: support.event_id.clone(),
            instance_id: iid.clone(),
            customer_id: customer_id.to_string(),
            persona: persona.clone(),
            support_touchpoint: support.touchpoint.clone(),
            upstream_touchpoint: upstream.map(|u| u.touchpoint.clone()),
            upstream_owner: upstream.map(|u| owner(model, &u.touchpoint)),
            upstream_event_id: upstream.map(|u| u.event_id.clone()),
            rule: item.rule,
            ts: support.ts,
            version,
            is_deleted: 0,
        });
    }
    tombstone_tail(model, customer_id, instance, version, rows, counts);
    instance.emitted = counts;
    instance.written = true;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alignment::{Journey, Occurrence, Step};
    use crate::fold::JourneySpec;
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
    fn model() -> Model {
        let steps = vec![step("a", "web.a", false), step("b", "web.b", true), step("c", "web.c", false)];
        let step_of =
            HashMap::from([("web.a".into(), vec![1]), ("web.b".into(), vec![2]), ("web.c".into(), vec![3])]);
        let core = Journey::new(steps, step_of, vec![0, 1, 1, 1], vec![0, 1, 2, 3]).unwrap();
        let set = |t: &str| HashSet::from([t.to_string()]);
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
            by_persona: HashMap::from([("p".into(), vec![0])]),
            default_persona: "p".into(),
            channel_of: HashMap::from(channels.clone()),
            owner_of: HashMap::from(channels.map(|(t, _)| (t, "team".to_string()))),
            allowed_lateness: 24 * HOUR,
            friction: FrictionSettings {
                repeat_window: HOUR,
                escalation_lookback: HOUR,
                survey_lookback: HOUR,
            },
        }
    }

    fn event(id: &str, touchpoint: &str, ts: i64) -> (Event, EventExtras) {
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
        (event, EventExtras { customer_id: "c1".into(), attributes: "{}".into(), ..EventExtras::default() })
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

    /// The latest row of each instance (highest version wins, as ReplacingMergeTree keeps it).
    fn latest(rows: &[InstanceRow]) -> Vec<InstanceRow> {
        let mut by_id: HashMap<&str, &InstanceRow> = HashMap::new();
        for row in rows {
            let keep = by_id.get(row.instance_id.as_str()).is_none_or(|old| old.version <= row.version);
            if keep {
                by_id.insert(&row.instance_id, row);
            }
        }
        let mut out: Vec<InstanceRow> = by_id
            .into_values()
            .filter(|r| r.is_deleted == 0)
            .map(|r| InstanceRow { version: 0, ..r.clone() })
            .collect();
        out.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
        out
    }

    #[test]
    fn an_ideal_path_completes_at_no_cost_with_the_reference_ids() {
        let mut engine = Engine::new(model());
        feed(&mut engine, &[("e1", "web.a", 0), ("e2", "web.b", 10), ("e3", "web.c", 20)]);
        let rows = engine.drain();
        assert_eq!(rows.events.len(), 3);
        let instance = &rows.instances[0];
        assert_eq!(
            (instance.status, instance.end_reason, instance.cost),
            ("completed", Some("final_step"), 0)
        );
        assert_eq!(instance.fitness, 1.0);
        // hashlib.blake2b on the Python side gives the same ids.
        assert_eq!(instance.instance_id, "2ac722cb1255e3f9");
        assert_eq!(signal_id_of("abc", "repeat", "web.a", &["e1".into(), "e2".into()]), "33cf2005ad523867");
        assert!(rows.deviations.is_empty());
    }

    #[test]
    fn arrival_order_does_not_change_the_final_rows() {
        let events =
            [("e1", "web.a", 0), ("e2", "web.b", 10), ("e3", "web.c", 20), ("e4", "web.a", 3 * HOUR)];
        let mut in_order = Engine::new(model());
        feed(&mut in_order, &events);
        let mut shuffled = Engine::new(model());
        let mut reversed = Vec::new();
        for item in events.iter().rev() {
            feed(&mut shuffled, &[*item]);
            reversed.extend(shuffled.drain().instances);
        }
        assert!(reversed.iter().any(|r| r.is_deleted == 1), "a retired instance is tombstoned");
        assert_eq!(latest(&reversed), latest(&in_order.drain().instances));
    }

    #[test]
    fn duplicates_change_nothing_and_settled_journeys_refuse_late_events() {
        let mut engine = Engine::new(model());
        let placements = feed(&mut engine, &[("e1", "web.a", 0), ("e1", "web.a", 0)]);
        assert_eq!(placements, vec![Placement::Accepted, Placement::Duplicate]);
        assert_eq!(engine.drain().events.len(), 1);
        feed(&mut engine, &[("e2", "web.a", 48 * HOUR)]);
        let rows = engine.drain();
        let abandoned = rows.instances.iter().find(|r| r.path_event_ids == ["e1"]).expect("first instance");
        assert_eq!((abandoned.status, abandoned.end_reason), ("abandoned", Some("idle")));
        assert!(rows.deviations.iter().any(|d| d.kind == "abandoned"));
        assert_eq!(feed(&mut engine, &[("e0", "web.b", 1)]), vec![Placement::TooLate]);
    }
}
