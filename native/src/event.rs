//! Decode and validate one touchpoint event to the contract of events/codec.py + events/model.py:
//! the same accepted values, and the same typed rejection (reason, field, detail) for bad bytes.

use std::borrow::Cow;

use crate::datetime;
use crate::json::{self, JVal};

pub const MAX_EVENT_BYTES: usize = 32 * 1024;
pub const MAX_ATTRIBUTES_BYTES: usize = 8 * 1024;

pub const MALFORMED_JSON: &str = "malformed_json";
pub const SCHEMA_VIOLATION: &str = "schema_violation";
pub const OVERSIZE: &str = "oversize";

const CHANNEL_PATTERN: &str = "^[a-z][a-z0-9_]{0,31}$";
const TOUCHPOINT_PATTERN: &str = r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$";
const FIELDS: [&str; 11] = [
    "event_id",
    "customer_id",
    "occurred_at",
    "channel",
    "touchpoint",
    "persona",
    "outcome",
    "employee_id",
    "survey",
    "attributes",
    "source",
];
const SURVEY_FIELDS: [&str; 3] = ["kind", "score", "comment"];
const OUTCOMES: [&str; 3] = ["success", "failure", "abandoned"];
const SURVEY_KINDS: [(&str, i64, i64); 3] = [("csat", 1, 5), ("nps", 0, 10), ("ces", 1, 7)];

/// A survey answer on its kind's scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Survey<'a> {
    pub kind: &'static str,
    pub score: i64,
    pub comment: Option<Cow<'a, str>>,
}

/// A valid event; `attributes` is the canonical JSON of the attributes (what orjson.dumps gives).
/// Text without JSON escapes is borrowed from the input bytes (no copy on the hot path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub customer_id: Cow<'a, str>,
    pub occurred_us: i64,
    pub channel: Cow<'a, str>,
    pub touchpoint: Cow<'a, str>,
    pub persona: Option<Cow<'a, str>>,
    pub outcome: Option<&'static str>,
    pub employee_id: Option<Cow<'a, str>>,
    pub survey: Option<Survey<'a>>,
    pub attributes: Option<Vec<u8>>,
    pub source: Option<Cow<'a, str>>,
}

impl Event<'_> {
    /// Event time in whole milliseconds since the epoch (floor, like TouchpointEvent.occurred_ms).
    pub fn occurred_ms(&self) -> i64 {
        self.occurred_us.div_euclid(1000)
    }
}

/// Nesting depth of canonical JSON bytes (events.codec.json_depth: a scalar is 0, `{}` is 1).
pub fn json_depth(canonical: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in canonical {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A typed verdict on one bad record, as events.errors.Rejection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub detail: String,
    pub field: Option<String>,
}

type Errors = Vec<(Option<String>, String)>;

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn is_channel(text: &str) -> bool {
    let bytes = text.as_bytes();
    matches!(bytes.first(), Some(b'a'..=b'z'))
        && bytes.len() <= 32
        && bytes[1..].iter().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

fn is_touchpoint(text: &str) -> bool {
    let word = |part: &str| part.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'));
    let mut parts = text.split('.');
    let head = parts.next().unwrap_or("");
    let mut tail = 0;
    for part in parts {
        if part.is_empty() || !word(part) {
            return false;
        }
        tail += 1;
    }
    tail > 0 && matches!(head.as_bytes().first(), Some(b'a'..=b'z')) && word(head)
}

/// A regular pattern as the reference prints it, and the hand-written matcher equal to it.
type Pattern = (&'static str, fn(&str) -> bool);

struct StrRule {
    min: usize,
    max: Option<usize>,
    pattern: Option<Pattern>,
}

const IDENTIFIER: StrRule = StrRule { min: 1, max: Some(128), pattern: None };

/// A string field: Ok(None) when absent or null (for optional fields), else the value or the message.
fn string_field<'a>(
    value: Option<&JVal<'a>>,
    required: bool,
    rule: &StrRule,
) -> Result<Option<Cow<'a, str>>, String> {
    let text = match value {
        None if required => return Err("Field required".into()),
        None => return Ok(None),
        Some(JVal::Null) if !required => return Ok(None),
        Some(JVal::Str(text)) => text,
        Some(_) => return Err("Input should be a valid string".into()),
    };
    // Characters, as pydantic counts them (ASCII, the usual case: one per byte).
    let length = if text.is_ascii() { text.len() } else { text.chars().count() };
    if length < rule.min {
        return Err(format!("String should have at least {}", plural(rule.min, "character")));
    }
    if let Some(max) = rule.max {
        if length > max {
            return Err(format!("String should have at most {}", plural(max, "character")));
        }
    }
    if let Some((pattern, matches)) = rule.pattern {
        if !matches(text) {
            return Err(format!("String should match pattern '{pattern}'"));
        }
    }
    Ok(Some(text.clone()))
}

fn take<T>(errors: &mut Errors, loc: &str, result: Result<Option<T>, String>) -> Option<T> {
    match result {
        Ok(value) => value,
        Err(message) => {
            errors.push((Some(loc.to_string()), message));
            None
        }
    }
}

fn enum_field(
    value: Option<&JVal>,
    choices: &[&'static str],
    message: &str,
) -> Result<Option<&'static str>, String> {
    match value {
        None | Some(JVal::Null) => Ok(None),
        Some(JVal::Str(text)) => match choices.iter().find(|c| **c == text) {
            Some(choice) => Ok(Some(choice)),
            None => Err(message.to_string()),
        },
        Some(_) => Err(message.to_string()),
    }
}

fn survey_field<'a>(value: Option<&JVal<'a>>, errors: &mut Errors) -> Option<Survey<'a>> {
    let pairs = match value {
        None | Some(JVal::Null) => return None,
        Some(JVal::Object(pairs)) => pairs,
        Some(_) => {
            errors.push((Some("survey".into()), "Input should be an object".into()));
            return None;
        }
    };
    let before = errors.len();
    // Unknown keys first, in document order (one error per occurrence), then fields in order.
    for (key, _) in pairs {
        if !SURVEY_FIELDS.contains(&key.as_ref()) {
            errors.push((Some(format!("survey.{key}")), "Extra inputs are not permitted".into()));
        }
    }
    let kind_message = "Input should be 'csat', 'nps' or 'ces'";
    let kind = match JVal::get(pairs, "kind") {
        None => {
            errors.push((Some("survey.kind".into()), "Field required".into()));
            None
        }
        value => take(
            errors,
            "survey.kind",
            enum_field(value, &["csat", "nps", "ces"], kind_message)
                .and_then(|kind| kind.ok_or_else(|| kind_message.to_string()).map(Some)),
        ),
    };
    // StrictInt: JSON integers of any size; booleans and floats are refused.
    let score = match JVal::get(pairs, "score") {
        None => {
            errors.push((Some("survey.score".into()), "Field required".into()));
            None
        }
        Some(JVal::Int(v)) => Some(v.to_string()),
        Some(JVal::BigInt(text)) => Some(text.clone()),
        Some(_) => {
            errors.push((Some("survey.score".into()), "Input should be a valid integer".into()));
            None
        }
    };
    let comment_rule = StrRule { min: 0, max: Some(4000), pattern: None };
    let comment =
        take(errors, "survey.comment", string_field(JVal::get(pairs, "comment"), false, &comment_rule));
    if errors.len() > before {
        return None;
    }
    let (kind, score) = (kind?, score?);
    let (_, low, high) = SURVEY_KINDS.iter().find(|(k, _, _)| *k == kind)?;
    match score.parse::<i64>() {
        Ok(value) if (*low..=*high).contains(&value) => Some(Survey { kind, score: value, comment }),
        _ => {
            errors.push((
                Some("survey".into()),
                format!("Value error, score {score} is outside the {kind} scale {low}..{high}"),
            ));
            None
        }
    }
}

/// Where a value holds a number JSON and ClickHouse cannot carry (events.model.unrepresentable):
/// NaN, ±Infinity (1e400 reads as infinity) or an integer outside [-2**63, 2**64). The reference
/// walks the Python dict with a stack, so the first problem it names is the one met first in a
/// pre-order walk that visits children last to first; a dict keeps each key's first position and
/// its last value.
fn unrepresentable(value: &JVal, path: &str) -> Option<String> {
    if !holds_unrepresentable(value) {
        return None; // the common case: no path text is built
    }
    describe_unrepresentable(value, path)
}

fn holds_unrepresentable(value: &JVal) -> bool {
    match value {
        JVal::Float(v) => !v.is_finite(),
        JVal::BigInt(text) => text.parse::<u64>().is_err(),
        JVal::Array(items) => items.iter().any(holds_unrepresentable),
        // Over every occurrence: a duplicate's earlier value may be fine, the describer decides.
        JVal::Object(pairs) => pairs.iter().any(|(_, child)| holds_unrepresentable(child)),
        _ => false,
    }
}

fn describe_unrepresentable(value: &JVal, path: &str) -> Option<String> {
    let here = if path.is_empty() { "value" } else { path };
    match value {
        JVal::Float(v) if !v.is_finite() => {
            let shown = if v.is_nan() {
                "nan"
            } else if *v > 0.0 {
                "inf"
            } else {
                "-inf"
            };
            Some(format!("{here}: {shown} is not a JSON number (NaN, Infinity or beyond 1e308)"))
        }
        JVal::BigInt(text) if text.parse::<u64>().is_err() => {
            // Decimal text of a JSON integer (no leading zeros): what Python's str() gives.
            let head: String = text.chars().take(24).collect();
            Some(format!("{here}: integer {head}... does not fit 64 bits"))
        }
        JVal::Array(items) => items
            .iter()
            .enumerate()
            .rev()
            .find_map(|(index, item)| describe_unrepresentable(item, &format!("{path}[{index}]"))),
        JVal::Object(pairs) => pairs.iter().enumerate().rev().find_map(|(i, (key, _))| {
            if pairs[..i].iter().any(|(k, _)| k == key) {
                return None; // a later duplicate: visited at the key's first position
            }
            let child = JVal::get(&pairs[i..], key).unwrap_or(&JVal::Null);
            let where_ = if path.is_empty() { key.to_string() } else { format!("{path}.{key}") };
            describe_unrepresentable(child, &where_)
        }),
        _ => None,
    }
}

fn attributes_field(value: Option<&JVal>, errors: &mut Errors) -> Option<Vec<u8>> {
    let here = Some("attributes".to_string());
    match value {
        None | Some(JVal::Null) => None,
        Some(object @ JVal::Object(_)) => {
            if let Some(problem) = unrepresentable(object, "") {
                errors.push((here, format!("Value error, {problem}")));
                return None;
            }
            let mut out = Vec::new();
            if let Err(error) = json::dumps(object, &mut out) {
                errors.push((here, format!("Value error, attributes cannot be stored as JSON: {error}")));
                return None;
            }
            if out.len() > MAX_ATTRIBUTES_BYTES {
                errors.push((
                    here,
                    format!("Value error, attributes are larger than {MAX_ATTRIBUTES_BYTES} bytes once serialised"),
                ));
                return None;
            }
            Some(out)
        }
        Some(_) => {
            errors.push((here, "Input should be an object".into()));
            None
        }
    }
}

fn occurred_field(value: Option<&JVal>) -> Result<Option<i64>, String> {
    match value {
        None => Err("Field required".into()),
        Some(JVal::Str(text)) => datetime::parse(text).map(Some),
        // Anything but a string reaches the strict datetime check as itself (null included).
        Some(_) => Err("Input should be a valid datetime".into()),
    }
}

fn schema_violation(mut errors: Errors) -> Rejection {
    let extra = errors.len() - 1;
    let (field, mut detail) = errors.swap_remove(0);
    if extra > 0 {
        detail += &format!(" (and {extra} more problem{})", if extra > 1 { "s" } else { "" });
    }
    // As the reference: an empty location (the root, or an unknown key "") names no field.
    let field = field.filter(|f| !f.is_empty());
    Rejection { reason: SCHEMA_VIOLATION, detail, field }
}

/// Decode one JSON record; the event or the typed rejection naming the field.
pub fn check_event(raw: &[u8]) -> Result<Event<'_>, Rejection> {
    if raw.len() > MAX_EVENT_BYTES {
        return Err(Rejection {
            reason: OVERSIZE,
            detail: format!("{} bytes; the limit is {MAX_EVENT_BYTES}", raw.len()),
            field: None,
        });
    }
    let root = json::parse(raw).map_err(|error| Rejection {
        reason: MALFORMED_JSON,
        detail: format!("Invalid JSON: {}", error.describe(raw)),
        field: None,
    })?;
    let JVal::Object(pairs) = root else {
        return Err(schema_violation(vec![(None, "Input should be an object".into())]));
    };
    let get = |key: &str| JVal::get(&pairs, key);
    let mut errors: Errors = Vec::new();
    // The reference reports unknown keys first, in document order, then fields in declared order.
    for (key, _) in &pairs {
        if !FIELDS.contains(&key.as_ref()) {
            errors.push((Some(key.to_string()), "Extra inputs are not permitted".into()));
        }
    }
    let event_id = take(&mut errors, "event_id", string_field(get("event_id"), true, &IDENTIFIER));
    let customer_rule = StrRule { min: 1, max: Some(256), pattern: None };
    let customer_id =
        take(&mut errors, "customer_id", string_field(get("customer_id"), true, &customer_rule));
    let occurred_us = take(&mut errors, "occurred_at", occurred_field(get("occurred_at")));
    let channel_rule = StrRule { min: 0, max: None, pattern: Some((CHANNEL_PATTERN, is_channel)) };
    let channel = take(&mut errors, "channel", string_field(get("channel"), true, &channel_rule));
    let touchpoint_rule =
        StrRule { min: 0, max: Some(128), pattern: Some((TOUCHPOINT_PATTERN, is_touchpoint)) };
    let touchpoint = take(&mut errors, "touchpoint", string_field(get("touchpoint"), true, &touchpoint_rule));
    let persona = take(&mut errors, "persona", string_field(get("persona"), false, &IDENTIFIER));
    let outcome_message = "Input should be 'success', 'failure' or 'abandoned'";
    let outcome = take(&mut errors, "outcome", enum_field(get("outcome"), &OUTCOMES, outcome_message));
    let employee_id = take(&mut errors, "employee_id", string_field(get("employee_id"), false, &IDENTIFIER));
    let survey = survey_field(get("survey"), &mut errors);
    let attributes = attributes_field(get("attributes"), &mut errors);
    let source = take(&mut errors, "source", string_field(get("source"), false, &IDENTIFIER));
    if !errors.is_empty() {
        return Err(schema_violation(errors));
    }
    match (event_id, customer_id, occurred_us, channel, touchpoint) {
        (Some(event_id), Some(customer_id), Some(occurred_us), Some(channel), Some(touchpoint)) => {
            Ok(Event {
                event_id,
                customer_id,
                occurred_us,
                channel,
                touchpoint,
                persona,
                outcome,
                employee_id,
                survey,
                attributes,
                source,
            })
        }
        // Unreachable: a required field without a value always recorded an error above.
        _ => Err(schema_violation(vec![(None, "Field required".into())])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#""event_id":"e1","customer_id":"c1","occurred_at":"2024-01-01T00:00:00Z","channel":"web","touchpoint":"shop.view""#;

    fn check(extra: &str) -> Result<Event<'static>, Rejection> {
        // Leaked so the borrowed event may outlive the helper; a few bytes per test.
        let raw: &'static str = Box::leak(format!("{{{BASE}{extra}}}").into_boxed_str());
        check_event(raw.as_bytes())
    }

    #[test]
    fn accepts_a_full_event() {
        let event =
            check(r#","outcome":"success","survey":{"kind":"nps","score":9},"attributes":{"a":[1,2.5]}"#)
                .unwrap();
        assert_eq!(event.occurred_ms(), 1_704_067_200_000);
        assert_eq!(event.outcome, Some("success"));
        assert_eq!(event.survey.unwrap().score, 9);
        assert_eq!(event.attributes.unwrap(), br#"{"a":[1,2.5]}"#.to_vec());
    }

    #[test]
    fn rejections_name_reason_field_and_count() {
        let rejection = check(r#","x":1,"x":2"#).unwrap_err();
        assert_eq!(rejection.field.as_deref(), Some("x"));
        assert_eq!(rejection.detail, "Extra inputs are not permitted (and 1 more problem)");
        let rejection = check(r#","survey":{"kind":"nps","score":11}"#).unwrap_err();
        assert_eq!(rejection.field.as_deref(), Some("survey"));
        assert_eq!(rejection.detail, "Value error, score 11 is outside the nps scale 0..10");
        let rejection = check_event(b"{}").unwrap_err();
        assert_eq!(
            (rejection.reason, rejection.detail.as_str()),
            (SCHEMA_VIOLATION, "Field required (and 4 more problems)")
        );
        assert_eq!(check_event(b"{").unwrap_err().reason, MALFORMED_JSON);
        assert_eq!(check_event(&vec![b' '; MAX_EVENT_BYTES + 1]).unwrap_err().reason, OVERSIZE);
    }

    #[test]
    fn numbers_json_cannot_carry_are_refused_where_they_are() {
        let detail = |extra: &str| check(extra).unwrap_err().detail;
        assert_eq!(
            detail(r#","attributes":{"a":NaN,"b":[1,Infinity]}"#),
            "Value error, b[1]: inf is not a JSON number (NaN, Infinity or beyond 1e308)"
        );
        assert_eq!(
            detail(r#","attributes":{"":[-1e400]}"#),
            "Value error, [0]: -inf is not a JSON number (NaN, Infinity or beyond 1e308)"
        );
        assert_eq!(
            detail(r#","attributes":{"x":{"y":[{"z":18446744073709551616}]}}"#),
            "Value error, x.y[0].z: integer 18446744073709551616... does not fit 64 bits"
        );
        // A duplicate key keeps its first position and its last value.
        assert_eq!(
            detail(r#","attributes":{"a":1,"b":-1e400,"a":NaN}"#),
            "Value error, b: -inf is not a JSON number (NaN, Infinity or beyond 1e308)"
        );
        assert!(
            check(r#","attributes":{"a":1e400,"a":18446744073709551615,"b":-9223372036854775808}"#).is_ok()
        );
        let rejection = check(r#","occurred_at":"1772438400""#).unwrap_err();
        assert_eq!(
            (rejection.field.as_deref(), rejection.detail.as_str()),
            (Some("occurred_at"), datetime::SHAPE_ERROR)
        );
    }

    #[test]
    fn patterns_anchor_at_the_very_end() {
        assert!(is_touchpoint("shop.view_2.x"));
        assert!(!is_touchpoint("shop"));
        assert!(!is_touchpoint("shop..view"));
        assert!(!is_channel("web\n"));
        assert!(is_channel("a234567890123456789012345678901b"));
        assert!(!is_channel("a234567890123456789012345678901bc"));
    }

    #[test]
    fn depth_counts_containers_outside_strings() {
        assert_eq!(json_depth(b"{}"), 1);
        assert_eq!(json_depth(br#"{"a":[1,{"b":"]}[{"}]}"#), 3);
        assert_eq!(json_depth(br#"{"a\"[":[[]]}"#), 3);
    }
}
