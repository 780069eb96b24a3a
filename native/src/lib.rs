//! touchpath's native journey core: event decoding/validation, exact journey alignment and the
//! per-event fold that renders projection rows, with
//! the Python engine (events/, projections/) as the executable specification.

pub mod alignment;
pub mod blake2b;
pub mod datetime;
pub mod deadlines;
pub mod engine;
pub mod event;
pub mod fold;
pub mod fxhash;
pub mod json;
pub mod rows;
pub mod signals;
pub mod smallstr;
pub mod state;

#[cfg(feature = "python")]
mod py;
