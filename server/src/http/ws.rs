//! The WebSocket upgrade: Origin allow-list (against cross-site WebSocket hijacking),
//! subprotocol negotiation, transport limits, then one session task per connection.

use std::net::SocketAddr;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatwire_protocol::{WS_SUBPROTOCOL, v1};

/// The proto3 JSON mapping's subprotocol (docs/protocol.md §2.4).
pub const WS_JSON_SUBPROTOCOL: &str = "chatwire.v1.json";

use super::AppState;
use crate::session::driver;
use crate::transport::ws as ws_transport;

/// Handles `GET /v1/ws`.
pub async fn upgrade(
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if state
        .services
        .draining
        .load(std::sync::atomic::Ordering::SeqCst)
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "server draining").into_response();
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin
            .to_str()
            .ok()
            .and_then(crate::config::normalize_origin)
            .is_some_and(|origin| state.allowed_origins.contains(&origin));
        if !allowed {
            return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
        }
    }
    let services = &state.services;
    let connects = services.rates.connects_per_ip;
    if let Err(retry_after_ms) = services
        .limiter
        .take(
            &format!("connect:{}", super::conns::client_prefix(peer.ip())),
            connects,
            services.clock.now_ms(),
        )
        .await
    {
        crate::telemetry::rate_limited("connect");
        let retry_after_s = retry_after_ms.div_ceil(1000).max(1).to_string();
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_s)],
            "too many connections",
        )
            .into_response();
    }
    let guard = state
        .connections
        .acquire(peer.ip(), state.max_connections_per_ip);
    let limits = state.services.limits;
    let ws = with_transport_limits(ws, &limits).protocols([WS_SUBPROTOCOL, WS_JSON_SUBPROTOCOL]);
    let selected = ws
        .selected_protocol()
        .and_then(|p| p.to_str().ok())
        .map(str::to_owned);
    let negotiated = selected.is_some();
    let json = selected.as_deref() == Some(WS_JSON_SUBPROTOCOL);
    let max_text = limits.max_client_frame_bytes as usize;
    ws.on_upgrade(move |socket| async move {
        match (negotiated, guard) {
            (true, Some(_guard)) => {
                let (reader, writer) = ws_transport::split(socket, json, max_text);
                driver::run(state.services, Box::new(reader), Box::new(writer)).await;
            }
            (true, None) => {
                refuse(
                    socket,
                    v1::CloseCode::TooManyConnections,
                    "too many connections from this address",
                )
                .await
            }
            (false, _) => {
                refuse(
                    socket,
                    v1::CloseCode::UnsupportedVersion,
                    &format!("offer the {WS_SUBPROTOCOL} subprotocol"),
                )
                .await
            }
        }
    })
}

/// The WebSocket layer's read chunk. The library default (128 KiB) is zero-filled before every
/// read and held per connection; client frames are small, and a larger message simply takes
/// more reads.
const WS_READ_BUFFER_BYTES: usize = 4 * 1024;

/// The WebSocket layer's limits for a server advertising `limits`: the largest message and
/// frame a client may send (one Chatwire frame with its length prefix) and the write buffers.
/// The Autobahn echo (server/examples/autobahn_echo.rs) uses the same settings.
pub fn with_transport_limits(ws: WebSocketUpgrade, limits: &v1::Limits) -> WebSocketUpgrade {
    let max_message =
        limits.max_client_frame_bytes as usize + chatwire_protocol::limits::MAX_LENGTH_PREFIX_BYTES;
    ws.max_message_size(max_message)
        .max_frame_size(max_message)
        .read_buffer_size(WS_READ_BUFFER_BYTES)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(limits.max_server_frame_bytes as usize * 2)
}

/// Accepts the socket only to say why it closes.
async fn refuse(mut socket: WebSocket, code: v1::CloseCode, reason: &str) {
    let code = u16::try_from(i32::from(code)).unwrap_or(4011);
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })))
        .await;
}
