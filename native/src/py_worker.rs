//! Python functions of `projections._native` for the Kafka worker's engine (registered by py.rs):
//! lateness per partition from the start, and a partition's run of raw records folded in one call.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use super::{PyEngine, FEED_FALLBACK, FEED_REJECTED};
use crate::alignment::Occurrence;
use crate::engine::partitioned::home_partition;
use crate::engine::EventExtras;
use crate::event;
use crate::fold::{Event, Placement};
use crate::smallstr::SmallStr;

const FEED_TOO_LATE: u8 = 2; // refused by the engine as too late: nothing changed, counted as bad
const FEED_MISPLACED: u8 = 3; // its customer's home is another partition: not folded, not counted

/// What feed_partition hands back for one record that was not simply folded: (index, code,
/// (reason, detail, field) for FEED_REJECTED (not counted), (customer id, home partition) for FEED_MISPLACED).
type Exception = (usize, u8, Option<(&'static str, String, Option<String>)>, Option<(String, i32)>);
/// (exceptions, (received, accepted, duplicates, bad), the customer of each folded record, the
/// partition's stream time after the run).
type PartitionFeed = (Vec<Exception>, (usize, usize, usize, usize), Vec<String>, Option<i64>);

/// Engine.mark_partitioned: lateness per customer's own input partition from now on.
#[pyfunction]
fn mark_partitioned(engine: &Bound<'_, PyEngine>) {
    engine.borrow_mut().inner.mark_partitioned();
}

/// murmur2 home partition of a customer id (for tests against the Python partitioner).
#[pyfunction]
fn home_of(customer_id: &str, partitions: i32) -> i32 {
    home_partition(customer_id, partitions)
}

/// Decode, check and fold, in order, consecutive raw records of one input partition, as the
/// worker's Intake.offer(raw, source, offset, partition) does record by record: the partition's
/// stream time (`stream_time`, its latest event time) rises with every record that passes the
/// contract, and each accepted event is folded with it. With `partitions`, a record whose customer
/// hashes (murmur2) to another partition is not folded (FEED_MISPLACED: the caller sends it home).
/// Records the full path must judge (future, too deep, registry or persona) come back as
/// FEED_FALLBACK, neither folded nor counted; they change no journey, so the caller offers them
/// after the run.
#[pyfunction]
#[pyo3(signature = (engine, lines, partition, partitions, stream_time, not_after_ms, max_depth))]
#[allow(clippy::too_many_arguments)]
fn feed_partition(
    engine: &Bound<'_, PyEngine>,
    lines: &Bound<'_, PyList>,
    partition: i32,
    partitions: Option<i32>,
    mut stream_time: Option<i64>,
    not_after_ms: Option<i64>,
    max_depth: usize,
) -> PyResult<PartitionFeed> {
    let mut this = engine.borrow_mut();
    let inner = &mut this.inner;
    let mut exceptions = Vec::new();
    let mut customers = Vec::with_capacity(lines.len());
    let (mut received, mut accepted, mut duplicates, mut bad) = (0usize, 0usize, 0usize, 0usize);
    for (index, item) in lines.iter().enumerate() {
        let raw = item.cast::<PyBytes>()?;
        let e = match event::check_event(raw.as_bytes()) {
            Ok(e) => e,
            Err(r) => {
                // Not counted: the caller quarantines it, or sends it home if it names a customer
                // of another partition (the full path looks at the customer before the contract).
                exceptions.push((index, FEED_REJECTED, Some((r.reason, r.detail, r.field)), None));
                continue;
            }
        };
        if let Some(partitions) = partitions {
            let home = home_partition(&e.customer_id, partitions);
            if home != partition {
                exceptions.push((index, FEED_MISPLACED, None, Some((e.customer_id.into_owned(), home))));
                continue;
            }
        }
        let ts = e.occurred_ms();
        if !(not_after_ms.is_none_or(|bound| ts <= bound)
            && e.attributes.as_deref().is_none_or(|a| event::json_depth(a) < max_depth))
        {
            // The contract refuses it in the full path: the stream time does not see it.
            exceptions.push((index, FEED_FALLBACK, None, None));
            continue;
        }
        // Past the contract: the partition's time sees it, whatever the registry says.
        stream_time = Some(stream_time.map_or(ts, |known| known.max(ts)));
        let model = &inner.model;
        if !(model.channel_of.get(e.touchpoint.as_ref()).is_some_and(|c| *c == e.channel)
            && e.persona.as_deref().is_none_or(|p| model.by_persona.contains_key(p)))
        {
            exceptions.push((index, FEED_FALLBACK, None, None));
            continue;
        }
        let (survey_kind, survey_score, survey_comment) = match &e.survey {
            Some(survey) => {
                let kind = inner.model.intern(survey.kind);
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
                touchpoint: inner.model.intern(&e.touchpoint),
                channel: inner.model.intern(&e.channel),
            },
            outcome: e.outcome.map(|o| inner.model.intern(o)),
            persona: e.persona.as_deref().map(|p| inner.model.intern(p)),
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
        received += 1;
        match inner.accept(event, extras, stream_time) {
            Placement::TooLate => {
                bad += 1;
                exceptions.push((index, FEED_TOO_LATE, None, None));
            }
            placement => {
                accepted += 1;
                duplicates += usize::from(placement == Placement::Duplicate);
                customers.push(e.customer_id.to_string());
            }
        }
    }
    Ok((exceptions, (received, accepted, duplicates, bad), customers, stream_time))
}

/// Add this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mark_partitioned, m)?)?;
    m.add_function(wrap_pyfunction!(home_of, m)?)?;
    m.add_function(wrap_pyfunction!(feed_partition, m)?)
}
