//! The one Chatwire protocol client shared by the server's integration tests, the conformance
//! suite and the QUIC tests (docs/conformance.md).
//!
//! ```text
//!  TransportFactory ──open──▶ Transport { tx, rx } ──▶ Client ──call / next_event──▶ test
//!   (WsTarget, QuicTarget)     raw bytes, close info     framing, ids, reply correlation
//! ```
//!
//! - `transport`: the byte-moving abstraction, close info and the factory trait.
//! - `ws`: the WebSocket transport (`ws://host:port/v1/ws`, subprotocol `chatwire.v1`).
//! - `quic`: the QUIC transport (ALPN `chatwire/1`, one control stream, typing datagrams).
//! - `connection`: [`Client`]: ids, framing, the reply/event dispatch, raw sends, close.
//! - `reader`: the background task that reads and dispatches.
//! - `calls`: typed per-request helpers.

mod calls;
mod connection;
mod quic;
mod reader;
mod transport;
mod ws;

pub use calls::{CALLS, client_info};
pub use connection::{Client, ClientError, ClientOptions};
pub use quic::{QuicRx, QuicTarget, QuicTx};
pub use transport::{
    CloseInfo, ClosedBy, Framing, Transport, TransportError, TransportFactory, TransportRx,
    TransportTx,
};
pub use ws::{WsRx, WsTarget, WsTx};
