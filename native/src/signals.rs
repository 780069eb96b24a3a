//! Friction, delight and support-contact attribution of one journey instance: a port of
//! projections/signals.py.

use std::collections::BTreeMap;

use crate::alignment::Deviation;
use crate::fold::Event;

pub const SUPPORT_CHANNEL: &str = "support";

/// Windows used to derive friction signals and attribution (projections.journeys.FrictionSettings).
#[derive(Debug, Clone, Copy)]
pub struct FrictionSettings {
    pub repeat_window: i64,
    pub escalation_lookback: i64,
    pub survey_lookback: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct FrictionSignal {
    pub kind: &'static str,
    pub touchpoint: String,
    pub weight: f64,
    pub ts: i64,
    pub event_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DelightSignal {
    pub touchpoint: String,
    pub employee_id: Option<String>,
    pub survey_kind: String,
    pub score: i64,
    pub ts: i64,
    pub event_ids: Vec<String>,
}

/// A support contact (index into the events) and the upstream event that most likely caused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribution {
    pub support: usize,
    pub upstream: Option<usize>,
    pub rule: &'static str,
}

/// -1 for a poor score (CSAT<=2, NPS<=6, CES>=5), +1 for a good one (CSAT>=4, NPS>=9, CES<=2), else 0.
pub fn survey_sentiment(kind: &str, score: i64) -> i32 {
    let (poor, good) = match kind {
        "csat" => (score <= 2, score >= 4),
        "nps" => (score <= 6, score >= 9),
        _ => (score >= 5, score <= 2),
    };
    if poor {
        -1
    } else if good {
        1
    } else {
        0
    }
}

fn sentiment_of(event: &Event) -> Option<i32> {
    match (&event.survey_kind, event.survey_score) {
        (Some(kind), Some(score)) => Some(survey_sentiment(kind, score)),
        _ => None,
    }
}

/// Each support contact's most recent failing or deviating touchpoint in the look-back window,
/// else the last touchpoint before it.
pub fn attribute_support(
    events: &[Event],
    deviating: &dyn Fn(&str) -> bool,
    settings: &FrictionSettings,
) -> Vec<Attribution> {
    let mut out = Vec::new();
    for (position, event) in events.iter().enumerate() {
        if &*event.core.channel != SUPPORT_CHANNEL {
            continue;
        }
        let in_window = |earlier: &&Event| {
            &*earlier.core.channel != SUPPORT_CHANNEL
                && earlier.survey_kind.is_none()
                && event.core.ts - earlier.core.ts <= settings.escalation_lookback
        };
        let mut chosen = None;
        let mut rule = "no_upstream";
        let mut last_in_window = None;
        for (index, earlier) in events[..position].iter().enumerate().rev() {
            if !in_window(&earlier) {
                continue;
            }
            last_in_window.get_or_insert(index);
            if earlier.outcome.as_deref() == Some("failure") {
                chosen = Some(index);
                rule = "failure_in_lookback";
                break;
            }
            if deviating(&earlier.core.event_id) {
                chosen = Some(index);
                rule = "deviation_in_lookback";
                break;
            }
        }
        if chosen.is_none() && last_in_window.is_some() {
            chosen = last_in_window;
            rule = "last_touchpoint";
        }
        out.push(Attribution { support: position, upstream: chosen, rule });
    }
    out
}

fn signal(kind: &'static str, touchpoint: &str, ts: i64, event_ids: Vec<String>) -> FrictionSignal {
    // Every kind weighs 1.0 but a repeat (0.5); negative surveys share 1.0 among touchpoints.
    let weight = if kind == "repeat" { 0.5 } else { 1.0 };
    FrictionSignal { kind, touchpoint: touchpoint.to_string(), weight, ts, event_ids }
}

/// Every friction signal of one instance, in the reference's order.
pub fn friction_of(
    events: &[Event],
    deviations: &[Deviation],
    attributions: &[Attribution],
    abandoned: bool,
    settings: &FrictionSettings,
) -> Vec<FrictionSignal> {
    let mut out = Vec::new();
    let mut previous: Option<&Event> = None;
    for (position, event) in events.iter().enumerate() {
        let core = &event.core;
        if event.outcome.as_deref() == Some("failure") {
            out.push(signal("failure", &core.touchpoint, core.ts, vec![core.event_id.to_string()]));
        }
        if let Some(previous) = previous {
            if previous.core.touchpoint == core.touchpoint
                && core.ts - previous.core.ts <= settings.repeat_window
            {
                let ids = vec![previous.core.event_id.to_string(), core.event_id.to_string()];
                out.push(signal("repeat", &core.touchpoint, core.ts, ids));
            }
        }
        if sentiment_of(event).is_some_and(|s| s < 0) {
            negative_survey(events, position, settings, &mut out);
        }
        previous = Some(event);
    }
    for deviation in deviations.iter().filter(|d| d.kind == "time_budget_exceeded") {
        out.push(signal("stall", &deviation.touchpoint, deviation.ts, deviation.event_ids.clone()));
    }
    for item in attributions {
        if let Some(upstream) = item.upstream {
            let (upstream, support) = (&events[upstream].core, &events[item.support].core);
            let ids = vec![upstream.event_id.to_string(), support.event_id.to_string()];
            out.push(signal("escalation", &upstream.touchpoint, support.ts, ids));
        }
    }
    if abandoned {
        if let Some(fallback) = events.last() {
            // A closing support contact or survey is a symptom: blame the touchpoint before them.
            let last = events
                .iter()
                .rev()
                .find(|e| &*e.core.channel != SUPPORT_CHANNEL && e.survey_kind.is_none())
                .unwrap_or(fallback);
            out.push(signal(
                "abandonment",
                &last.core.touchpoint,
                last.core.ts,
                vec![last.core.event_id.to_string()],
            ));
        }
    }
    out
}

fn negative_survey(
    events: &[Event],
    position: usize,
    settings: &FrictionSettings,
    out: &mut Vec<FrictionSignal>,
) {
    let survey = &events[position].core;
    // The latest occurrence of each touchpoint, in touchpoint order (as sorted(dict.items())).
    let mut before: BTreeMap<&str, &Event> = BTreeMap::new();
    for earlier in &events[..position] {
        if earlier.survey_kind.is_none() && survey.ts - earlier.core.ts <= settings.survey_lookback {
            before.insert(&earlier.core.touchpoint, earlier);
        }
    }
    if before.is_empty() {
        return;
    }
    let share = 1.0 / before.len() as f64;
    for (touchpoint, earlier) in before {
        out.push(FrictionSignal {
            kind: "negative_survey",
            touchpoint: touchpoint.to_string(),
            weight: share,
            ts: survey.ts,
            event_ids: vec![earlier.core.event_id.to_string(), survey.event_id.to_string()],
        });
    }
}

/// Positive surveys, attributed to the last touchpoint before them and its associate.
pub fn delight_of(events: &[Event], settings: &FrictionSettings) -> Vec<DelightSignal> {
    let mut out = Vec::new();
    for (position, event) in events.iter().enumerate() {
        let (Some(kind), Some(score)) = (&event.survey_kind, event.survey_score) else { continue };
        if survey_sentiment(kind, score) <= 0 {
            continue;
        }
        let earlier = events[..position]
            .iter()
            .rev()
            .find(|c| c.survey_kind.is_none() && event.core.ts - c.core.ts <= settings.survey_lookback);
        let target = earlier.unwrap_or(event);
        // `event.employee_id or earlier.employee_id`: an empty id is falsy there too.
        let employee = match &event.employee_id {
            Some(id) if !id.is_empty() => Some(id.clone()),
            _ => earlier.and_then(|e| e.employee_id.clone()),
        };
        let ids = match earlier {
            Some(earlier) => vec![earlier.core.event_id.to_string(), event.core.event_id.to_string()],
            None => vec![event.core.event_id.to_string()],
        };
        out.push(DelightSignal {
            touchpoint: target.core.touchpoint.to_string(),
            employee_id: employee,
            survey_kind: kind.to_string(),
            score,
            ts: event.core.ts,
            event_ids: ids,
        });
    }
    out
}
