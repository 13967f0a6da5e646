//! HTTP: the WebSocket upgrade at `/v1/ws`, the example page at `/` and its icon, health, and
//! the admin API with readiness, metrics, `/openapi.json` and `/docs` ([`admin`]).

pub mod admin;
pub mod client;
pub mod conns;
pub mod tls;
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
    /// The admin API's key, token minter and counters.
    pub admin: Arc<admin::AdminState>,
}

/// The example web chat (docs/architecture.md "Development defaults"): the `@chatwire/client`
/// example bundled into one page (`clients/typescript/examples/web-chat`, rebuilt by
/// `scripts/regen`).
const EXAMPLE_PAGE: &str =
    include_str!("../../../clients/typescript/examples/web-chat/dist/index.html");

/// The example page's icon, drawn by the same build (`examples/web-chat/build.mjs`).
const EXAMPLE_ICON: &[u8] =
    include_bytes!("../../../clients/typescript/examples/web-chat/dist/favicon.ico");

/// The routes the API document leaves out, with why; every other route is an admin API route
/// (`admin::routes`, where utoipa-axum documents each route it adds).
pub const UNDOCUMENTED_ROUTES: &[(&str, &str)] = &[
    (
        "/v1/ws",
        "the session protocol's WebSocket upgrade (docs/protocol.md)",
    ),
    ("/", "the example web chat"),
    ("/favicon.ico", "the example web chat's icon"),
    ("/openapi.json", "the document itself"),
    ("/docs/", "Swagger UI, the document's browser"),
];

/// The server's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .route("/", get(|| async { axum::response::Html(EXAMPLE_PAGE) }))
        .route(
            "/favicon.ico",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "image/x-icon")],
                    EXAMPLE_ICON,
                )
            }),
        )
        .merge(admin::routes(&state))
        .with_state(state)
}
