//! Python bindings (module `projections._native`); the Python side wraps them in projections/native.py.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::alignment::{self, Move, Occurrence, Op};
use crate::engine::{Engine, EventExtras, RowEnds};
use crate::event;
use crate::fold::{Event, JourneySpec, Model, Placement};
use crate::fxhash::FastMap;
use crate::rows::{Column, Rows};
use crate::signals::FrictionSettings;
use crate::smallstr::SmallStr;
use crate::state;

#[path = "py_forget.rs"]
mod forget;
#[path = "py_columns.rs"]
mod py_columns;
#[path = "py_worker.rs"]
mod worker; // functions for the Kafka worker's engine

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
    channel_of: FastMap<String, String>,
}

fn occurrences(events: Vec<EventTuple>) -> Vec<Occurrence> {
    events
        .into_iter()
        .map(|(ts, event_id, touchpoint, channel)| Occurrence {
            ts,
            event_id: event_id.into(),
            touchpoint: touchpoint.into(),
            channel: channel.into(),
        })
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
        Ok(PyJourney { inner, channel_of: channel_of.into_iter().collect() })
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
        let path: Vec<&str> = events.iter().map(|e| &*e.touchpoint).collect();
        let moves = self.inner.align(&path, end_state);
        Ok(deviation_tuples(self.inner.deviations_of(&events, &moves, &self.channel_of)))
    }

    /// deviations() for many instances; returns the number of deviations (for measurements).
    fn count_deviations(&self, instances: Vec<Vec<EventTuple>>) -> usize {
        instances
            .into_iter()
            .map(|events| {
                let events = occurrences(events);
                let path: Vec<&str> = events.iter().map(|e| &*e.touchpoint).collect();
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

fn event_of_tuple(model: &mut Model, t: OccurrenceTuple) -> Event {
    let (ts, event_id, touchpoint, channel, outcome, persona, employee_id, survey_kind, survey_score) = t;
    Event {
        core: Occurrence {
            ts,
            event_id: event_id.into(),
            touchpoint: model.intern(&touchpoint),
            channel: model.intern(&channel),
        },
        outcome: outcome.map(|o| model.intern(&o)),
        persona: persona.map(|p| model.intern(&p)),
        employee_id,
        survey_kind: survey_kind.map(|k| model.intern(&k)),
        survey_score,
        id_hash: 0, // set by fold::add_event
    }
}

/// The journey engine (projections.engine.JourneyEngine) over a compiled model handed from Python.
#[pyclass(name = "Engine", module = "projections._native")]
struct PyEngine {
    inner: Engine,
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

fn cell(py: Python<'_>, column: &Column<'_>, i: usize) -> PyResult<Py<PyAny>> {
    match column {
        Column::Str(c) => obj(py, c.get(i)),
        Column::OptStr(c) => obj(py, c.get(i)),
        Column::StrList(c) => Ok(PyList::new(py, c.get(i))?.into_any().unbind()),
        Column::I64(v) => obj(py, v[i]),
        Column::OptI64(c) => obj(py, c.get(i)),
        Column::I16(v) => obj(py, v[i]),
        Column::U8(v) => obj(py, v[i]),
        Column::U16(v) => obj(py, v[i]),
        Column::U32(v) => obj(py, v[i]),
        Column::U64(v) => obj(py, v[i]),
        Column::F64(v) => obj(py, v[i]),
    }
}

/// Rows `from[t]..to[t]` of each table as {table name: [row tuple, ...]}, with only the tables
/// that have rows (as RowBatch.rows).
fn row_tuples<'py>(py: Python<'py>, rows: &Rows, from: RowEnds, to: RowEnds) -> PyResult<Bound<'py, PyDict>> {
    let out = PyDict::new(py);
    for (t, (name, _, columns)) in rows.tables().into_iter().enumerate() {
        if from[t] == to[t] {
            continue;
        }
        let mut list = Vec::with_capacity(to[t] - from[t]);
        for i in from[t]..to[t] {
            let cells = columns.iter().map(|c| cell(py, c, i)).collect::<PyResult<Vec<_>>>()?;
            list.push(PyTuple::new(py, cells)?);
        }
        out.set_item(name, list)?;
    }
    Ok(out)
}

fn bytes_of<T: Copy>(py: Python<'_>, values: &[T]) -> Py<PyAny> {
    // SAFETY: T is a plain integer or float: any initialised T is also initialised bytes.
    let raw =
        unsafe { std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values)) };
    PyBytes::new(py, raw).into_any().unbind()
}

/// Arrow validity bitmap (least significant bit first), or None when every value is present.
fn validity(py: Python<'_>, valid: &[bool]) -> Option<Py<PyAny>> {
    if valid.iter().all(|&v| v) {
        return None;
    }
    let mut bits = vec![0u8; valid.len().div_ceil(8)];
    for (i, _) in valid.iter().enumerate().filter(|(_, &v)| v) {
        bits[i / 8] |= 1 << (i % 8);
    }
    Some(PyBytes::new(py, &bits).into_any().unbind())
}

/// One column as (type tag, validity or None, buffers...) in Arrow's layout.
fn column_buffers(py: Python<'_>, column: &Column<'_>) -> PyResult<Py<PyAny>> {
    let none = || py.None();
    let tuple: Vec<Py<PyAny>> = match column {
        Column::Str(c) => vec![obj(py, "str")?, none(), bytes_of(py, &c.offsets), bytes_of(py, &c.data)],
        Column::OptStr(c) => vec![
            obj(py, "str")?,
            validity(py, &c.valid).unwrap_or_else(none),
            bytes_of(py, &c.values.offsets),
            bytes_of(py, &c.values.data),
        ],
        Column::StrList(c) => vec![
            obj(py, "list<str>")?,
            none(),
            bytes_of(py, &c.offsets),
            bytes_of(py, &c.values.offsets),
            bytes_of(py, &c.values.data),
        ],
        Column::I64(v) => vec![obj(py, "i64")?, none(), bytes_of(py, v)],
        Column::OptI64(c) => {
            vec![obj(py, "i64")?, validity(py, &c.valid).unwrap_or_else(none), bytes_of(py, &c.values)]
        }
        Column::I16(v) => vec![obj(py, "i16")?, none(), bytes_of(py, v)],
        Column::U8(v) => vec![obj(py, "u8")?, none(), bytes_of(py, v)],
        Column::U16(v) => vec![obj(py, "u16")?, none(), bytes_of(py, v)],
        Column::U32(v) => vec![obj(py, "u32")?, none(), bytes_of(py, v)],
        Column::U64(v) => vec![obj(py, "u64")?, none(), bytes_of(py, v)],
        Column::F64(v) => vec![obj(py, "f64")?, none(), bytes_of(py, v)],
    };
    Ok(PyTuple::new(py, tuple)?.into_any().unbind())
}

#[pymethods]
impl PyEngine {
    #[new]
    #[allow(clippy::too_many_arguments)] // the compiled model, field by field, as Python hands it over
    fn new(
        scenario: String,
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
            by_persona: by_persona.into_iter().collect(),
            default_persona,
            channel_of: channel_of.into_iter().collect(),
            owner_of: owner_of.into_iter().collect(),
            allowed_lateness,
            friction: FrictionSettings { repeat_window, escalation_lookback, survey_lookback },
            names: Default::default(),
        };
        Ok(PyEngine { inner: Engine::new(model, scenario) })
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
            core: Occurrence {
                ts,
                event_id: event_id.into(),
                touchpoint: self.inner.model.intern(&touchpoint),
                channel: self.inner.model.intern(&channel),
            },
            outcome: outcome.map(|o| self.inner.model.intern(&o)),
            persona: persona.map(|p| self.inner.model.intern(&p)),
            employee_id,
            survey_kind: survey_kind.map(|k| self.inner.model.intern(&k)),
            survey_score,
            id_hash: 0, // set by fold::add_event
        };
        let extras = EventExtras {
            customer_id: &customer_id,
            survey_comment: survey_comment.as_deref(),
            attributes: &attributes,
            source: source.as_deref(),
        };
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
            let (survey_kind, survey_score, survey_comment) = match &e.survey {
                Some(survey) => {
                    let kind = self.inner.model.intern(survey.kind);
                    (Some(kind), Some(survey.score), survey.comment.as_deref())
                }
                None => (None, None, None),
            };
            let attributes = match &e.attributes {
                Some(bytes) => {
                    std::str::from_utf8(bytes).map_err(|err| PyValueError::new_err(err.to_string()))?
                }
                None => "{}",
            };
            let event = Event {
                core: Occurrence {
                    ts,
                    event_id: SmallStr::from(e.event_id.as_ref()),
                    touchpoint: self.inner.model.intern(&e.touchpoint),
                    channel: self.inner.model.intern(&e.channel),
                },
                outcome: e.outcome.map(|o| self.inner.model.intern(o)),
                persona: e.persona.as_deref().map(|p| self.inner.model.intern(p)),
                employee_id: e.employee_id.as_deref().map(str::to_owned),
                survey_kind,
                survey_score,
                id_hash: 0, // set by fold::add_event
            };
            let extras = EventExtras {
                customer_id: &e.customer_id,
                survey_comment,
                attributes,
                source: e.source.as_deref(),
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
        let all = rows.tables().map(|(_, n, _)| n);
        row_tuples(py, &rows, [0; 6], all)
    }

    /// drain() without handing the rows to Python: how many there were (for measurements).
    fn drain_count(&mut self) -> usize {
        let rows = self.inner.drain();
        let n = rows.len();
        self.inner.recycle(rows);
        n
    }

    /// drain() as Arrow column buffers: {table: (rows, [(type, validity, buffers...), ...])} for
    /// the tables with rows, columns in the table's order.
    fn drain_columns<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let rows = self.inner.drain();
        let out = PyDict::new(py);
        for (name, n, columns) in rows.tables() {
            if n > 0 {
                let buffers = columns.iter().map(|c| column_buffers(py, c)).collect::<PyResult<Vec<_>>>()?;
                out.set_item(name, (n, buffers))?;
            }
        }
        self.inner.recycle(rows);
        Ok(out)
    }

    /// Per customer changed since the last drain: (customer_id, {table: [row, ...]}).
    fn drain_updates<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<(String, Bound<'py, PyDict>)>> {
        let (rows, ends) = self.inner.drain_updates();
        let mut out = Vec::with_capacity(ends.len());
        let mut from = [0; 6];
        for (customer, to) in ends {
            out.push((customer.to_string(), row_tuples(py, &rows, from, to)?));
            from = to;
        }
        Ok(out)
    }

    /// drain_updates with each changed customer's state after its rows:
    /// (customer_id, {table: [row, ...]}, state bytes (projections.state_codec's), revision).
    #[allow(clippy::type_complexity)] // one tuple per customer, as Python unpacks it
    fn drain_states<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<Vec<(String, Bound<'py, PyDict>, Bound<'py, PyBytes>, u64)>> {
        let mut states = Vec::new();
        let (rows, ends) = self.inner.drain_changed(Some(&mut states));
        let mut out = Vec::with_capacity(ends.len());
        let (mut from, mut start) = ([0; 6], 0);
        for (customer, to, end) in ends {
            let revision = self.inner.state(&customer).map_or(0, |s| s.revision);
            let raw = PyBytes::new(py, &states[start..end]);
            out.push((customer.to_string(), row_tuples(py, &rows, from, to)?, raw, revision));
            (from, start) = (to, end);
        }
        self.inner.recycle(rows);
        Ok(out)
    }

    /// drain() with the changed customers' states: ({table: [row, ...]}, [(customer_id, state
    /// bytes, revision), ...]).
    #[allow(clippy::type_complexity)] // the rows and one tuple per customer, as Python unpacks them
    fn drain_kept<'py>(
        &mut self,
        py: Python<'py>,
    ) -> PyResult<(Bound<'py, PyDict>, Vec<(String, Bound<'py, PyBytes>, u64)>)> {
        let mut states = Vec::new();
        let (rows, ends) = self.inner.drain_changed(Some(&mut states));
        let all = rows.tables().map(|(_, n, _)| n);
        let tables = row_tuples(py, &rows, [0; 6], all)?;
        let mut out = Vec::with_capacity(ends.len());
        let mut start = 0;
        for (customer, _, end) in ends {
            let revision = self.inner.state(&customer).map_or(0, |s| s.revision);
            out.push((customer.to_string(), PyBytes::new(py, &states[start..end]), revision));
            start = end;
        }
        self.inner.recycle(rows);
        Ok((tables, out))
    }

    /// Take over kept customer states (projections.state_codec's bytes); ValueError on bytes
    /// that are not one, or name a journey this model lacks (nothing is restored then).
    fn restore(&mut self, raws: Vec<Bound<'_, PyBytes>>) -> PyResult<usize> {
        let model = &mut self.inner.model;
        let states = raws
            .iter()
            .map(|raw| state::decode(raw.as_bytes(), model))
            .collect::<Result<Vec<_>, _>>()
            .map_err(PyValueError::new_err)?;
        let n = states.len();
        for one in states {
            self.inner.restore(one);
        }
        Ok(n)
    }

    /// One customer's state as projections.state_codec encodes it, if the engine holds it.
    fn state_of<'py>(&self, py: Python<'py>, customer_id: &str) -> Option<Bound<'py, PyBytes>> {
        let held = self.inner.state(customer_id)?;
        let mut out = Vec::new();
        state::encode(held, &self.inner.model, &mut out);
        Some(PyBytes::new(py, &out))
    }

    /// Fold and render one customer's recorded events: ({table: [row, ...]}, duplicates).
    fn replay_customer<'py>(
        &mut self,
        py: Python<'py>,
        customer_id: &str,
        events: Vec<OccurrenceTuple>,
    ) -> PyResult<(Bound<'py, PyDict>, usize)> {
        let mut rows = Rows::default();
        let model = &mut self.inner.model;
        let events = events.into_iter().map(|t| event_of_tuple(model, t)).collect();
        let duplicates = self.inner.replay_customer(customer_id, events, &mut rows);
        let all = rows.tables().map(|(_, n, _)| n);
        Ok((row_tuples(py, &rows, [0; 6], all)?, duplicates))
    }

    /// replay_customer for many customers, rendered as drain_columns renders: ({table: (rows,
    /// columns)}, duplicates), no Python object per row. Each customer's events come in order.
    fn replay_columns<'py>(
        &mut self,
        py: Python<'py>,
        customers: Vec<(String, Vec<OccurrenceTuple>)>,
    ) -> PyResult<(Bound<'py, PyDict>, usize)> {
        let mut rows = Rows::default();
        let mut duplicates = 0;
        for (customer_id, events) in customers {
            let model = &mut self.inner.model;
            let events = events.into_iter().map(|t| event_of_tuple(model, t)).collect();
            duplicates += self.inner.replay_customer(&customer_id, events, &mut rows);
        }
        let out = PyDict::new(py);
        for (name, n, columns) in rows.tables() {
            if n > 0 {
                let buffers = columns.iter().map(|c| column_buffers(py, c)).collect::<PyResult<Vec<_>>>()?;
                out.set_item(name, (n, buffers))?;
            }
        }
        Ok((out, duplicates))
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

    /// (customers with an open instance, bytes of their encoded states).
    fn open_state_bytes(&self) -> (usize, usize) {
        self.inner.open_state_bytes()
    }

    /// Bytes the engine's customer states hold in memory (Engine::resident_state_bytes).
    fn resident_state_bytes(&self, open_only: bool) -> usize {
        self.inner.resident_state_bytes(open_only)
    }
}

/// The module `projections._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_event, m)?)?;
    m.add_function(wrap_pyfunction!(check_events, m)?)?;
    m.add_class::<PyJourney>()?;
    m.add_class::<PyEngine>()?;
    m.add_function(wrap_pyfunction!(py_columns::drain_kept_columns, m)?)?;
    m.add("MAX_EVENT_BYTES", event::MAX_EVENT_BYTES)?;
    worker::register(m)?;
    forget::register(m)?;
    Ok(())
}
