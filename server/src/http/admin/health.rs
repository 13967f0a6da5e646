//! The health report behind `/dashboard`: what the node is doing, each backend's state, the
//! cluster's nodes, and a health score 0-100 with the reasons and recommendations behind it.
//! The rules live in [`score`] and nowhere else (docs/operations.md, "Health score").

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::error::ErrorBody;
use crate::chat::ids::RoomId;
use crate::http::AppState;
use crate::telemetry::{ProcessStats, Snapshot, quantile};

/// Rates and latency quantiles cover the time since a snapshot at least this old (and at
/// most twice as old: a newer one replaces it then).
const WINDOW_S: f64 = 5.0;

/// A lane deeper than this counts as backed up.
pub(super) const LANE_BACKLOG: u64 = 1000;
/// Acknowledgements slower than this at p99 count as slow.
pub(super) const SLOW_ACK_S: f64 = 1.0;
/// Descriptor use above this share of the limit counts as close to the limit.
pub(super) const FD_SHARE: f64 = 0.8;

/// The snapshot rates are computed against.
#[derive(Debug, Default)]
pub(super) struct Window(Mutex<Option<(Instant, Snapshot)>>);

/// One backend's state.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct BackendHealth {
    /// `store`, `pipeline`, `fanout`, `redis`.
    pub(super) name: String,
    /// True when the node cannot serve without it.
    pub(super) critical: bool,
    /// `ok` or `down`.
    pub(super) status: String,
    /// Why it is down (empty when ok).
    pub(super) detail: String,
}

/// One consumer's lanes.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct LaneHealth {
    /// `push` or `app`.
    pub(super) consumer: String,
    /// Events waiting in the high lane.
    pub(super) high: u64,
    /// Events waiting in the medium lane.
    pub(super) medium: u64,
    /// Events waiting in the low lane.
    pub(super) low: u64,
    /// Events in the dead-letter queue.
    pub(super) dead_letters: u64,
}

/// A live node of the cluster.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct NodeHealth {
    /// Its id.
    pub(super) node_id: String,
    /// Where its clients connect.
    pub(super) address: String,
    /// True for the node that answered.
    pub(super) this_node: bool,
}

/// Per-second rates over the window.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub(super) struct Rates {
    /// Sends acknowledged per second.
    pub(super) sends_per_s: f64,
    /// Room event batches handed to sessions per second.
    pub(super) deliveries_per_s: f64,
    /// Session requests answered per second.
    pub(super) requests_per_s: f64,
    /// Seconds the window covers (0 on the first report: rates are 0 then).
    pub(super) window_s: f64,
}

/// Counts since the process started.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub(super) struct Totals {
    /// Sends acknowledged.
    pub(super) sends: u64,
    /// Room event batches handed to sessions.
    pub(super) deliveries: u64,
    /// Session requests answered.
    pub(super) requests: u64,
    /// Rate-limit refusals.
    pub(super) rate_limited: u64,
    /// Sessions closed as slow consumers.
    pub(super) slow_consumer_closes: u64,
    /// Store operations that failed.
    pub(super) store_errors: u64,
}

/// Why the score is not 100, and what to do.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct Finding {
    /// The rule (see docs/operations.md): `store_down`, `backend_down`, `draining`,
    /// `dead_letters`, `lane_backlog`, `store_errors`, `slow_consumers`, `slow_acks`,
    /// `fds_near_limit`.
    pub(super) rule: String,
    /// Points taken off.
    pub(super) penalty: u32,
    /// What is wrong.
    pub(super) reason: String,
    /// What to do about it.
    pub(super) recommendation: String,
}

/// The health of this node (and the nodes of its cluster).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub(super) struct HealthReport {
    /// 0-100: 100 minus the findings' penalties.
    pub(super) score: u32,
    /// `healthy` (90 and up), `degraded` (60 and up) or `critical`.
    pub(super) status: String,
    /// Why the score is what it is; empty at 100.
    pub(super) findings: Vec<Finding>,
    /// This node's id.
    pub(super) node_id: String,
    /// The server's version.
    pub(super) version: String,
    /// Seconds since the server started.
    pub(super) uptime_s: u64,
    /// True while the server drains.
    pub(super) draining: bool,
    /// Live sessions on this node.
    pub(super) connections: u64,
    /// Rooms whose state this node's writers hold.
    pub(super) active_rooms: u64,
    /// Rates over the window.
    pub(super) rates: Rates,
    /// Counts since start.
    pub(super) totals: Totals,
    /// Send→ack latency p50 over the window (since start on the first report), ms.
    pub(super) ack_p50_ms: Option<f64>,
    /// Send→ack latency p99 over the window (since start on the first report), ms.
    pub(super) ack_p99_ms: Option<f64>,
    /// Each backend.
    pub(super) backends: Vec<BackendHealth>,
    /// Each webhook consumer's lanes.
    pub(super) lanes: Vec<LaneHealth>,
    /// The cluster's live nodes (this node alone outside a cluster).
    pub(super) nodes: Vec<NodeHealth>,
    /// Process CPU seconds.
    pub(super) cpu_seconds: f64,
    /// Resident memory, bytes.
    pub(super) resident_bytes: u64,
    /// Open file descriptors.
    pub(super) open_fds: u64,
    /// The descriptor limit.
    pub(super) max_fds: u64,
}

/// What the score is computed from.
#[derive(Debug, Clone, Default)]
pub(super) struct Inputs {
    pub(super) backends: Vec<BackendHealth>,
    pub(super) draining: bool,
    pub(super) lanes: Vec<LaneHealth>,
    /// Store errors, slow-consumer closes during the window.
    pub(super) store_errors: u64,
    pub(super) slow_consumer_closes: u64,
    pub(super) ack_p99_s: Option<f64>,
    pub(super) open_fds: u64,
    pub(super) max_fds: u64,
}

fn finding(rule: &str, penalty: u32, reason: String, recommendation: &str) -> Finding {
    Finding {
        rule: rule.to_owned(),
        penalty,
        reason,
        recommendation: recommendation.to_owned(),
    }
}

/// The health score and its findings: the rules of docs/operations.md, "Health score".
pub(super) fn score(inputs: &Inputs) -> (u32, Vec<Finding>) {
    let mut findings = Vec::new();
    for backend in inputs.backends.iter().filter(|b| b.status != "ok") {
        if backend.name == "store" {
            findings.push(finding(
                "store_down",
                50,
                format!("store: {}", backend.detail),
                "Check the store (the data folder's disk, or Cassandra): nothing can be written \
                 until it answers.",
            ));
        } else if backend.critical {
            findings.push(finding(
                "backend_down",
                40,
                format!("{}: {}", backend.name, backend.detail),
                "Check RabbitMQ: commands fail fast while the pipeline's circuit is open.",
            ));
        } else {
            findings.push(finding(
                "backend_down",
                25,
                format!("{}: {}", backend.name, backend.detail),
                "Check Redis: rate limits and cross-node fan-out depend on it (delivery falls \
                 back to the store, slower).",
            ));
        }
    }
    if inputs.draining {
        findings.push(finding(
            "draining",
            30,
            "the node is draining".into(),
            "Expected during a deploy; otherwise restart the node.",
        ));
    }
    let dead: u64 = inputs.lanes.iter().map(|l| l.dead_letters).sum();
    if dead > 0 {
        findings.push(finding(
            "dead_letters",
            10,
            format!("{dead} downstream events in the dead letters"),
            "Fix the webhook receiver, then replay them (POST \
             /admin/events/dead-letters/{id}/replay).",
        ));
    }
    for lane in &inputs.lanes {
        let deepest = lane.high.max(lane.medium).max(lane.low);
        if deepest > LANE_BACKLOG {
            findings.push(finding(
                "lane_backlog",
                10,
                format!(
                    "{} consumer: {deepest} events waiting in a lane",
                    lane.consumer
                ),
                "The webhook receiver is slow or failing: check it and its timeout_ms.",
            ));
        }
    }
    if inputs.store_errors > 0 {
        findings.push(finding(
            "store_errors",
            15,
            format!("{} store operations failed recently", inputs.store_errors),
            "Check the store's logs and disk; clients see UNAVAILABLE and retry.",
        ));
    }
    if inputs.slow_consumer_closes > 0 {
        findings.push(finding(
            "slow_consumers",
            5,
            format!(
                "{} sessions closed as slow consumers recently",
                inputs.slow_consumer_closes
            ),
            "Clients read too slowly: check their network, or raise \
             session.outbound_queue_frames.",
        ));
    }
    if let Some(p99) = inputs.ack_p99_s
        && p99 > SLOW_ACK_S
    {
        findings.push(finding(
            "slow_acks",
            10,
            format!("send→ack p99 is {:.0} ms", p99 * 1000.0),
            "The store is slow to make writes durable: check its disk or cluster.",
        ));
    }
    if inputs.max_fds > 0 && inputs.open_fds as f64 > FD_SHARE * inputs.max_fds as f64 {
        findings.push(finding(
            "fds_near_limit",
            15,
            format!(
                "{} of {} file descriptors open",
                inputs.open_fds, inputs.max_fds
            ),
            "Raise the open-files limit (ulimit -n) or spread connections over more nodes.",
        ));
    }
    let penalty: u32 = findings.iter().map(|f| f.penalty).sum();
    (100u32.saturating_sub(penalty), findings)
}

/// The status word of a score.
pub(super) fn status_of(score: u32) -> &'static str {
    match score {
        90.. => "healthy",
        60.. => "degraded",
        _ => "critical",
    }
}

/// The store and every probe, each with its state.
async fn backends(state: &AppState) -> Vec<BackendHealth> {
    let services = &state.services;
    let mut out = Vec::new();
    let probe = RoomId::parse("readyz.probe").ok();
    let store = match probe {
        Some(room) => services.store.head(&room).await.map(|_| ()),
        None => Ok(()),
    };
    out.push(BackendHealth {
        name: "store".into(),
        critical: true,
        status: if store.is_ok() { "ok" } else { "down" }.into(),
        detail: store.err().map(|e| e.to_string()).unwrap_or_default(),
    });
    for probe in &services.probes {
        let checked = probe.check().await;
        out.push(BackendHealth {
            name: probe.name().into(),
            critical: probe.critical(),
            status: if checked.is_ok() { "ok" } else { "down" }.into(),
            detail: checked.err().unwrap_or_default(),
        });
    }
    out
}

/// The health report of this node: score, findings, rates, latency, backends, lanes, nodes.
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, description = "The health report", body = HealthReport),
        (status = 401, description = "The admin key is missing or wrong", body = ErrorBody)))]
pub(super) async fn health(State(state): State<AppState>) -> Json<HealthReport> {
    let services = &state.services;
    let now = Snapshot::take();
    let (rates, window_buckets, window) = {
        let mut last = state
            .admin
            .window
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = match last.as_ref() {
            Some((at, before)) if at.elapsed().as_secs_f64() >= 1.0 => {
                let seconds = at.elapsed().as_secs_f64();
                let rate = |name: &str| (now.total(name) - before.total(name)).max(0.0) / seconds;
                let buckets: Vec<(f64, f64)> = now
                    .ack_buckets
                    .iter()
                    .map(|&(le, count)| {
                        let earlier = before
                            .ack_buckets
                            .iter()
                            .find(|(l, _)| *l == le)
                            .map_or(0.0, |(_, c)| *c);
                        (le, count - earlier)
                    })
                    .collect();
                let rates = Rates {
                    sends_per_s: rate("chatwire_send_ack_seconds_count"),
                    deliveries_per_s: rate("chatwire_deliveries_total"),
                    requests_per_s: rate("chatwire_requests_total"),
                    window_s: seconds,
                };
                (rates, buckets, Some(before.clone()))
            }
            _ => (Rates::default(), now.ack_buckets.clone(), None),
        };
        if last
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed().as_secs_f64() >= 2.0 * WINDOW_S)
        {
            *last = Some((Instant::now(), now.clone()));
        }
        result
    };
    let since = |name: &str| {
        let before = window.as_ref().map_or(0.0, |b| b.total(name));
        (now.total(name) - before).max(0.0) as u64
    };
    let p50 = quantile(&window_buckets, 0.5);
    let p99 = quantile(&window_buckets, 0.99);
    let lanes: Vec<LaneHealth> = super::events::consumer_stats(&state)
        .await
        .map(|consumers| {
            consumers
                .into_iter()
                .map(|c| LaneHealth {
                    consumer: c.consumer,
                    high: c.lanes.high,
                    medium: c.lanes.medium,
                    low: c.lanes.low,
                    dead_letters: c.dead_letters,
                })
                .collect()
        })
        .unwrap_or_default();
    let backends = backends(&state).await;
    let nodes = match &state.admin.registry {
        Some(registry) => registry
            .live_nodes()
            .await
            .map(|nodes| {
                nodes
                    .into_iter()
                    .map(|n| NodeHealth {
                        this_node: n.node_id == services.node_id,
                        node_id: n.node_id,
                        address: n.address,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        None => vec![NodeHealth {
            node_id: services.node_id.clone(),
            address: state.admin.address.clone(),
            this_node: true,
        }],
    };
    let process = ProcessStats::read().unwrap_or_default();
    let draining = services.draining.load(Ordering::SeqCst);
    let inputs = Inputs {
        backends: backends.clone(),
        draining,
        lanes: lanes.clone(),
        store_errors: since("chatwire_store_errors_total"),
        slow_consumer_closes: since("chatwire_slow_consumer_closes_total"),
        ack_p99_s: p99,
        open_fds: process.open_fds,
        max_fds: process.max_fds,
    };
    let (score, findings) = score(&inputs);
    let total = |name: &str| now.total(name).max(0.0) as u64;
    Json(HealthReport {
        score,
        status: status_of(score).into(),
        findings,
        node_id: services.node_id.clone(),
        version: env!("CARGO_PKG_VERSION").into(),
        uptime_s: state.admin.started.elapsed().as_secs(),
        draining,
        connections: services.fanout.session_count() as u64,
        active_rooms: crate::telemetry::rooms_active() as u64,
        rates,
        totals: Totals {
            sends: total("chatwire_send_ack_seconds_count"),
            deliveries: total("chatwire_deliveries_total"),
            requests: total("chatwire_requests_total"),
            rate_limited: total("chatwire_rate_limited_total"),
            slow_consumer_closes: total("chatwire_slow_consumer_closes_total"),
            store_errors: total("chatwire_store_errors_total"),
        },
        ack_p50_ms: p50.map(|s| s * 1000.0),
        ack_p99_ms: p99.map(|s| s * 1000.0),
        backends,
        lanes,
        nodes,
        cpu_seconds: process.cpu_seconds,
        resident_bytes: process.resident_bytes,
        open_fds: process.open_fds,
        max_fds: process.max_fds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(name: &str, critical: bool, ok: bool) -> BackendHealth {
        BackendHealth {
            name: name.into(),
            critical,
            status: if ok { "ok" } else { "down" }.into(),
            detail: if ok { "" } else { "connection refused" }.into(),
        }
    }

    #[test]
    fn a_quiet_healthy_node_scores_100() {
        let inputs = Inputs {
            backends: vec![backend("store", true, true), backend("redis", false, true)],
            open_fds: 10,
            max_fds: 1024,
            ..Inputs::default()
        };
        let (points, findings) = score(&inputs);
        assert_eq!((points, findings.len()), (100, 0));
        assert_eq!(status_of(points), "healthy");
    }

    #[test]
    fn each_rule_takes_its_points_off_with_a_reason() {
        let inputs = Inputs {
            backends: vec![backend("store", true, true), backend("redis", false, false)],
            ..Inputs::default()
        };
        let (points, findings) = score(&inputs);
        assert_eq!(points, 75);
        assert_eq!(findings[0].rule, "backend_down");
        assert!(findings[0].reason.starts_with("redis: "), "{findings:?}");

        let inputs = Inputs {
            backends: vec![backend("store", true, false)],
            draining: true,
            lanes: vec![LaneHealth {
                consumer: "app".into(),
                high: LANE_BACKLOG + 1,
                medium: 0,
                low: 0,
                dead_letters: 3,
            }],
            store_errors: 2,
            slow_consumer_closes: 1,
            ack_p99_s: Some(2.0),
            open_fds: 900,
            max_fds: 1000,
        };
        let (points, findings) = score(&inputs);
        let rules: Vec<&str> = findings.iter().map(|f| f.rule.as_str()).collect();
        assert_eq!(
            rules,
            [
                "store_down",
                "draining",
                "dead_letters",
                "lane_backlog",
                "store_errors",
                "slow_consumers",
                "slow_acks",
                "fds_near_limit"
            ]
        );
        assert_eq!(points, 0, "the score does not go below 0");
        assert_eq!(status_of(points), "critical");
        assert_eq!(status_of(60), "degraded");
    }
}
