//! Column drains that keep states (bindings beside py.rs: the runner's Arrow write path).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use super::{column_buffers, PyEngine};

/// The changed customers' kept states: (customer_id, state bytes, revision) each.
type KeptStates<'py> = Vec<(String, Bound<'py, PyBytes>, u64)>;

/// Engine.drain_kept with the rows as drain_columns renders them: ({table: (rows, columns)},
/// [(customer_id, state bytes, revision), ...]); no Python object per row.
#[pyfunction]
pub fn drain_kept_columns<'py>(
    py: Python<'py>,
    engine: &Bound<'py, PyEngine>,
) -> PyResult<(Bound<'py, PyDict>, KeptStates<'py>)> {
    let mut engine = engine.borrow_mut();
    let inner = &mut engine.inner;
    let mut states = Vec::new();
    let (rows, ends) = inner.drain_changed(Some(&mut states));
    let tables = PyDict::new(py);
    for (name, n, columns) in rows.tables() {
        if n > 0 {
            let buffers = columns.iter().map(|c| column_buffers(py, c)).collect::<PyResult<Vec<_>>>()?;
            tables.set_item(name, (n, buffers))?;
        }
    }
    let mut out = Vec::with_capacity(ends.len());
    let mut start = 0;
    for (customer, _, end) in ends {
        let revision = inner.state(&customer).map_or(0, |s| s.revision);
        out.push((customer.to_string(), PyBytes::new(py, &states[start..end]), revision));
        start = end;
    }
    inner.recycle(rows);
    Ok((tables, out))
}
