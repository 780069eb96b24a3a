//! Python bindings (module `projections._native`); the Python side wraps them in projections/native.py.

use std::borrow::Cow;
use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::alignment::{self, Move, Occurrence, Op};
use crate::engine::{Engine, EventExtras, Rows};
use crate::event;
use crate::fold::{Event, JourneySpec, Model, Placement};
use crate::signals::FrictionSettings;

fn obj<'py, T: IntoPyObjectExt<'py>>(py: Python<'py>, value: T) -> PyResult<Py<PyAny>> {
    Ok(value.into_bound_py_any(py)?.unbind())
}

/// Decode and validate one record: `(True, fields)` for an event, `(False, (reason, detail, field))`.
/// fields: (event_id, customer_id, occurred_us, channel, touchpoint, persona, outcome, employee_id,
/// survey_kind, survey_score, survey_comment, attributes_json, source).
#[pyfunction]
fn check_event<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyTuple>> {
    match event::check_event(raw) {
        Ok(e) => {
            let (kind, score, comment) = match e.survey {
                Some(s) => (Some(s.kind), Some(s.score), s.comment),
                None => (None, None, None),
            };
            let attributes = e.attributes.map(|a| PyBytes::new(py, &a).into_any().unbind());
            let fields = vec![
                obj(py, e.event_id)?,
                obj(py, e.customer_id)?,
                obj(py, e.occurred_us)?,
                obj(py, e.channel)?,
                obj(py, e.touchpoint)?,
                obj(py, e.persona)?,
                obj(py, e.outcome)?,
                obj(py, e.employee_id)?,
                obj(py, kind)?,
                obj(py, score)?,
                obj(py, comment)?,
                obj(py, attributes)?,
                obj(py, e.source)?,
            ];
            PyTuple::new(py, [obj(py, true)?, PyTuple::new(py, fields)?.into_any().unbind()])
        }
        Err(r) => {
            let rejection = obj(py, (r.reason, r.detail, r.field))?;
            PyTuple::new(py, [obj(py, false)?, rejection])
        }
    }
}

/// Decode and validate every record of a list of bytes without building Python objects
/// (the shape of the native hot path); returns (accepted, rejected).
#[pyfunction]
fn check_events(raws: &Bound<'_, PyList>) -> PyResult<(usize, usize)> {
    let mut accepted = 0;
    let mut rejected = 0;
    for item in raws.iter() {
        let raw: &[u8] = item.extract()?;
        match event::check_event(raw) {
            Ok(_) => accepted += 1,
            Err(_) => rejected += 1,
        }
    }
    Ok((accepted, rejected))
}

type StepTuple = (String, Vec<String>, String, String, bool, bool, Option<i64>, bool);
type EventTuple = (i64, String, String, String);
type MoveTuple = (String, usize, Option<usize>, u32);
type MoveOut = (&'static str, usize, Option<usize>, u32);
type DeviationTuple = (&'static str, String, String, String, i64, Vec<String>, String, u32);

/// A compiled journey (projections.journeys.Journey) with its alignment and deviation classifier.
#[pyclass(name = "Journey", module = "projections._native")]
struct PyJourney {
    inner: alignment::Journey,
    channel_of: HashMap<String, String>,
}

fn occurrences(events: Vec<EventTuple>) -> Vec<Occurrence> {
    events
        .into_iter()
        .map(|(ts, event_id, touchpoint, channel)| Occurrence { ts, event_id, touchpoint, channel })
        .collect()
}

fn deviation_tuples(deviations: Vec<alignment::Deviation>) -> Vec<DeviationTuple> {
    deviations
        .into_iter()
        .map(|d| (d.kind, d.step, d.touchpoint, d.channel, d.ts, d.event_ids, d.detail, d.cost))
        .collect()
}

#[pymethods]
impl PyJourney {
    #[new]
    fn new(
        steps: Vec<StepTuple>,
        step_of: HashMap<String, Vec<usize>>,
        skip_cost: Vec<u32>,
        initial_costs: Vec<u32>,
        channel_of: HashMap<String, String>,
    ) -> PyResult<Self> {
        let steps = steps
            .into_iter()
            .map(|(name, touchpoints, primary, primary_channel, optional, repeatable, within_ms, goal)| {
                alignment::Step {
                    name,
                    touchpoints,
                    primary,
                    primary_channel,
                    optional,
                    repeatable,
                    within_ms,
                    goal,
                }
            })
            .collect();
        let inner = alignment::Journey::new(steps, step_of, skip_cost, initial_costs)
            .map_err(PyValueError::new_err)?;
        Ok(PyJourney { inner, channel_of })
    }

    /// Journey.advance: the cost vector after one more event.
    fn advance(&self, costs: Vec<u32>, touchpoint: &str) -> PyResult<Vec<u32>> {
        if costs.len() != self.inner.initial_costs.len() {
            return Err(PyValueError::new_err("the cost vector has one entry per step plus one"));
        }
        Ok(self.inner.advance(&costs, touchpoint))
    }

    /// alignment.cost_table: the cost vector after each prefix of the path.
    fn cost_table(&self, path: Vec<String>) -> Vec<Vec<u32>> {
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        self.inner.cost_table(&path)
    }

    /// The incremental fold (advance_cached from the initial costs): (base, relative) per event.
    fn fold(&mut self, path: Vec<String>) -> Vec<(u32, Vec<u32>)> {
        let mut state = self.inner.start();
        path.iter()
            .map(|touchpoint| {
                state = self.inner.advance_cached(state, touchpoint);
                (state.0, self.inner.relative(state.1).to_vec())
            })
            .collect()
    }

    /// The final alignment cost of each path, folded incrementally (for measurements; the
    /// touchpoints are read in place, as the native engine will read them from decoded bytes).
    fn fold_costs(&mut self, paths: &Bound<'_, PyList>) -> PyResult<Vec<u32>> {
        let mut out = Vec::with_capacity(paths.len());
        for path in paths.iter() {
            let mut state = self.inner.start();
            for touchpoint in path.cast::<PyList>()?.iter() {
                state = self.inner.advance_cached(state, touchpoint.cast::<PyString>()?.to_str()?);
            }
            out.push(state.0);
        }
        Ok(out)
    }

    /// alignment.align_uncached: the optimal moves as (op, step, event, cost).
    #[pyo3(signature = (path, end_state=None))]
    fn align(&self, path: Vec<String>, end_state: Option<usize>) -> PyResult<Vec<MoveOut>> {
        if end_state.is_some_and(|s| s > self.inner.steps.len()) {
            return Err(PyValueError::new_err("end_state is beyond the last step"));
        }
        let path: Vec<&str> = path.iter().map(String::as_str).collect();
        Ok(self
            .inner
            .align(&path, end_state)
            .into_iter()
            .map(|m| (m.op.as_str(), m.step, m.event, m.cost))
            .collect())
    }

    /// alignment.deviations_of for moves as returned by align().
    fn deviations_of(&self, events: Vec<EventTuple>, moves: Vec<MoveTuple>) -> PyResult<Vec<DeviationTuple>> {
        let events = occurrences(events);
        let k = self.inner.steps.len();
        let mut parsed = Vec::with_capacity(moves.len());
        for (op, step, event_index, cost) in moves {
            let op = match op.as_str() {
                "match" => Op::Match,
                "repeat" => Op::Repeat,
                "insert" => Op::Insert,
                "skip" => Op::Skip,
                other => return Err(PyValueError::new_err(format!("unknown move '{other}'"))),
            };
            if step > k
                || event_index.is_some_and(|e| e >= events.len())
                || (op != Op::Insert && op != Op::Skip && step == 0)
            {
                return Err(PyValueError::new_err("a move names a step or event that does not exist"));
            }
            parsed.push(Move { op, step, event: event_index, cost });
        }
        Ok(deviation_tuples(self.inner.deviations_of(&events, &parsed, &self.channel_of)))
    }

    /// align() then deviations_of() for one instance's events (end_state None: unfinished path).
    #[pyo3(signature = (events, end_state=None))]
    fn deviations(&self, events: Vec<EventTuple>, end_state: Option<usize>) -> PyResult<Vec<DeviationTuple>> {
        if end_state.is_some_and(|s| s > self.inner.steps.len()) {
            return Err(PyValueError::new_err("end_state is beyond the last step"));
        }
        let events = occurrences(events);
        let path: Vec<&str> = events.iter().map(|e| e.touchpoint.as_str()).collect();
        let moves = self.inner.align(&path, end_state);
        Ok(deviation_tuples(self.inner.deviations_of(&events, &moves, &self.channel_of)))
    }

    /// deviations() for many instances; returns the number of deviations (for measurements).
    fn count_deviations(&self, instances: Vec<Vec<EventTuple>>) -> usize {
        instances
            .into_iter()
            .map(|events| {
                let events = occurrences(events);
                let path: Vec<&str> = events.iter().map(|e| e.touchpoint.as_str()).collect();
                let moves = self.inner.align(&path, None);
                self.inner.deviations_of(&events, &moves, &self.channel_of).len()
            })
            .sum()
    }
}

type JourneyTuple = (
    String,                      // id
    i64,                         // version
    i64,                         // abandon_after_ms
    Vec<StepTuple>,              // steps
    HashMap<String, Vec<usize>>, // step_of
    Vec<u32>,                    // skip_cost
    Vec<u32>,                    // initial_costs
    Vec<String>,                 // entry touchpoints
    Vec<String>,                 // goal touchpoints
    Vec<String>,                 // final-step touchpoints
    u32,                         // shortest ideal length
);
/// (ts, event_id, touchpoint, channel, outcome, persona, employee_id, survey_kind, survey_score):
/// an Occurrence.
type OccurrenceTuple = (
    i64,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
);

fn step_of_tuple(t: StepTuple) -> alignment::Step {
    let (name, touchpoints, primary, primary_channel, optional, repeatable, within_ms, goal) = t;
    alignment::Step { name, touchpoints, primary, primary_channel, optional, repeatable, within_ms, goal }
}

fn event_of_tuple(t: OccurrenceTuple) -> Event {
    let (ts, event_id, touchpoint, channel, outcome, persona, employee_id, survey_kind, survey_score) = t;
    Event {
        core: Occurrence { ts, event_id, touchpoint, channel },
        outcome,
        persona,
        employee_id,
        survey_kind,
        survey_score,
    }
}

/// The journey engine (projections.engine.JourneyEngine) over a compiled model handed from Python.
#[pyclass(name = "Engine", module = "projections._native", unsendable)]
struct PyEngine {
    inner: Engine,
    scenario: Py<PyString>,
}

const FEED_REJECTED: u8 = 0;
const FEED_FALLBACK: u8 = 1;
type FeedException = (usize, u8, Option<(&'static str, String, Option<String>)>);
type FeedResult = (Vec<FeedException>, (usize, usize, usize, usize));

const PLACEMENT_ACCEPTED: u8 = 0;
const PLACEMENT_DUPLICATE: u8 = 1;
const PLACEMENT_TOO_LATE: u8 = 2;

fn placement_code(placement: Placement) -> u8 {
    match placement {
        Placement::Accepted => PLACEMENT_ACCEPTED,
        Placement::Duplicate => PLACEMENT_DUPLICATE,
        Placement::TooLate => PLACEMENT_TOO_LATE,
    }
}

fn row<'py>(py: Python<'py>, items: Vec<Py<PyAny>>) -> PyResult<Py<PyAny>> {
    Ok(PyTuple::new(py, items)?.into_any().unbind())
}

impl PyEngine {
    /// Rows as {table name: [row tuple, ...]} with only the tables that have rows (as RowBatch.rows).
    fn tables<'py>(&self, py: Python<'py>, rows: Rows) -> PyResult<Bound<'py, PyDict>> {
        let out = PyDict::new(py);
        let s = || self.scenario.clone_ref(py).into_any();
        if !rows.events.is_empty() {
            let mut list = Vec::with_capacity(rows.events.len());
            for r in rows.events {
                list.push(row(
                    py,
                    vec![
                        s(),
                        obj(py, r.event_id)?,
                        obj(py, r.customer_id)?,
                        obj(py, r.ts)?,
                        obj(py, r.channel)?,
                        obj(py, r.touchpoint)?,
                        obj(py, r.owner)?,
                        obj(py, r.persona)?,
                        obj(py, r.outcome)?,
                        obj(py, r.employee_id)?,
                        obj(py, r.survey_kind)?,
                        obj(py, r.survey_score)?,
                        obj(py, r.survey_comment)?,
                        obj(py, r.attributes)?,
                        obj(py, r.source)?,
                    ],
                )?);
            }
            out.set_item("touchpoint_events", list)?;
        }
        if !rows.instances.is_empty() {
            let mut list = Vec::with_capacity(rows.instances.len());
            for r in rows.instances {
                list.push(row(
                    py,
                    vec![
                        s(),
                        obj(py, r.instance_id)?,
                        obj(py, r.customer_id)?,
                        obj(py, r.persona)?,
                        obj(py, r.journey_id)?,
                        obj(py, r.journey_version)?,
                        obj(py, r.status)?,
                        obj(py, r.end_reason)?,
                        obj(py, r.path)?,
                        obj(py, r.path_event_ids)?,
                        obj(py, r.events)?,
                        obj(py, r.cost)?,
                        obj(py, r.fitness)?,
                        obj(py, r.deviation_count)?,
                        obj(py, r.started_at)?,
                        obj(py, r.last_event_at)?,
                        obj(py, r.ended_at)?,
                        obj(py, r.version)?,
                        obj(py, r.is_deleted)?,
                    ],
                )?);
            }
            out.set_item("journey_instances", list)?;
        }
        if !rows.deviations.is_empty() {
            let mut list = Vec::with_capacity(rows.deviations.len());
            for r in rows.deviations {
                list.push(row(
                    py,
                    vec![
                        s(),
                        obj(py, r.instance_id)?,
                        obj(py, r.idx)?,
                        obj(py, r.customer_id)?,
                        obj(py, r.persona)?,
                        obj(py, r.journey_id)?,
                        obj(py, r.journey_version)?,
                        obj(py, r.kind)?,
                        obj(py, r.step)?,
                        obj(py, r.touchpoint)?,
                        obj(py, r.channel)?,
                        obj(py, r.owner)?,
                        obj(py, r.ts)?,
                        obj(py, r.event_ids)?,
                        obj(py, r.detail)?,
                        obj(py, r.cost)?,
                        obj(py, r.version)?,
                        obj(py, r.is_deleted)?,
                    ],
                )?);
            }
            out.set_item("deviations", list)?;
        }
        if !rows.friction.is_empty() {
            let mut list = Vec::with_capacity(rows.friction.len());
            for r in rows.friction {
                list.push(row(
                    py,
                    vec![
                        s(),
                        obj(py, r.instance_id)?,
                        obj(py, r.idx)?,
                        obj(py, r.signal_id)?,
                        obj(py, r.customer_id)?,
                        obj(py, r.persona)?,
                        obj(py, r.journey_id)?,
                        obj(py, r.journey_version)?,
                        obj(py, r.touchpoint)?,
                        obj(py, r.owner)?,
                        obj(py, r.kind)?,
                        obj(py, r.weight)?,
                        obj(py, r.ts)?,
                        obj(py, r.event_ids)?,
                        obj(py, r.version)?,
                        obj(py, r.is_deleted)?,
                    ],
                )?);
            }
            out.set_item("friction_signals", list)?;
        }
        if !rows.delight.is_empty() {
            let mut list = Vec::with_capacity(rows.delight.len());
            for r in rows.delight {
                list.push(row(
                    py,
                    vec![
                        s(),
                        obj(py, r.instance_id)?,
                        obj(py, r.idx)?,
                        obj(py, r.customer_id)?,
                        obj(py, r.persona)?,
                        obj(py, r.touchpoint)?,
                        obj(py, r.owner)?,
                        obj(py, r.employee_id)?,
                        obj(py, r.survey_kind)?,
                        obj(py, r.score)?,
                        obj(py, r.ts)?,
                        obj(py, r.event_ids)?,
                        obj(py, r.version)?,
                        obj(py, r.is_deleted)?,
                    ],
                )?);
            }
            out.set_item("delight_signals", list)?;
        }
        if !rows.attribution.is_empty() {
            let mut list = Vec::with_capacity(rows.attribution.len());
            for r in rows.attribution {
                list.push(row(
                    py,
                    vec![
                        s(),
                        obj(py, r.support_event_id)?,
                        obj(py, r.instance_id)?,
                        obj(py, r.customer_id)?,
                        obj(py, r.persona)?,
                        obj(py, r.support_touchpoint)?,
                        obj(py, r.upstream_touchpoint)?,
                        obj(py, r.upstream_owner)?,
                        obj(py, r.upstream_event_id)?,
                        obj(py, r.rule)?,
                        obj(py, r.ts)?,
                        obj(py, r.version)?,
                        obj(py, r.is_deleted)?,
                    ],
                )?);
            }
            out.set_item("support_attribution", list)?;
        }
        Ok(out)
    }
}

#[pymethods]
impl PyEngine {
    #[new]
    #[allow(clippy::too_many_arguments)] // the compiled model, field by field, as Python hands it over
    fn new(
        scenario: Bound<'_, PyString>,
        journeys: Vec<JourneyTuple>,
        by_persona: HashMap<String, Vec<usize>>,
        default_persona: String,
        channel_of: HashMap<String, String>,
        owner_of: HashMap<String, String>,
        allowed_lateness: i64,
        friction: (i64, i64, i64),
    ) -> PyResult<Self> {
        let mut specs = Vec::with_capacity(journeys.len());
        for (
            id,
            version,
            abandon_after_ms,
            steps,
            step_of,
            skip_cost,
            initial_costs,
            entry,
            goal,
            last,
            shortest,
        ) in journeys
        {
            let steps = steps.into_iter().map(step_of_tuple).collect();
            let core = alignment::Journey::new(steps, step_of, skip_cost, initial_costs)
                .map_err(PyValueError::new_err)?;
            specs.push(JourneySpec {
                id,
                version,
                abandon_after_ms,
                entry: entry.into_iter().collect(),
                goal: goal.into_iter().collect(),
                last_step: last.into_iter().collect(),
                shortest_ideal_length: shortest,
                core,
            });
        }
        if !by_persona.contains_key(&default_persona)
            || by_persona.values().flatten().any(|&j| j >= specs.len())
            || by_persona.values().any(Vec::is_empty)
        {
            return Err(PyValueError::new_err(
                "by_persona must name existing journeys and the default persona",
            ));
        }
        let (repeat_window, escalation_lookback, survey_lookback) = friction;
        let model = Model {
            journeys: specs,
            by_persona,
            default_persona,
            channel_of,
            owner_of,
            allowed_lateness,
            friction: FrictionSettings { repeat_window, escalation_lookback, survey_lookback },
        };
        Ok(PyEngine { inner: Engine::new(model), scenario: scenario.unbind() })
    }

    #[getter]
    fn watermark(&self) -> i64 {
        self.inner.watermark
    }

    /// Fold one checked event: 0 accepted, 1 duplicate, 2 too late.
    #[allow(clippy::too_many_arguments)] // one event's fields, positionally: the hot path
    #[pyo3(signature = (ts, event_id, customer_id, touchpoint, channel, outcome, persona, employee_id,
                        survey_kind, survey_score, survey_comment, attributes, source, stream_time))]
    fn accept(
        &mut self,
        ts: i64,
        event_id: String,
        customer_id: String,
        touchpoint: String,
        channel: String,
        outcome: Option<String>,
        persona: Option<String>,
        employee_id: Option<String>,
        survey_kind: Option<String>,
        survey_score: Option<i64>,
        survey_comment: Option<String>,
        attributes: String,
        source: Option<String>,
        stream_time: Option<i64>,
    ) -> u8 {
        let event = Event {
            core: Occurrence { ts, event_id, touchpoint, channel },
            outcome,
            persona,
            employee_id,
            survey_kind,
            survey_score,
        };
        let extras = EventExtras { customer_id, survey_comment, attributes, source };
        placement_code(self.inner.accept(event, extras, stream_time))
    }

    /// Decode, check and fold a batch of raw records without Python objects per accepted event.
    ///
    /// Returns (exceptions, (received, accepted, duplicates, bad)): exceptions are
    /// (index, 0, (reason, detail, field)) for a record the contract refuses (counted as bad), and
    /// (index, 1, None) for one the caller must offer through the full Python path (a registry or
    /// persona problem, a future timestamp, too deep, too late), neither folded nor counted here.
    #[pyo3(signature = (lines, not_after_ms, max_depth))]
    fn feed_raw(
        &mut self,
        lines: &Bound<'_, PyList>,
        not_after_ms: Option<i64>,
        max_depth: usize,
    ) -> PyResult<FeedResult> {
        let mut exceptions = Vec::new();
        let (mut received, mut accepted, mut duplicates, mut bad) = (0usize, 0usize, 0usize, 0usize);
        for (index, item) in lines.iter().enumerate() {
            let raw = item.cast::<PyBytes>()?;
            let e = match event::check_event(raw.as_bytes()) {
                Ok(e) => e,
                Err(r) => {
                    received += 1;
                    bad += 1;
                    exceptions.push((index, FEED_REJECTED, Some((r.reason, r.detail, r.field))));
                    continue;
                }
            };
            let ts = e.occurred_ms();
            let model = &self.inner.model;
            let simple = not_after_ms.is_none_or(|bound| ts <= bound)
                && e.attributes.as_deref().is_none_or(|a| event::json_depth(a) < max_depth) // 1 + depth <= max
                && model.channel_of.get(e.touchpoint.as_ref()).is_some_and(|c| *c == e.channel)
                && e.persona.as_deref().is_none_or(|p| model.by_persona.contains_key(p));
            if !simple {
                exceptions.push((index, FEED_FALLBACK, None));
                continue;
            }
            let (survey_kind, survey_score, survey_comment) = match e.survey {
                Some(survey) => {
                    (Some(survey.kind.to_string()), Some(survey.score), survey.comment.map(Cow::into_owned))
                }
                None => (None, None, None),
            };
            let attributes = match e.attributes {
                Some(bytes) => {
                    String::from_utf8(bytes).map_err(|err| PyValueError::new_err(err.to_string()))?
                }
                None => "{}".to_string(),
            };
            let event = Event {
                core: Occurrence {
                    ts,
                    event_id: e.event_id.into_owned(),
                    touchpoint: e.touchpoint.into_owned(),
                    channel: e.channel.into_owned(),
                },
                outcome: e.outcome.map(str::to_string),
                persona: e.persona.map(Cow::into_owned),
                employee_id: e.employee_id.map(Cow::into_owned),
                survey_kind,
                survey_score,
            };
            let extras = EventExtras {
                customer_id: e.customer_id.into_owned(),
                survey_comment,
                attributes,
                source: e.source.map(Cow::into_owned),
            };
            match self.inner.accept(event, extras, None) {
                // Nothing changed: the full path refuses it again, with the verdict the shell needs.
                Placement::TooLate => exceptions.push((index, FEED_FALLBACK, None)),
                placement => {
                    received += 1;
                    accepted += 1;
                    duplicates += usize::from(placement == Placement::Duplicate);
                }
            }
        }
        Ok((exceptions, (received, accepted, duplicates, bad)))
    }

    fn advance(&mut self, watermark: i64) {
        self.inner.advance(watermark);
    }

    /// Rows of everything changed since the last drain, as {table: [row, ...]}.
    fn drain<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let rows = self.inner.drain();
        self.tables(py, rows)
    }

    /// drain() without handing the rows to Python: how many there were (for measurements).
    fn drain_count(&mut self) -> usize {
        self.inner.drain().len()
    }

    /// Per customer changed since the last drain: (customer_id, {table: [row, ...]}).
    fn drain_updates<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyDict>)>> {
        let updates = self.inner.drain_updates();
        let mut out = Vec::with_capacity(updates.len());
        for (customer, rows) in updates {
            out.push((customer.to_string(), self.tables(py, rows)?));
        }
        Ok(out)
    }

    /// Fold and render one customer's recorded events: ({table: [row, ...]}, duplicates).
    fn replay_customer<'py>(
        &mut self,
        py: Python<'py>,
        customer_id: &str,
        events: Vec<OccurrenceTuple>,
    ) -> PyResult<(Bound<'py, PyDict>, usize)> {
        let mut rows = Rows::default();
        let events = events.into_iter().map(event_of_tuple).collect();
        let duplicates = self.inner.replay_customer(customer_id, events, &mut rows);
        Ok((self.tables(py, rows)?, duplicates))
    }

    fn forget_cached(&mut self) {
        self.inner.forget_cached();
    }

    fn open_instances(&self) -> usize {
        self.inner.open_instances()
    }

    fn customers(&self) -> usize {
        self.inner.customers()
    }
}

/// The module `projections._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_event, m)?)?;
    m.add_function(wrap_pyfunction!(check_events, m)?)?;
    m.add_class::<PyJourney>()?;
    m.add_class::<PyEngine>()?;
    m.add("MAX_EVENT_BYTES", event::MAX_EVENT_BYTES)?;
    Ok(())
}
