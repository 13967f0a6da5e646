//! HTTP: the WebSocket upgrade at `/v1/ws`, health and readiness. The admin API joins here.

pub mod conns;
pub mod ws;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

use crate::session::services::Services;

/// What the HTTP handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The session services.
    pub services: Arc<Services>,
    /// Origins allowed to open WebSockets (a missing Origin header is always allowed).
    pub allowed_origins: Arc<[String]>,
    /// Live sessions per client address.
    pub connections: Arc<conns::ConnectionCounter>,
    /// Most live sessions per client address.
    pub max_connections_per_ip: usize,
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}
