//! Python bindings (module `projections._native`); the Python side wraps them in projections/native.py.

use std::collections::HashMap;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};
use pyo3::IntoPyObjectExt;

use crate::alignment::{self, Move, Occurrence, Op};
use crate::event;

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

/// The module `projections._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(check_event, m)?)?;
    m.add_function(wrap_pyfunction!(check_events, m)?)?;
    m.add_class::<PyJourney>()?;
    m.add("MAX_EVENT_BYTES", event::MAX_EVENT_BYTES)?;
    Ok(())
}
