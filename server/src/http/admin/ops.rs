//! Stats, readiness and Prometheus metrics.

use std::fmt::Write as _;
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

/// Appends one metric with its help and type lines.
fn metric(out: &mut String, name: &str, kind: &str, help: &str, labels: &str, value: u64) {
    let _ = write!(
        out,
        "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{labels} {value}\n"
    );
}

/// The webhook consumers' lane depths and dead-letter queue sizes (nothing when no consumer is
/// configured; a queue that does not answer is logged and left out).
async fn event_metrics(out: &mut String, state: &AppState) {
    let consumers = match super::events::consumer_stats(state).await {
        Ok(consumers) if !consumers.is_empty() => consumers,
        Ok(_) => return,
        Err(err) => {
            tracing::warn!(error = %err, "metrics: event queue failed");
            return;
        }
    };
    let _ = write!(
        out,
        "# HELP chatwire_events_queue_depth Downstream events waiting or in delivery, per \
         consumer and lane.\n# TYPE chatwire_events_queue_depth gauge\n"
    );
    for c in &consumers {
        for (lane, depth) in [
            ("high", c.lanes.high),
            ("medium", c.lanes.medium),
            ("low", c.lanes.low),
        ] {
            let _ = writeln!(
                out,
                "chatwire_events_queue_depth{{consumer=\"{}\",lane=\"{lane}\"}} {depth}",
                c.consumer
            );
        }
    }
    let _ = write!(
        out,
        "# HELP chatwire_events_dead_letters Downstream events in the dead-letter queue, per \
         consumer.\n# TYPE chatwire_events_dead_letters gauge\n"
    );
    for c in &consumers {
        let _ = writeln!(
            out,
            "chatwire_events_dead_letters{{consumer=\"{}\"}} {}",
            c.consumer, c.dead_letters
        );
    }
}

/// Prometheus text exposition of this node's gauges and counters.
#[utoipa::path(get, path = "/metrics", tag = "ops", security(()),
    responses((status = 200, description = "Prometheus text format 0.0.4", body = String,
        content_type = "text/plain")))]
pub(super) async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let services = &state.services;
    let sessions = u64::try_from(services.fanout.session_count()).unwrap_or(u64::MAX);
    let draining = u64::from(services.draining.load(Ordering::SeqCst));
    let version = format!("{{version=\"{}\"}}", env!("CARGO_PKG_VERSION"));
    let mut out = String::new();
    let out_ref = &mut out;
    metric(
        out_ref,
        "chatwire_sessions",
        "gauge",
        "Live sessions on this node.",
        "",
        sessions,
    );
    metric(
        out_ref,
        "chatwire_uptime_seconds",
        "gauge",
        "Seconds since the server started.",
        "",
        state.admin.started.elapsed().as_secs(),
    );
    metric(
        out_ref,
        "chatwire_draining",
        "gauge",
        "1 while the server drains.",
        "",
        draining,
    );
    metric(
        out_ref,
        "chatwire_admin_requests_total",
        "counter",
        "Admin API requests, authenticated or not.",
        "",
        state.admin.requests(),
    );
    metric(
        out_ref,
        "chatwire_build_info",
        "gauge",
        "The server's version.",
        &version,
        1,
    );
    event_metrics(out_ref, &state).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
}
