//! The per-connection session, shared by every transport: the sans-IO state machine
//! ([`core`]), the request handlers ([`handlers`]) and the async driver that joins them to a
//! transport's frames and the node's fan-out ([`driver`]).

pub mod core;
pub mod driver;
pub mod handlers;
pub mod services;
