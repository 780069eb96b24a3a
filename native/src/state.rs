//! A customer's journey state as bytes, byte for byte what projections/state_codec.py writes
//! (orjson's compact JSON, format 2; format 1 is read too), so either engine resumes the other's
//! kept states.

use std::sync::Arc;

use crate::alignment::Occurrence;
use crate::fold::{hash_id, instance_id_of, Closure, CustomerState, Event, Instance, Model, NEVER};
use crate::json::{self, JVal};
use crate::smallstr::SmallStr;

pub const FORMAT: i64 = 2;

/// The channel an event of this touchpoint has unless it says otherwise ("web" of "web.cart").
fn prefix(touchpoint: &str) -> &str {
    touchpoint.split_once('.').map_or(touchpoint, |(head, _)| head)
}

fn push_time(out: &mut Vec<u8>, value: i64) {
    if value == NEVER {
        out.extend_from_slice(b"null");
    } else {
        push_int(out, value);
    }
}

fn push_int(out: &mut Vec<u8>, value: impl ToString) {
    out.extend_from_slice(value.to_string().as_bytes());
}

fn push_opt_str(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        Some(text) => json::dump_str(text, out),
        None => out.extend_from_slice(b"null"),
    }
}

fn closure_of(text: &str) -> Option<Closure> {
    [Closure::FinalStep, Closure::NextJourney, Closure::Idle, Closure::Timeout]
        .into_iter()
        .find(|c| c.as_str() == text)
}

/// Serialise a customer's state (encode_state): event times are deltas from the previous event.
pub fn encode(state: &CustomerState, model: &Model, out: &mut Vec<u8>) {
    out.push(b'[');
    push_int(out, FORMAT);
    out.push(b',');
    json::dump_str(&state.customer_id, out);
    out.push(b',');
    push_time(out, state.frontier);
    out.push(b',');
    push_opt_str(out, state.persona_before.as_deref());
    out.push(b',');
    push_int(out, state.revision);
    out.push(b',');
    push_int(out, state.events_accepted);
    out.push(b',');
    push_time(out, state.stream_time);
    out.extend_from_slice(b",[");
    let mut previous_ts = 0i64;
    for (n, instance) in state.instances.iter().enumerate() {
        if n > 0 {
            out.push(b',');
        }
        let journey = &model.journeys[instance.journey];
        out.push(b'[');
        json::dump_str(&format!("{}@{}", journey.id, journey.version), out);
        out.push(b',');
        json::dump_str(&instance.persona, out);
        out.push(b',');
        push_opt_str(out, instance.closure.map(Closure::as_str));
        out.push(b',');
        out.push(b'[');
        for (i, count) in instance.emitted.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            push_int(out, count);
        }
        out.extend_from_slice(b"],");
        out.extend_from_slice(if instance.written { b"true" } else { b"false" });
        out.extend_from_slice(b",[");
        for (i, event) in instance.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'[');
            push_int(out, event.core.ts - previous_ts);
            previous_ts = event.core.ts;
            out.push(b',');
            json::dump_str(&event.core.event_id, out);
            out.push(b',');
            json::dump_str(&event.core.touchpoint, out);
            // [.., outcome, persona, employee_id, survey_kind, survey_score, channel]: the
            // channel null when it is the touchpoint's prefix, trailing nulls left out.
            let channel = &*event.core.channel;
            let channel = (channel != prefix(&event.core.touchpoint)).then_some(channel);
            let score = event.survey_score.map(|s| s.to_string());
            let rest = [
                event.outcome.as_deref(),
                event.persona.as_deref(),
                event.employee_id.as_deref(),
                event.survey_kind.as_deref(),
            ];
            let present = [rest[0], rest[1], rest[2], rest[3], score.as_deref(), channel];
            let kept = present.iter().rposition(Option::is_some).map_or(0, |n| n + 1);
            for (n, field) in present[..kept].iter().enumerate() {
                out.push(b',');
                match (n, field) {
                    (4, Some(score)) => out.extend_from_slice(score.as_bytes()),
                    (_, field) => push_opt_str(out, *field),
                }
            }
            out.push(b']');
        }
        out.extend_from_slice(b"]]");
    }
    out.extend_from_slice(b"]]");
}

type Res<T> = Result<T, String>;

fn bad(what: &str) -> String {
    format!("malformed journey state: {what}")
}

fn array<'v, 'a>(value: &'v JVal<'a>, len: Option<usize>, what: &str) -> Res<&'v [JVal<'a>]> {
    match value {
        JVal::Array(items) if len.is_none_or(|n| items.len() == n) => Ok(items),
        _ => Err(bad(what)),
    }
}

fn int(value: &JVal<'_>, what: &str) -> Res<i64> {
    match value {
        JVal::Int(v) => Ok(*v),
        _ => Err(bad(what)),
    }
}

fn uint(value: &JVal<'_>, what: &str) -> Res<u64> {
    match value {
        JVal::Int(v) if *v >= 0 => Ok(*v as u64),
        JVal::BigInt(text) => text.parse().map_err(|_| bad(what)),
        _ => Err(bad(what)),
    }
}

fn text<'v>(value: &'v JVal<'_>, what: &str) -> Res<&'v str> {
    match value {
        JVal::Str(s) => Ok(s),
        _ => Err(bad(what)),
    }
}

fn opt_text<'v>(value: &'v JVal<'_>, what: &str) -> Res<Option<&'v str>> {
    match value {
        JVal::Null => Ok(None),
        JVal::Str(s) => Ok(Some(s)),
        _ => Err(bad(what)),
    }
}

fn time(value: &JVal<'_>, what: &str) -> Res<i64> {
    match value {
        JVal::Null => Ok(NEVER),
        other => int(other, what),
    }
}

static NULL: JVal<'static> = JVal::Null;

/// An event's fields in format 1's order: [delta, event_id, touchpoint, channel, outcome,
/// persona, employee_id, survey_kind, survey_score] (format 2 moves the channel last and may
/// leave out trailing nulls; a null channel there is the touchpoint's prefix, as None here).
fn event_fields<'v, 'a>(version: i64, event: &'v JVal<'a>) -> Res<[&'v JVal<'a>; 9]> {
    if version == 1 {
        let e = array(event, Some(9), "event")?;
        return Ok(std::array::from_fn(|n| &e[n]));
    }
    let e = array(event, None, "event")?;
    if !(3..=9).contains(&e.len()) {
        return Err(bad("event"));
    }
    let at = |n: usize| e.get(n).unwrap_or(&NULL);
    Ok([at(0), at(1), at(2), at(8), at(3), at(4), at(5), at(6), at(7)])
}

/// Rebuild a customer's state (decode_state); alignment costs are recomputed by folding the
/// events again, instances are clean (their rows were written by whoever kept the state).
pub fn decode(raw: &[u8], model: &mut Model) -> Res<CustomerState> {
    let value = json::parse(raw).map_err(|e| bad(&e.describe(raw)))?;
    let top = array(&value, None, "not an array")?;
    let version = int(top.first().unwrap_or(&JVal::Null), "no format")?;
    if version != 1 && version != FORMAT {
        return Err(format!("unknown journey state format {version}"));
    }
    if top.len() != 8 {
        return Err(bad("not an 8-item array"));
    }
    let mut state = CustomerState::new(Arc::from(text(&top[1], "customer_id")?));
    state.frontier = time(&top[2], "frontier")?;
    state.persona_before = opt_text(&top[3], "persona_before")?.map(|p| model.intern(p));
    state.revision = uint(&top[4], "revision")?;
    state.events_accepted = uint(&top[5], "events_accepted")?;
    state.stream_time = time(&top[6], "stream_time")?;
    let mut previous_ts = 0i64;
    for item in array(&top[7], None, "instances")? {
        let fields = array(item, Some(6), "instance")?;
        let key = text(&fields[0], "journey key")?;
        // The last journey of a key wins, as in the reference's dict.
        let journey = (0..model.journeys.len())
            .rev()
            .find(|&j| {
                let spec = &model.journeys[j];
                key.strip_prefix(spec.id.as_str())
                    .and_then(|rest| rest.strip_prefix('@'))
                    .is_some_and(|v| v == spec.version.to_string())
            })
            .ok_or_else(|| format!("journey state names unknown journey {key}"))?;
        let closure = match opt_text(&fields[2], "closure")? {
            None => None,
            Some(name) => Some(closure_of(name).ok_or_else(|| bad("closure"))?),
        };
        let emitted = array(&fields[3], Some(3), "emitted")?;
        let mut counts = [0usize; 3];
        for (slot, value) in counts.iter_mut().zip(emitted) {
            *slot = uint(value, "emitted")? as usize;
        }
        let written = match fields[4] {
            JVal::Bool(b) => b,
            _ => return Err(bad("written")),
        };
        let events = array(&fields[5], None, "events")?;
        if events.is_empty() {
            return Err(bad("an instance without events"));
        }
        let (mut base, mut relative) = model.journeys[journey].core.start();
        let mut goal_reached = false;
        let mut kept = Vec::with_capacity(events.len());
        for event in events {
            let e = event_fields(version, event)?;
            previous_ts += int(e[0], "event time")?;
            let touchpoint = text(e[2], "touchpoint")?;
            let spec = &mut model.journeys[journey];
            (base, relative) = spec.core.advance_cached((base, relative), touchpoint);
            goal_reached = goal_reached || spec.goal.contains(touchpoint);
            let event_id = SmallStr::from(text(e[1], "event_id")?);
            let survey_score = match e[8] {
                JVal::Null => None,
                other => Some(int(other, "survey_score")?),
            };
            let channel = opt_text(e[3], "channel")?.unwrap_or_else(|| prefix(touchpoint));
            kept.push(Event {
                id_hash: hash_id(&event_id),
                core: Occurrence {
                    ts: previous_ts,
                    event_id,
                    touchpoint: model.intern(touchpoint),
                    channel: model.intern(channel),
                },
                outcome: opt_text(e[4], "outcome")?.map(|o| model.intern(o)),
                persona: opt_text(e[5], "persona")?.map(|p| model.intern(p)),
                employee_id: opt_text(e[6], "employee_id")?.map(str::to_string),
                survey_kind: opt_text(e[7], "survey_kind")?.map(|k| model.intern(k)),
                survey_score,
            });
        }
        state.instances.push(Instance {
            instance_id: instance_id_of(&state.customer_id, &kept[0].core.event_id),
            journey,
            persona: model.intern(text(&fields[1], "persona")?),
            events: kept,
            base,
            relative,
            goal_reached,
            closure,
            emitted: counts,
            written,
            dirty: false,
        });
    }
    state.reindex();
    Ok(state)
}
