//! The chat domain: ids, commands, errors and validation. Pure: it imports nothing from
//! [`crate::backend`] or [`crate::writer`] (the layering test in `server/tests/layering.rs`
//! fails when it does); the backends build on it and the room writer on both.

pub mod command;
pub mod contacts;
pub mod error;
pub mod ids;
pub mod validate;
