//! touchpath's native journey core: event decoding/validation and exact journey alignment, with
//! the Python engine (events/, projections/) as the executable specification.

pub mod alignment;
pub mod datetime;
pub mod event;
pub mod json;

#[cfg(feature = "python")]
mod py;
