//! Python functions of `projections._native` for the Kafka worker's engine (registered by py.rs).

use pyo3::prelude::*;

use super::PyEngine;

/// Engine.mark_partitioned: lateness per customer's own input partition from now on.
#[pyfunction]
fn mark_partitioned(engine: &Bound<'_, PyEngine>) {
    engine.borrow_mut().inner.mark_partitioned();
}

/// Add this file's functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(mark_partitioned, m)?)
}
