//! Transports turn sockets (WebSocket, QUIC) into streams of frames and back. Nothing else.
