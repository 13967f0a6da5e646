//! A test-only WebSocket echo server for the Autobahn cases (scripts/autobahn, `kosoku`):
//!
//! ```sh
//! cargo run -p chatwire-server --example autobahn_echo -- 127.0.0.1:0
//! ```
//!
//! It is the server's own WebSocket layer (axum's upgrade, configured by
//! `chatwire_server::http::ws::with_transport_limits` with the production default limits),
//! echoing every text and binary message back instead of running a Chatwire session, since the
//! Autobahn cases expect an echo. It lives in chatwire-server as an example so it reaches that
//! code without a new crate or a dependency cycle, and is not part of the `chatwire` binary.
//! Prints `listening on ADDR` once bound.

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use axum::routing::get;
use chatwire_server::config::Config;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    let app = Router::new().fallback(get(upgrade));
    axum::serve(listener, app).await?;
    Ok(())
}

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    let limits = chatwire_server::server::advertised_limits(&Config::default());
    chatwire_server::http::ws::with_transport_limits(ws, &limits).on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            // Pings are answered by the WebSocket layer, and so is a close: the reply goes out
            // on the next read, which then ends the stream.
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            break;
        }
    }
}
