//! Chatwire conformance: golden vectors, the shared protocol test client, the server suite and
//! the client harness (DESIGN §8).
//!
//! ```text
//!  vectors::all() ──encode──▶ conformance/vectors/*.bin + *.json ◀── every SDK's codec tests
//! ```
//!
//! Today it holds the golden vectors; the client library, server cases and harness follow.

pub mod client;
pub mod vectors;
