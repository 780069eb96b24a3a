//! Per-customer journey state and the per-event fold: a port of projections/customer.py
//! (segmenting events into instances, late and out-of-order placement, timeouts, forgetting).

use std::collections::HashMap;
use std::sync::Arc;

use crate::fxhash::{FastMap, FastSet};

use crate::alignment::{Journey, Occurrence};
use crate::blake2b;
use crate::signals::FrictionSettings;

/// What the engine keeps of an accepted event (projections.occurrence.Occurrence).
#[derive(Debug, Clone)]
pub struct Event {
    pub core: Occurrence, // ts, event_id, touchpoint, channel
    pub outcome: Option<Arc<str>>,
    pub persona: Option<Arc<str>>,
    pub employee_id: Option<String>,
    pub survey_kind: Option<Arc<str>>,
    pub survey_score: Option<i64>,
    /// hash_id(core.event_id), so that looking for a duplicate among a customer's events
    /// compares these, in the events' own array, and reads an id only on a match. Set by
    /// add_event (constructors elsewhere leave it 0) and by state::decode: every retained
    /// event came through one of them.
    pub id_hash: u64,
}

impl AsRef<Occurrence> for Event {
    fn as_ref(&self) -> &Occurrence {
        &self.core
    }
}

impl Event {
    fn key(&self) -> (i64, &str) {
        (self.core.ts, &self.core.event_id)
    }
}

/// A compiled journey with what segmenting needs beside the alignment tables.
#[derive(Debug, Clone)]
pub struct JourneySpec {
    pub id: String,
    pub version: i64,
    pub abandon_after_ms: i64,
    pub entry: FastSet<String>,
    pub goal: FastSet<String>,
    pub last_step: FastSet<String>,
    pub shortest_ideal_length: u32,
    pub core: Journey,
}

/// Everything the fold needs of projections.journeys.JourneyModel.
#[derive(Debug, Clone)]
pub struct Model {
    pub journeys: Vec<JourneySpec>,
    pub by_persona: FastMap<String, Vec<usize>>,
    pub default_persona: String,
    pub channel_of: FastMap<String, String>,
    pub owner_of: FastMap<String, String>,
    pub allowed_lateness: i64,
    pub friction: FrictionSettings,
    /// Touchpoint and channel names, shared by every event that names them.
    pub names: FastSet<Arc<str>>,
}

impl Model {
    pub fn persona_known(&self, persona: Option<&str>) -> bool {
        persona.is_some_and(|p| self.by_persona.contains_key(p))
    }

    /// The shared copy of a touchpoint or channel name (at most a few thousand are kept).
    pub fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        if self.names.len() < 10_000 {
            self.names.insert(shared.clone());
        }
        shared
    }

    /// The persona's journey that this touchpoint enters, else the persona's first journey.
    pub fn journey_for(&self, persona: &str, touchpoint: &str) -> usize {
        let candidates = match self.by_persona.get(persona) {
            Some(list) if !list.is_empty() => list,
            _ => &self.by_persona[&self.default_persona],
        };
        candidates
            .iter()
            .copied()
            .find(|&j| self.journeys[j].entry.contains(touchpoint))
            .unwrap_or(candidates[0])
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closure {
    FinalStep,
    NextJourney,
    Idle,
    Timeout,
}

impl Closure {
    pub fn as_str(self) -> &'static str {
        match self {
            Closure::FinalStep => "final_step",
            Closure::NextJourney => "next_journey",
            Closure::Idle => "idle",
            Closure::Timeout => "timeout",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    InProgress,
    Completed,
    Abandoned,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::InProgress => "in_progress",
            Status::Completed => "completed",
            Status::Abandoned => "abandoned",
        }
    }
}

pub(crate) fn hash_id(event_id: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<crate::fxhash::FxHasher>::default().hash_one(event_id)
}

/// Deterministic instance id: the same first event always opens the same instance.
pub fn instance_id_of(customer_id: &str, first_event_id: &str) -> String {
    blake2b::hex8(&[customer_id.as_bytes(), b"\x00", first_event_id.as_bytes()])
}

/// One customer's run through one journey; costs kept as base + interned relative vector.
#[derive(Debug, Clone)]
pub struct Instance {
    pub instance_id: String,
    pub journey: usize,
    pub persona: Arc<str>, // a name shared through Model::intern
    pub events: Vec<Event>,
    pub base: u32,
    pub relative: u32,
    pub goal_reached: bool,
    pub closure: Option<Closure>,
    /// Rows of (deviations, friction, delight) last written: shrinking lists need tombstones.
    pub emitted: [usize; 3],
    pub written: bool,
    pub dirty: bool,
}

impl Instance {
    pub fn status(&self) -> Status {
        if self.goal_reached {
            Status::Completed
        } else if self.closure.is_some() {
            Status::Abandoned
        } else {
            Status::InProgress
        }
    }

    /// Closed with the goal reached: every remaining required step counts as missing.
    pub fn full_alignment(&self) -> bool {
        self.goal_reached && self.closure.is_some()
    }

    /// Least alignment cost (Instance.cost).
    pub fn cost(&self, model: &Model) -> u32 {
        if self.full_alignment() {
            let relative = model.journeys[self.journey].core.relative(self.relative);
            return self.base + relative.last().copied().unwrap_or(0);
        }
        self.base + u32::from(self.status() == Status::Abandoned)
    }

    fn last(&self) -> &Event {
        self.events.last().expect("an instance holds at least one event")
    }

    /// Events at or after this time cannot join this instance.
    pub fn end_bound(&self, model: &Model) -> i64 {
        let last = self.last().core.ts;
        match self.closure {
            Some(Closure::Idle | Closure::Timeout) => {
                last + model.journeys[self.journey].abandon_after_ms + 1
            }
            _ => last + 1,
        }
    }
}

pub const NEVER: i64 = -(1 << 62);

/// How many retained events a customer has before its event ids are indexed (CustomerState::seen).
pub const SEEN_INDEX_FROM: usize = 32;

/// Everything the engine remembers of one customer (CustomerState).
#[derive(Debug, Clone)]
pub struct CustomerState {
    pub customer_id: Arc<str>, // shared with the engine's index
    pub instances: Vec<Instance>,
    /// An index of the retained events' ids (CustomerState.seen) as hash -> how many retained
    /// events have it, built only once a customer retains more than SEEN_INDEX_FROM events:
    /// below that a scan of the events is as fast and costs no memory (most customers). A hit
    /// is confirmed against the events themselves, so either way the answer is exact.
    pub seen: Option<Box<FastMap<u64, u32>>>,
    pub frontier: i64,
    pub persona_before: Option<Arc<str>>,
    pub revision: u64,
    pub stream_time: i64,
    pub events_accepted: u64,
    pub retired: Vec<Instance>,
}

impl CustomerState {
    pub fn new(customer_id: Arc<str>) -> Self {
        CustomerState {
            customer_id,
            instances: Vec::new(),
            seen: None,
            frontier: NEVER,
            persona_before: None,
            revision: 0,
            stream_time: NEVER,
            events_accepted: 0,
            retired: Vec::new(),
        }
    }

    /// Whether a retained event has this id (and this hash_id of it).
    pub fn holds(&self, event_id: &str, id_hash: u64) -> bool {
        self.instances
            .iter()
            .flat_map(|i| &i.events)
            .any(|e| e.id_hash == id_hash && e.core.event_id == event_id)
    }

    /// Whether a retained event has this id, through the index when there is one.
    pub fn is_duplicate(&self, event_id: &str, id_hash: u64) -> bool {
        match &self.seen {
            Some(index) => index.contains_key(&id_hash) && self.holds(event_id, id_hash),
            None => self.holds(event_id, id_hash),
        }
    }

    /// Note an event just added to the instances, by the hash of its id taken before (given
    /// when there is an index): counted in the index, or the index built once there are enough.
    fn note_retained(&mut self, id_hash: Option<u64>) {
        match (&mut self.seen, id_hash) {
            (Some(index), Some(id_hash)) => *index.entry(id_hash).or_insert(0) += 1,
            _ => self.reindex(),
        }
    }

    /// Index the retained events' ids if there are enough of them (after a decode, or once a
    /// customer passes SEEN_INDEX_FROM); the index is kept from then on.
    pub fn reindex(&mut self) {
        let retained: usize = self.instances.iter().map(|i| i.events.len()).sum();
        if retained <= SEEN_INDEX_FROM {
            return;
        }
        let mut index = FastMap::default();
        for e in self.instances.iter().flat_map(|i| &i.events) {
            *index.entry(e.id_hash).or_insert(0) += 1;
        }
        self.seen = Some(Box::new(index));
    }

    /// Forget a dropped event's id (CustomerState.seen.discard).
    fn forget_retained(&mut self, id_hash: u64) {
        if let Some(index) = &mut self.seen {
            if let Some(count) = index.get_mut(&id_hash) {
                *count -= 1;
                if *count == 0 {
                    index.remove(&id_hash);
                }
            }
        }
    }

    pub fn open_instance(&self) -> Option<&Instance> {
        self.instances.last().filter(|i| i.closure.is_none())
    }
}

fn persona_of(model: &mut Model, event: &Event, known: Option<Arc<str>>) -> Arc<str> {
    match &event.persona {
        Some(p) if model.by_persona.contains_key(&**p) => p.clone(),
        _ => known.unwrap_or_else(|| {
            let name = model.default_persona.clone();
            model.intern(&name)
        }),
    }
}

fn start(customer_id: &str, model: &mut Model, event: &Event, known: Option<Arc<str>>) -> Instance {
    let persona = persona_of(model, event, known);
    let journey = model.journey_for(&persona, &event.core.touchpoint);
    let (base, relative) = model.journeys[journey].core.start();
    Instance {
        instance_id: instance_id_of(customer_id, &event.core.event_id),
        journey,
        persona,
        events: Vec::new(),
        base,
        relative,
        goal_reached: false,
        closure: None,
        emitted: [0; 3],
        written: false,
        dirty: true,
    }
}

fn append(instance: &mut Instance, model: &mut Model, event: Event) {
    let journey = &mut model.journeys[instance.journey];
    let touchpoint = &*event.core.touchpoint;
    (instance.base, instance.relative) =
        journey.core.advance_cached((instance.base, instance.relative), touchpoint);
    if journey.goal.contains(touchpoint) {
        instance.goal_reached = true;
    }
    if instance.goal_reached && journey.last_step.contains(touchpoint) {
        instance.closure = Some(Closure::FinalStep);
    }
    instance.dirty = true;
    // Grow by one, not by doubling: a state lives on between drains, which shrink() every list
    // to its length (resident memory), so doubling here would only be given back at the next
    // drain, at the cost of a second reallocation per event.
    instance.events.reserve_exact(1);
    instance.events.push(event);
}

/// Whether an event that follows an open instance in time starts a new one, and why.
fn boundary(instance: &Instance, model: &Model, event: &Event) -> Option<Closure> {
    let journey = &model.journeys[instance.journey];
    if event.core.ts - instance.last().core.ts > journey.abandon_after_ms {
        return Some(Closure::Idle);
    }
    if instance.goal_reached && journey.entry.contains(&*event.core.touchpoint) {
        return Some(Closure::NextJourney);
    }
    None
}

/// The customer's last known persona after an instance.
fn known_persona(model: &Model, instance: Option<&Instance>, before: Option<&Arc<str>>) -> Option<Arc<str>> {
    let Some(instance) = instance else { return before.cloned() };
    for event in instance.events.iter().rev() {
        if model.persona_known(event.persona.as_deref()) {
            return event.persona.clone();
        }
    }
    Some(instance.persona.clone())
}

/// Fold an event that comes after every retained event.
fn place_in_order(state: &mut CustomerState, model: &mut Model, event: Event) {
    let mut opens = true;
    if let Some(current) = state.instances.last_mut() {
        if current.closure == Some(Closure::Timeout) {
            // The watermark closed it; the boundary rules decide again now that an event came.
            current.closure = None;
            current.dirty = true;
        }
        if current.closure.is_none() {
            if let Some(reason) = boundary(current, model, &event) {
                current.closure = Some(reason);
                current.dirty = true;
            }
        }
        opens = current.closure.is_some();
    }
    if opens {
        let known = known_persona(model, state.instances.last(), state.persona_before.as_ref());
        let instance = start(&state.customer_id, model, &event, known);
        state.instances.reserve_exact(1); // as the events in append()
        state.instances.push(instance);
    }
    let current = state.instances.last_mut().expect("just ensured");
    append(current, model, event);
}

/// Recompute every retained instance from its events in (time, id) order (resegment).
fn resegment(state: &mut CustomerState, model: &mut Model, watermark: i64) {
    let old = std::mem::take(&mut state.instances);
    for event in old.iter().flat_map(|i| i.events.iter()) {
        place_in_order(state, model, event.clone());
    }
    expire(state, model, watermark);
    let position: HashMap<&str, usize> =
        old.iter().enumerate().map(|(n, i)| (i.instance_id.as_str(), n)).collect();
    let mut survived = vec![false; old.len()];
    for instance in &mut state.instances {
        if let Some(&n) = position.get(instance.instance_id.as_str()) {
            if !survived[n] {
                survived[n] = true;
                instance.emitted = old[n].emitted;
                instance.written = old[n].written;
            }
        }
    }
    drop(position);
    state.retired.extend(old.into_iter().zip(survived).filter(|(_, kept)| !kept).map(|(i, _)| i));
}

/// What folding an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Accepted,
    Duplicate,
    TooLate,
}

/// Fold a new event into the customer's state, in event-time order whatever the arrival order.
pub fn add_event(
    state: &mut CustomerState,
    model: &mut Model,
    mut event: Event,
    watermark: i64,
) -> Placement {
    event.id_hash = hash_id(&event.core.event_id);
    if state.is_duplicate(&event.core.event_id, event.id_hash) {
        return Placement::Duplicate;
    }
    if event.core.ts < state.frontier {
        return Placement::TooLate;
    }
    let id_hash = state.seen.is_some().then_some(event.id_hash);
    state.events_accepted += 1;
    state.revision += 1;
    let in_order = match state.instances.last() {
        None => true,
        Some(instance) => event.key() > instance.last().key(),
    };
    if in_order {
        place_in_order(state, model, event);
        state.note_retained(id_hash);
        return Placement::Accepted;
    }
    // Out of order: insert into the retained events and recompute the affected instances.
    let key = event.key();
    let target = state
        .instances
        .iter()
        .position(|i| key < i.last().key())
        .expect("the event sorts before the last retained event");
    let events = &mut state.instances[target].events;
    let at = events.partition_point(|e| e.key() <= key);
    events.reserve_exact(1);
    events.insert(at, event);
    resegment_from(state, model, watermark, target);
    state.note_retained(id_hash);
    Placement::Accepted
}

fn resegment_from(state: &mut CustomerState, model: &mut Model, watermark: i64, index: usize) {
    // The event may belong to the previous instance's idle gap, so start one earlier.
    let start = index.saturating_sub(1);
    let tail_instances = state.instances.split_off(start);
    let mut tail = CustomerState::new(state.customer_id.clone());
    tail.persona_before = known_persona(model, state.instances.last(), state.persona_before.as_ref());
    tail.instances = tail_instances;
    resegment(&mut tail, model, watermark);
    state.instances.append(&mut tail.instances);
    state.retired.append(&mut tail.retired);
}

/// Close the open instance when nothing happened within abandon_after up to the watermark.
pub fn expire(state: &mut CustomerState, model: &Model, watermark: i64) -> bool {
    let Some(current) = state.instances.last_mut() else { return false };
    if current.closure.is_some() {
        return false;
    }
    if watermark - current.last().core.ts > model.journeys[current.journey].abandon_after_ms {
        current.closure = Some(Closure::Timeout);
        current.dirty = true;
        state.revision += 1;
        return true;
    }
    false
}

/// Drop closed, already-written instances that ended before the horizon; returns how many.
pub fn forget_settled(state: &mut CustomerState, model: &Model, horizon: i64) -> usize {
    let mut dropped = 0;
    while let Some(first) = state.instances.first() {
        if first.closure.is_none() || first.dirty || first.end_bound(model) >= horizon {
            break;
        }
        let gone = state.instances.remove(0);
        state.frontier = state.frontier.max(gone.end_bound(model));
        state.persona_before = known_persona(model, Some(&gone), state.persona_before.as_ref());
        for event in &gone.events {
            state.forget_retained(event.id_hash);
        }
        dropped += 1;
    }
    dropped
}
