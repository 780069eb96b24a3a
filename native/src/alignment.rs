//! The exact alignment of a path against a compiled journey and the deviations it implies: a port
//! of projections/journeys.py (Journey.advance/advance_cached) and projections/alignment.py.

use std::collections::HashMap;
use std::sync::Arc;

use crate::smallstr::SmallStr;

use crate::fxhash::FastMap;

/// A compiled step (index = position + 1), as projections.journeys.Step.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: String,
    pub touchpoints: Vec<String>,
    pub primary: String,
    pub primary_channel: String,
    pub optional: bool,
    pub repeatable: bool,
    pub within_ms: Option<i64>,
    pub goal: bool,
}

/// A compiled journey: its steps and the tables the alignment needs, plus the transition cache.
#[derive(Debug, Clone)]
pub struct Journey {
    pub steps: Vec<Step>,
    pub step_of: FastMap<String, Vec<usize>>,
    pub skip_cost: Vec<u32>,
    pub initial_costs: Vec<u32>,
    // Touchpoints named by a step get ids 0..n; every other touchpoint shares id n (it can only
    // be inserted, so all of them fold the same way).
    touchpoint_ids: FastMap<String, u32>,
    steps_of_id: Vec<Vec<usize>>,
    // Interned relative cost vectors and cached transitions (state, touchpoint id) -> (rise, state).
    states: Vec<Vec<u32>>,
    state_ids: FastMap<Vec<u32>, u32>,
    transitions: FastMap<(u32, u32), (u32, u32)>,
}

/// One move of an alignment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Match,
    Repeat,
    Insert,
    Skip,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Match => "match",
            Op::Repeat => "repeat",
            Op::Insert => "insert",
            Op::Skip => "skip",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub op: Op,
    pub step: usize,
    pub event: Option<usize>,
    pub cost: u32,
}

/// What the alignment needs of an accepted event.
#[derive(Debug, Clone)]
pub struct Occurrence {
    pub ts: i64,
    pub event_id: SmallStr, // short ids inline: see smallstr.rs
    // Shared: a handful of touchpoints and channels recur in every event.
    pub touchpoint: Arc<str>,
    pub channel: Arc<str>,
}

impl AsRef<Occurrence> for Occurrence {
    fn as_ref(&self) -> &Occurrence {
        self
    }
}

/// What the moves of an alignment did to one step (deviations_of).
#[derive(Debug, Clone, Copy, Default)]
struct StepMarks {
    matched: bool,
    skipped_required: bool,
    skipped_optional: bool,
    paired: bool, // its skip is explained by an out-of-order event
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deviation {
    pub kind: &'static str,
    pub step: String,
    pub touchpoint: String,
    pub channel: String,
    pub ts: i64,
    pub event_ids: Vec<String>,
    pub detail: String,
    pub cost: u32,
}

const TRANSITION_CACHE_LIMIT: usize = 200_000;

impl Journey {
    /// Build from the compiled tables of projections.journeys.compile_journey.
    pub fn new(
        steps: Vec<Step>,
        step_of: HashMap<String, Vec<usize>>,
        skip_cost: Vec<u32>,
        initial_costs: Vec<u32>,
    ) -> Result<Self, String> {
        let k = steps.len();
        if k == 0 || skip_cost.len() != k + 1 || initial_costs.len() != k + 1 {
            return Err(format!(
                "a compiled journey needs k >= 1 steps and k + 1 skip costs and initial costs; got {k}, {}, {}",
                skip_cost.len(),
                initial_costs.len()
            ));
        }
        if let Some((touchpoint, _)) = step_of.iter().find(|(_, idx)| idx.iter().any(|&i| i == 0 || i > k)) {
            return Err(format!("step_of['{touchpoint}'] names a step outside 1..{k}"));
        }
        let mut touchpoint_ids = FastMap::default();
        let mut steps_of_id = Vec::new();
        let mut named: Vec<&String> = step_of.keys().collect();
        named.sort();
        for touchpoint in named {
            touchpoint_ids.insert(touchpoint.clone(), steps_of_id.len() as u32);
            steps_of_id.push(step_of[touchpoint].clone());
        }
        steps_of_id.push(Vec::new()); // the shared id of touchpoints outside the journey
        Ok(Journey {
            steps,
            step_of: step_of.into_iter().collect(),
            skip_cost,
            initial_costs,
            touchpoint_ids,
            steps_of_id,
            states: Vec::new(),
            state_ids: FastMap::default(),
            transitions: FastMap::default(),
        })
    }

    /// The id a touchpoint folds under (ids of touchpoints outside the journey are all the same).
    pub fn touchpoint_id(&self, touchpoint: &str) -> u32 {
        self.touchpoint_ids.get(touchpoint).copied().unwrap_or(self.touchpoint_ids.len() as u32)
    }

    /// Fold one path event into the cost vector: O(steps), exact (Journey.advance).
    pub fn advance(&self, costs: &[u32], touchpoint: &str) -> Vec<u32> {
        self.advance_id(costs, self.touchpoint_id(touchpoint))
    }

    fn advance_id(&self, costs: &[u32], touchpoint: u32) -> Vec<u32> {
        let mut new = vec![0; costs.len()];
        self.advance_into(costs, touchpoint, &mut new);
        new
    }

    fn advance_into(&self, costs: &[u32], touchpoint: u32, new: &mut [u32]) {
        for (n, c) in new.iter_mut().zip(costs) {
            *n = c + 1;
        }
        for &i in &self.steps_of_id[touchpoint as usize] {
            new[i] = new[i].min(costs[i - 1]);
            if self.steps[i - 1].repeatable && costs[i] < new[i] {
                new[i] = costs[i];
            }
        }
        for i in 1..new.len() {
            new[i] = new[i].min(new[i - 1] + self.skip_cost[i]);
        }
    }

    /// cost_table() in one flat buffer: row j starts at j * (steps + 1).
    fn flat_cost_table(&self, path: &[&str]) -> Vec<u32> {
        let width = self.initial_costs.len();
        let mut rows = vec![0; width * (path.len() + 1)];
        rows[..width].copy_from_slice(&self.initial_costs);
        for (j, touchpoint) in path.iter().enumerate() {
            let (done, next) = rows.split_at_mut((j + 1) * width);
            self.advance_into(&done[j * width..], self.touchpoint_id(touchpoint), &mut next[..width]);
        }
        rows
    }

    /// Row j: the cost vector after the first j events (alignment.cost_table).
    pub fn cost_table(&self, path: &[&str]) -> Vec<Vec<u32>> {
        let mut rows = vec![self.initial_costs.clone()];
        for touchpoint in path {
            let next = self.advance(rows.last().expect("rows start non-empty"), touchpoint);
            rows.push(next);
        }
        rows
    }

    fn intern(&mut self, relative: Vec<u32>) -> u32 {
        if let Some(&id) = self.state_ids.get(&relative) {
            return id;
        }
        let id = self.states.len() as u32;
        self.states.push(relative.clone());
        self.state_ids.insert(relative, id);
        id
    }

    /// The incremental state of a fresh instance: (base, state id of the relative vector).
    pub fn start(&mut self) -> (u32, u32) {
        let low = *self.initial_costs.iter().min().expect("non-empty");
        let relative = self.initial_costs.iter().map(|c| c - low).collect();
        (low, self.intern(relative))
    }

    /// advance_cached(): costs kept as base + an interned relative vector; O(1) once seen.
    pub fn advance_cached(&mut self, state: (u32, u32), touchpoint: &str) -> (u32, u32) {
        let touchpoint = self.touchpoint_id(touchpoint);
        let (base, id) = state;
        if let Some(&(rise, next)) = self.transitions.get(&(id, touchpoint)) {
            return (base + rise, next);
        }
        if self.transitions.len() > TRANSITION_CACHE_LIMIT {
            // Bound memory on adversarial input; interned ids stay valid, so correctness holds.
            self.transitions.clear();
        }
        let moved = self.advance_id(&self.states[id as usize], touchpoint);
        let low = *moved.iter().min().expect("non-empty");
        let next = self.intern(moved.iter().map(|c| c - low).collect());
        self.transitions.insert((id, touchpoint), (low, next));
        (base + low, next)
    }

    /// The relative cost vector of an interned state.
    pub fn relative(&self, id: u32) -> &[u32] {
        &self.states[id as usize]
    }

    /// An optimal alignment ending in end_state (None: the cheapest, furthest state), with the
    /// reference's deterministic tie-breaking (insert, match, repeat, skip, scanning from the end).
    pub fn align(&self, path: &[&str], end_state: Option<usize>) -> Vec<Move> {
        let width = self.initial_costs.len();
        let table = self.flat_cost_table(path);
        let row = |j: usize| &table[j * width..(j + 1) * width];
        let last = row(path.len());
        let mut state = match end_state {
            Some(state) => state,
            None => {
                let best = *last.iter().min().expect("non-empty");
                last.iter().rposition(|&c| c == best).expect("min exists")
            }
        };
        let mut moves = Vec::with_capacity(path.len() + width); // at most one per event and step
        let mut j = path.len();
        while j > 0 || state > 0 {
            let here = row(j)[state];
            if j > 0 {
                let touchpoint = path[j - 1];
                let previous = row(j - 1);
                let in_step = state > 0 && self.steps[state - 1].touchpoints.iter().any(|t| t == touchpoint);
                if previous[state] + 1 == here {
                    moves.push(Move { op: Op::Insert, step: state, event: Some(j - 1), cost: 1 });
                    j -= 1;
                    continue;
                }
                if in_step && previous[state - 1] == here {
                    moves.push(Move { op: Op::Match, step: state, event: Some(j - 1), cost: 0 });
                    j -= 1;
                    state -= 1;
                    continue;
                }
                if in_step && self.steps[state - 1].repeatable && previous[state] == here {
                    moves.push(Move { op: Op::Repeat, step: state, event: Some(j - 1), cost: 0 });
                    j -= 1;
                    continue;
                }
            }
            moves.push(Move { op: Op::Skip, step: state, event: None, cost: self.skip_cost[state] });
            state -= 1;
        }
        moves.reverse();
        moves
    }

    /// Classify an alignment's moves into deviations, in path order (alignment.deviations_of).
    pub fn deviations_of<E: AsRef<Occurrence>>(
        &self,
        events: &[E],
        moves: &[Move],
        channel_of: &FastMap<String, String>,
    ) -> Vec<Deviation> {
        let steps = &self.steps;
        let k = steps.len();
        // What the moves did to each step, in one allocation per call (this runs at every render).
        let mut marks = vec![StepMarks::default(); k + 1];
        for m in moves {
            match m.op {
                Op::Skip if m.cost > 0 => marks[m.step].skipped_required = true,
                Op::Skip => marks[m.step].skipped_optional = true,
                Op::Insert => {}
                Op::Match | Op::Repeat => marks[m.step].matched = true,
            }
        }
        let mut out: Vec<(i64, usize, Deviation)> = Vec::new();
        let mut last_match_ts: Option<i64> = None;
        let none: Vec<usize> = Vec::new();
        for (order, m) in moves.iter().enumerate() {
            let Some(event_index) = m.event else { continue };
            let event = events[event_index].as_ref();
            let deviation = |kind, step: &str, channel: &str, detail: String, cost| Deviation {
                kind,
                step: step.to_string(),
                touchpoint: event.touchpoint.to_string(),
                channel: channel.to_string(),
                ts: event.ts,
                event_ids: vec![event.event_id.to_string()],
                detail,
                cost,
            };
            if m.op == Op::Insert {
                let candidates = self.step_of.get(&*event.touchpoint).unwrap_or(&none);
                let mut kind = "unexpected_step";
                let mut cost = 1;
                let mut step_name = String::new();
                let mut detail = "touchpoint is not part of this journey".to_string();
                if let Some(&index) =
                    candidates.iter().find(|&&i| marks[i].skipped_required && !marks[i].paired)
                {
                    marks[index].paired = true;
                    kind = "out_of_order";
                    step_name = steps[index - 1].name.clone();
                    detail = format!("step {index} '{step_name}' happened out of sequence");
                    cost = 2; // the skipped step and the misplaced event, reported once
                } else if let Some(&index) = candidates.iter().find(|&&i| marks[i].matched) {
                    kind = "repeated_step";
                    step_name = steps[index - 1].name.clone();
                    detail = format!("step {index} '{step_name}' was already done");
                } else if let Some(&index) = candidates.iter().find(|&&i| marks[i].skipped_optional) {
                    kind = "out_of_order";
                    step_name = steps[index - 1].name.clone();
                    detail = format!("optional step {index} '{step_name}' out of sequence");
                } else if let Some(&first) = candidates.first() {
                    kind = "out_of_order";
                    step_name = steps[first - 1].name.clone();
                    detail = format!("step '{step_name}' done ahead of the steps before it");
                }
                out.push((event.ts, order, deviation(kind, &step_name, &event.channel, detail, cost)));
                continue;
            }
            let step = &steps[m.step - 1];
            if m.op == Op::Match {
                if *event.channel != *step.primary_channel {
                    let detail = format!("done on {} instead of {}", event.channel, step.primary_channel);
                    out.push((
                        event.ts,
                        order,
                        deviation("channel_switch", &step.name, &event.channel, detail, 0),
                    ));
                }
                if let (Some(within), Some(last)) = (step.within_ms, last_match_ts) {
                    if event.ts - last > within {
                        let took = event.ts - last;
                        let detail = format!(
                            "took {}, budget {} (over by {})",
                            format_duration(took),
                            format_duration(within),
                            format_duration(took - within)
                        );
                        out.push((
                            event.ts,
                            order,
                            deviation("time_budget_exceeded", &step.name, &event.channel, detail, 0),
                        ));
                    }
                }
                last_match_ts = Some(event.ts);
            } else if m.op == Op::Repeat {
                last_match_ts = Some(event.ts);
            }
        }
        // Missing steps not explained by an out-of-order event; placed at the next event's time.
        for (order, m) in moves.iter().enumerate() {
            if m.op == Op::Skip && m.cost > 0 && !marks[m.step].paired {
                let step = &steps[m.step - 1];
                let following = moves[order..].iter().find_map(|later| later.event);
                let anchor = match following {
                    Some(index) => events.get(index),
                    None => events.last(),
                }
                .map(AsRef::as_ref);
                let ts = anchor.map_or(0, |a| a.ts);
                out.push((
                    ts,
                    order,
                    Deviation {
                        kind: "missing_step",
                        step: step.name.clone(),
                        touchpoint: step.primary.clone(),
                        channel: channel_of.get(&step.primary).cloned().unwrap_or_default(),
                        ts,
                        event_ids: anchor.map(|a| vec![a.event_id.to_string()]).unwrap_or_default(),
                        detail: format!("required step {} '{}' was not done", m.step, step.name),
                        cost: 1,
                    },
                ));
            }
        }
        out.sort_by_key(|(ts, order, _)| (*ts, *order));
        out.into_iter().map(|(_, _, deviation)| deviation).collect()
    }
}

const UNITS: [(&str, i64); 5] =
    [("w", 604_800_000), ("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)];

/// A duration for people, as projections.durations.format_duration.
pub fn format_duration(ms: i64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (largest, size) = UNITS.iter().copied().find(|(_, size)| ms >= *size).expect("ms >= 1000");
    if ms % size == 0 {
        return format!("{}{largest}", ms / size);
    }
    let mut parts: Vec<String> = Vec::new();
    let mut rest = ms;
    for (unit, size) in UNITS[1..].iter().copied() {
        if rest >= size || !parts.is_empty() {
            if rest / size != 0 {
                parts.push(format!("{}{unit}", rest / size));
            }
            rest %= size;
            if parts.len() == 2 || rest == 0 {
                break;
            }
        }
    }
    if parts.is_empty() {
        format!("{ms}ms")
    } else {
        parts.concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, touchpoints: &[&str], optional: bool, repeatable: bool) -> Step {
        Step {
            name: name.into(),
            touchpoints: touchpoints.iter().map(|t| t.to_string()).collect(),
            primary: touchpoints[0].into(),
            primary_channel: "web".into(),
            optional,
            repeatable,
            within_ms: None,
            goal: false,
        }
    }

    fn journey() -> Journey {
        // a, optional b, repeatable c
        let steps = vec![
            step("a", &["t.a"], false, false),
            step("b", &["t.b"], true, false),
            step("c", &["t.c"], false, true),
        ];
        let step_of =
            HashMap::from([("t.a".into(), vec![1]), ("t.b".into(), vec![2]), ("t.c".into(), vec![3])]);
        Journey::new(steps, step_of, vec![0, 1, 0, 1], vec![0, 1, 1, 2]).unwrap()
    }

    #[test]
    fn ideal_path_costs_nothing_and_swaps_read_out_of_order() {
        let j = journey();
        assert_eq!(j.cost_table(&["t.a", "t.c", "t.c"]).last().unwrap(), &vec![3, 2, 2, 0]);
        let moves = j.align(&["t.c", "t.a"], None);
        let events: Vec<Occurrence> = ["t.c", "t.a"]
            .iter()
            .enumerate()
            .map(|(i, t)| Occurrence {
                ts: i as i64,
                event_id: format!("e{i}").into(),
                touchpoint: (*t).into(),
                channel: "web".into(),
            })
            .collect();
        let kinds: Vec<&str> =
            j.deviations_of(&events, &moves, &FastMap::default()).iter().map(|d| d.kind).collect();
        assert_eq!(kinds, vec!["out_of_order"]);
    }

    #[test]
    fn cached_fold_equals_the_plain_fold() {
        let mut j = journey();
        let path = ["t.c", "t.a", "x.y", "t.c", "t.b"];
        let mut state = j.start();
        for (n, t) in path.iter().enumerate() {
            state = j.advance_cached(state, t);
            let row = j.cost_table(&path[..=n]).pop().unwrap();
            let low = *row.iter().min().unwrap();
            assert_eq!(state.0, low);
            assert_eq!(j.relative(state.1), row.iter().map(|c| c - low).collect::<Vec<_>>().as_slice());
        }
    }

    #[test]
    fn durations_read_like_the_reference() {
        assert_eq!(format_duration(999), "999ms");
        assert_eq!(format_duration(30 * 86_400_000), "30d");
        assert_eq!(format_duration(466_000), "7m46s");
        assert_eq!(format_duration(2 * 86_400_000 + 3 * 3_600_000 + 5), "2d3h");
        assert_eq!(format_duration(1_209_600_000), "2w");
        assert_eq!(format_duration(8 * 86_400_000 + 1), "8d");
    }
}
