//! Chat domain logic: rooms, messages, receipts, presence, typing and calls. Transport-agnostic
//! and backend-agnostic: it sees frames as protocol types and storage through the backend
//! traits.

pub mod command;
pub mod downstream;
pub mod draft;
pub mod error;
pub mod ids;
pub mod validate;
pub mod writer;
