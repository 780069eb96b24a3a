//! Python function of `projections._native` for erasure (registered by py.rs): forget a customer.

use pyo3::prelude::*;

use super::PyEngine;

/// Engine.forget: drop a customer's state, pending changes and timeouts; whether it had a state.
#[pyfunction]
fn forget(engine: &Bound<'_, PyEngine>, customer_id: &str) -> bool {
    engine.borrow_mut().inner.forget(customer_id)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(forget, m)?)
}
