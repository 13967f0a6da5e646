//! Chatwire conformance: golden vectors, the shared protocol test client, the server suite and
//! the client harness (docs/conformance.md).
//!
//! ```text
//!  vectors::all() ──encode──▶ conformance/vectors/*.bin + *.json ◀── every SDK's codec tests
//! ```
//!
//! - `client`: the protocol client shared with the server's integration tests.
//! - `suite`: the server suite (numbered cases citing docs/protocol.md), `report`: its reports,
//!   `cli`: the `chatwire-conformance` command line.
//! - `harness`: the client harness, a scripted server that judges an SDK's behaviour.

pub mod cli;
pub mod client;
pub mod harness;
pub mod report;
pub mod suite;
pub mod vectors;
