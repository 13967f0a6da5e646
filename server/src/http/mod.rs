//! HTTP: the WebSocket upgrade at `/v1/ws`, health and readiness. The admin API joins here.

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
}

/// The server's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}
