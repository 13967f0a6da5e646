//! Stats, readiness and Prometheus metrics.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use crate::chat::ids::RoomId;
use crate::http::AppState;

/// What this node is doing.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Stats {
    /// Live sessions on this node.
    pub(super) sessions: usize,
    /// Seconds since the server started.
    pub(super) uptime_s: u64,
    /// The server's version.
    pub(super) version: String,
    /// This node's id.
    pub(super) node_id: String,
    /// True while the server drains.
    pub(super) draining: bool,
    /// Admin requests served (authenticated or not).
    pub(super) admin_requests: u64,
}

/// This node's sessions, uptime and version.
#[utoipa::path(get, path = "/stats", tag = "ops",
    responses((status = 200, body = Stats), (status = 401, body = ErrorBody)))]
pub(super) async fn stats(State(state): State<AppState>) -> Json<Stats> {
    let services = &state.services;
    Json(Stats {
        sessions: services.fanout.session_count(),
        uptime_s: state.admin.started.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        node_id: services.node_id.clone(),
        draining: services.draining.load(Ordering::SeqCst),
        admin_requests: state.admin.requests(),
    })
}

/// Liveness: 200 `ok` while the process serves HTTP (no backend is asked).
#[utoipa::path(get, path = "/healthz", tag = "ops", security(()),
    responses((status = 200, description = "The process is up", body = String,
        content_type = "text/plain", example = "ok")))]
pub(super) async fn healthz() -> &'static str {
    "ok"
}

/// The dashboard page (docs/operations.md, "Dashboard").
const DASHBOARD: &str = include_str!("dashboard.html");

/// The live dashboard: one page without outside assets. It asks for the admin key, keeps it
/// in the tab's sessionStorage and polls `GET /admin/health` with it as a Bearer header.
#[utoipa::path(get, path = "/dashboard", tag = "ops", security(()),
    responses((status = 200, description = "The dashboard page", body = String,
        content_type = "text/html")))]
pub(super) async fn dashboard() -> axum::response::Html<&'static str> {
    axum::response::Html(DASHBOARD)
}

/// Per-backend readiness.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Ready {
    /// `ready`.
    pub(super) status: String,
    /// The store's state: `ok`.
    pub(super) store: String,
    /// Every other backend by name (`pipeline`, `fanout`, `events`): `ok`, or `down: reason`
    /// for one that does not answer. Empty on the embedded default.
    pub(super) backends: std::collections::BTreeMap<String, String>,
}

/// 200 when the store and every critical backend answer and the server is not draining; 503
/// otherwise. A non-critical backend that is down (the Redis fan-out) shows in `backends` but
/// keeps the node ready.
#[utoipa::path(get, path = "/readyz", tag = "ops", security(()),
    responses((status = 200, body = Ready), (status = 503, body = ErrorBody)))]
pub(super) async fn readyz(State(state): State<AppState>) -> ApiResult<Json<Ready>> {
    let services = &state.services;
    if services.draining.load(Ordering::SeqCst) {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "draining",
        ));
    }
    let probe = RoomId::parse("readyz.probe").map_err(|_| ApiError::no_route())?;
    if let Err(err) = services.store.head(&probe).await {
        tracing::warn!(error = %err, "readiness: store failed");
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "store: not answering",
        ));
    }
    let mut backends = std::collections::BTreeMap::new();
    for probe in &services.probes {
        match probe.check().await {
            Ok(()) => {
                backends.insert(probe.name().to_owned(), "ok".to_owned());
            }
            Err(reason) if probe.critical() => {
                tracing::warn!(backend = probe.name(), %reason, "readiness: backend failed");
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    format!("{}: {reason}", probe.name()),
                ));
            }
            Err(reason) => {
                backends.insert(probe.name().to_owned(), format!("down: {reason}"));
            }
        }
    }
    Ok(Json(Ready {
        status: "ready".into(),
        store: "ok".into(),
        backends,
    }))
}

/// The webhook consumers' lane depths and dead-letter queue sizes (none when no consumer is
/// configured; a queue that does not answer is logged and left out).
async fn event_gauges(state: &AppState) -> Vec<(String, [u64; 3], u64)> {
    match super::events::consumer_stats(state).await {
        Ok(consumers) => consumers
            .into_iter()
            .map(|c| {
                (
                    c.consumer.to_string(),
                    [c.lanes.high, c.lanes.medium, c.lanes.low],
                    c.dead_letters,
                )
            })
            .collect(),
        Err(err) => {
            tracing::warn!(error = %err, "metrics: event queue failed");
            Vec::new()
        }
    }
}

/// Prometheus text exposition of every family in docs/operations.md's metrics table.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let services = &state.services;
    let gauges = crate::telemetry::StateGauges {
        sessions: services.fanout.session_count(),
        uptime_s: state.admin.started.elapsed().as_secs(),
        draining: services.draining.load(Ordering::SeqCst),
        admin_requests: state.admin.requests(),
        events: event_gauges(&state).await,
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::telemetry::render(&gauges),
    )
}
