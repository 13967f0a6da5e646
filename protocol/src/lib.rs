//! Chatwire protocol v1: the generated protobuf types and a sans-IO frame codec.
//!
//! ```text
//!  bytes from a socket ──push──▶ FrameDecoder ──next_frame──▶ ClientFrame / ServerFrame
//!  ClientFrame / ServerFrame ──encode_frame──▶ bytes for a socket
//! ```
//!
//! A connection carries frames: a varint length prefix, then one protobuf message
//! (`ClientFrame` from clients, `ServerFrame` from servers). The codec does no I/O and reads no
//! clock; the caller moves bytes and decides what to do with errors. Size limits are checked on
//! the length prefix, before any byte of the message is buffered or decoded.
//!
//! What this crate does not do: sockets, timers, authentication, or any protocol state. The
//! session state machine lives in `chatwire-server`; the specification is `docs/protocol.md`.
//!
//! The `v1` module is generated from `protocol/proto/chatwire/v1/*.proto` by
//! `scripts/regen` and checked in; `tests/bootstrap.rs` fails when it is stale.

mod codec;
pub mod limits;

pub use codec::{DecodeError, EncodeError, FrameDecoder, encode_frame, encoded_frame_len};

/// Generated types of package `chatwire.v1`.
#[allow(
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::unwrap_used,
    rust_2018_idioms,
    missing_debug_implementations
)]
pub mod v1 {
    include!("gen/chatwire.v1.rs");
}

/// The encoded `FileDescriptorSet` of the v1 protocol files, with source info (comments), for
/// reflection, proto3 JSON and code generation.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!("gen/chatwire.v1.fds.binpb");

/// The WebSocket subprotocol of the binary framing of protocol v1.
pub const WS_SUBPROTOCOL: &str = "chatwire.v1";

/// The QUIC ALPN protocol id of protocol v1.
pub const QUIC_ALPN: &[u8] = b"chatwire/1";

/// Decoder of the frames a server reads.
pub type ClientFrameDecoder = FrameDecoder<v1::ClientFrame>;

/// Decoder of the frames a client reads.
pub type ServerFrameDecoder = FrameDecoder<v1::ServerFrame>;
