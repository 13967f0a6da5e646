//! Transports turn sockets (WebSocket, QUIC) into streams of frames and back. Nothing else:
//! every protocol decision is the session's.

pub mod json;
pub mod quic;
pub mod quic_endpoint;
pub mod ws;
