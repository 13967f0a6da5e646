//! The WebSocket upgrade: Origin allow-list (against cross-site WebSocket hijacking),
//! subprotocol negotiation, transport limits, then one session task per connection.

use axum::extract::State;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatwire_protocol::{WS_SUBPROTOCOL, v1};

use super::AppState;
use crate::session::driver;
use crate::transport::ws::WsTransport;

/// Handles `GET /v1/ws`.
pub async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
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
    let limits = state.services.limits;
    let max_message =
        limits.max_client_frame_bytes as usize + chatwire_protocol::limits::MAX_LENGTH_PREFIX_BYTES;
    let ws = ws
        .protocols([WS_SUBPROTOCOL])
        .max_message_size(max_message)
        .max_frame_size(max_message)
        .write_buffer_size(64 * 1024)
        .max_write_buffer_size(limits.max_server_frame_bytes as usize * 2);
    let negotiated = ws.selected_protocol().is_some();
    ws.on_upgrade(move |socket| async move {
        if negotiated {
            driver::run(state.services, Box::new(WsTransport::new(socket))).await;
        } else {
            refuse_version(socket).await;
        }
    })
}

/// No supported subprotocol was offered: accept, say why, close with 4009.
async fn refuse_version(mut socket: WebSocket) {
    let code = u16::try_from(i32::from(v1::CloseCode::UnsupportedVersion)).unwrap_or(4009);
    let reason = format!("offer the {WS_SUBPROTOCOL} subprotocol");
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}
