//! Projection rows as columns (projections/schema.py's tables, in their column order): strings
//! go into one byte buffer per column, so rendering allocates per batch, not per row, and the
//! buffers are Arrow's layout (offsets + data, validity, fixed-width values).

/// A column of strings: Arrow offsets (i32, starting at 0) and UTF-8 data.
#[derive(Debug, Clone, PartialEq)]
pub struct Strs {
    pub offsets: Vec<i32>,
    pub data: Vec<u8>,
}

impl Default for Strs {
    fn default() -> Self {
        Strs { offsets: vec![0], data: Vec::new() }
    }
}

impl Strs {
    pub fn push(&mut self, value: &str) {
        self.data.extend_from_slice(value.as_bytes());
        self.offsets.push(self.data.len() as i32);
    }

    /// Append row `i` of another column (bytes copied as they are: no re-validation).
    pub fn push_from(&mut self, other: &Strs, i: usize) {
        self.data.extend_from_slice(&other.data[other.offsets[i] as usize..other.offsets[i + 1] as usize]);
        self.offsets.push(self.data.len() as i32);
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> &str {
        let bytes = &self.data[self.offsets[i] as usize..self.offsets[i + 1] as usize];
        // Only whole &str values are pushed, so every slice between offsets is valid UTF-8.
        std::str::from_utf8(bytes).expect("pushed as str")
    }
}

/// A column of optional strings (None is an empty value with its validity unset).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptStrs {
    pub values: Strs,
    pub valid: Vec<bool>,
}

impl OptStrs {
    pub fn push(&mut self, value: Option<&str>) {
        self.values.push(value.unwrap_or(""));
        self.valid.push(value.is_some());
    }

    pub fn get(&self, i: usize) -> Option<&str> {
        self.valid[i].then(|| self.values.get(i))
    }

    pub fn push_from(&mut self, other: &OptStrs, i: usize) {
        self.values.push_from(&other.values, i);
        self.valid.push(other.valid[i]);
    }
}

/// A column of optional 64-bit integers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OptInts {
    pub values: Vec<i64>,
    pub valid: Vec<bool>,
}

impl OptInts {
    pub fn push(&mut self, value: Option<i64>) {
        self.values.push(value.unwrap_or(0));
        self.valid.push(value.is_some());
    }

    pub fn get(&self, i: usize) -> Option<i64> {
        self.valid[i].then(|| self.values[i])
    }
}

/// A column of string lists: Arrow list offsets over one string column.
#[derive(Debug, Clone, PartialEq)]
pub struct StrLists {
    pub offsets: Vec<i32>,
    pub values: Strs,
}

impl Default for StrLists {
    fn default() -> Self {
        StrLists { offsets: vec![0], values: Strs::default() }
    }
}

impl StrLists {
    pub fn push<'a>(&mut self, items: impl IntoIterator<Item = &'a str>) {
        for item in items {
            self.values.push(item);
        }
        self.offsets.push(self.values.len() as i32);
    }

    pub fn get(&self, i: usize) -> impl Iterator<Item = &str> {
        (self.offsets[i] as usize..self.offsets[i + 1] as usize).map(|j| self.values.get(j))
    }
}

/// Emptying a column while keeping its capacity.
pub trait Clear {
    fn clear(&mut self);
}

impl Clear for Strs {
    fn clear(&mut self) {
        self.offsets.truncate(1);
        self.data.clear();
    }
}

impl Clear for OptStrs {
    fn clear(&mut self) {
        self.values.clear();
        self.valid.clear();
    }
}

impl Clear for OptInts {
    fn clear(&mut self) {
        self.values.clear();
        self.valid.clear();
    }
}

impl Clear for StrLists {
    fn clear(&mut self) {
        self.offsets.truncate(1);
        self.values.clear();
    }
}

impl<T> Clear for Vec<T> {
    fn clear(&mut self) {
        Vec::clear(self);
    }
}

/// One column, typed as its table declares it; what a binding needs to read or hand it over.
pub enum Column<'a> {
    Str(&'a Strs),
    OptStr(&'a OptStrs),
    StrList(&'a StrLists),
    I64(&'a [i64]), // also DateTime64(3) milliseconds
    OptI64(&'a OptInts),
    I16(&'a [i16]),
    U8(&'a [u8]),
    U16(&'a [u16]),
    U32(&'a [u32]),
    U64(&'a [u64]),
    F64(&'a [f64]),
}

macro_rules! table {
    ($name:ident, $table:literal, { $($field:ident : $kind:ident $(< $inner:ty >)? => $variant:ident),* $(,)? }) => {
        #[derive(Debug, Clone, Default, PartialEq)]
        pub struct $name {
            $(pub $field: table!(@type $kind $(< $inner >)?),)*
        }

        impl $name {
            pub const NAME: &'static str = $table;

            pub fn clear(&mut self) {
                $(Clear::clear(&mut self.$field);)*
            }

            /// The columns in the table's insert order.
            pub fn columns(&self) -> Vec<Column<'_>> {
                vec![$(table!(@column $variant, self.$field)),*]
            }
        }
    };
    (@type Strs) => { Strs };
    (@type OptStrs) => { OptStrs };
    (@type StrLists) => { StrLists };
    (@type OptInts) => { OptInts };
    (@type Vec<$inner:ty>) => { Vec<$inner> };
    (@column Str, $e:expr) => { Column::Str(&$e) };
    (@column OptStr, $e:expr) => { Column::OptStr(&$e) };
    (@column StrList, $e:expr) => { Column::StrList(&$e) };
    (@column OptI64, $e:expr) => { Column::OptI64(&$e) };
    (@column $variant:ident, $e:expr) => { Column::$variant(&$e) };
}

table!(EventCols, "touchpoint_events", {
    scenario: Strs => Str, event_id: Strs => Str, customer_id: Strs => Str, occurred_at: Vec<i64> => I64,
    channel: Strs => Str, touchpoint: Strs => Str, owner_team: Strs => Str, persona: OptStrs => OptStr,
    outcome: OptStrs => OptStr, employee_id: OptStrs => OptStr, survey_kind: OptStrs => OptStr,
    survey_score: OptInts => OptI64, survey_comment: OptStrs => OptStr, attributes: Strs => Str,
    source: OptStrs => OptStr,
});

table!(InstanceCols, "journey_instances", {
    scenario: Strs => Str, instance_id: Strs => Str, customer_id: Strs => Str, persona: Strs => Str,
    journey_id: Strs => Str, journey_version: Vec<u32> => U32, status: Strs => Str,
    end_reason: OptStrs => OptStr, path: StrLists => StrList, path_event_ids: StrLists => StrList,
    events: Vec<u32> => U32, cost: Vec<u32> => U32, fitness: Vec<f64> => F64,
    deviation_count: Vec<u32> => U32, started_at: Vec<i64> => I64, last_event_at: Vec<i64> => I64,
    ended_at: OptInts => OptI64, version: Vec<u64> => U64, is_deleted: Vec<u8> => U8,
});

table!(DeviationCols, "deviations", {
    scenario: Strs => Str, instance_id: Strs => Str, idx: Vec<u16> => U16, customer_id: Strs => Str,
    persona: Strs => Str, journey_id: Strs => Str, journey_version: Vec<u32> => U32, kind: Strs => Str,
    step: Strs => Str, touchpoint: Strs => Str, channel: Strs => Str, owner_team: Strs => Str,
    occurred_at: Vec<i64> => I64, event_ids: StrLists => StrList, detail: Strs => Str,
    cost: Vec<u8> => U8, version: Vec<u64> => U64, is_deleted: Vec<u8> => U8,
});

table!(FrictionCols, "friction_signals", {
    scenario: Strs => Str, instance_id: Strs => Str, idx: Vec<u16> => U16, signal_id: Strs => Str,
    customer_id: Strs => Str, persona: Strs => Str, journey_id: Strs => Str,
    journey_version: Vec<u32> => U32, touchpoint: Strs => Str, owner_team: Strs => Str,
    kind: Strs => Str, weight: Vec<f64> => F64, occurred_at: Vec<i64> => I64,
    event_ids: StrLists => StrList, version: Vec<u64> => U64, is_deleted: Vec<u8> => U8,
});

table!(DelightCols, "delight_signals", {
    scenario: Strs => Str, instance_id: Strs => Str, idx: Vec<u16> => U16, customer_id: Strs => Str,
    persona: Strs => Str, touchpoint: Strs => Str, owner_team: Strs => Str,
    employee_id: OptStrs => OptStr, survey_kind: Strs => Str, score: Vec<i16> => I16,
    occurred_at: Vec<i64> => I64, event_ids: StrLists => StrList, version: Vec<u64> => U64,
    is_deleted: Vec<u8> => U8,
});

table!(AttributionCols, "support_attribution", {
    scenario: Strs => Str, support_event_id: Strs => Str, instance_id: Strs => Str,
    customer_id: Strs => Str, persona: Strs => Str, support_touchpoint: Strs => Str,
    upstream_touchpoint: OptStrs => OptStr, upstream_owner_team: OptStrs => OptStr,
    upstream_event_id: OptStrs => OptStr, rule: Strs => Str, occurred_at: Vec<i64> => I64,
    version: Vec<u64> => U64, is_deleted: Vec<u8> => U8,
});

/// Rows for each projection table the engine writes, in the order the reference adds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rows {
    pub events: EventCols,
    pub instances: InstanceCols,
    pub deviations: DeviationCols,
    pub friction: FrictionCols,
    pub delight: DelightCols,
    pub attribution: AttributionCols,
}

impl Rows {
    /// (table name, row count, columns) of each table.
    pub fn tables(&self) -> [(&'static str, usize, Vec<Column<'_>>); 6] {
        let n = self.counts();
        [
            (EventCols::NAME, n[0], self.events.columns()),
            (InstanceCols::NAME, n[1], self.instances.columns()),
            (DeviationCols::NAME, n[2], self.deviations.columns()),
            (FrictionCols::NAME, n[3], self.friction.columns()),
            (DelightCols::NAME, n[4], self.delight.columns()),
            (AttributionCols::NAME, n[5], self.attribution.columns()),
        ]
    }

    /// Empty every column, keeping the buffers' capacity for the next drain.
    pub fn clear(&mut self) {
        let Rows { events, instances, deviations, friction, delight, attribution } = self;
        events.clear();
        instances.clear();
        deviations.clear();
        friction.clear();
        delight.clear();
        attribution.clear();
    }

    /// Rows of each table, in tables() order.
    pub fn counts(&self) -> [usize; 6] {
        [
            self.events.occurred_at.len(),
            self.instances.version.len(),
            self.deviations.version.len(),
            self.friction.version.len(),
            self.delight.version.len(),
            self.attribution.version.len(),
        ]
    }

    pub fn len(&self) -> usize {
        self.counts().iter().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_read_back_what_was_pushed() {
        let mut lists = StrLists::default();
        lists.push(["a", "bc"]);
        lists.push([]);
        lists.push(["é"]);
        assert_eq!(lists.get(0).collect::<Vec<_>>(), ["a", "bc"]);
        assert_eq!(lists.get(1).count(), 0);
        assert_eq!(lists.get(2).collect::<Vec<_>>(), ["é"]);
        let mut optional = OptStrs::default();
        optional.push(None);
        optional.push(Some("x"));
        assert_eq!((optional.get(0), optional.get(1)), (None, Some("x")));
        assert_eq!(Rows::default().tables().map(|(name, n, _)| (name, n))[1], ("journey_instances", 0));
    }
}
