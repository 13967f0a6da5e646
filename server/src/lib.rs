//! The Chatwire gateway server.
//!
//! ```text
//!  transport (ws, quic) ──frames──▶ session ──commands──▶ pipeline ─▶ writer ──▶ backend
//!        ▲                            │                                           │
//!        └────────── events ◀─────────┴──────────── fan-out ◀──────────────────────┘
//! ```
//!
//! Modules, each with one job (see docs/architecture.md "Crates and layout"):
//! - `transport`: sockets to frame streams and back; nothing else.
//! - `session`: the per-connection state machine (handshake, dispatch, subscriptions, heartbeats).
//! - `chat`: the domain's ids, commands, errors and validation; imports nothing from
//!   `backend` or `writer`.
//! - `backend`: one small trait per storage or messaging concern and its implementations
//!   (the command pipelines included); imports `chat` only, never `writer`.
//! - `writer`: the room writer, which the pipelines run through
//!   [`backend::pipeline::RoomExecutor`]; imports `chat` and `backend`.
//! - `http`: the WebSocket upgrade, admin API, health and metrics.
//! - `webhook`: downstream consumers (app webhooks, offline push), signed HTTP POSTs.
//!

pub mod auth;
pub mod backend;
pub mod backup;
pub mod chat;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contacts;
pub mod devdefaults;
pub mod distributed;
pub mod http;
pub mod jitter;
pub mod logs;
pub mod moderation;
pub mod search;
pub mod server;
pub mod session;
pub mod telemetry;
pub mod transport;
pub mod webhook;
pub mod writer;
