//! Downstream event queues (docs/architecture.md "Downstream events"): dead letters listed and
//! replayed, lane depths.
//!
//! ```text
//!  GET  /admin/events/dead-letters?consumer=app&limit=   ──▶ EventQueue::dead_letters
//!  POST /admin/events/dead-letters/{id}/replay?consumer= ──▶ EventQueue::replay_dead_letter
//!  GET  /admin/events/stats                              ──▶ depth per lane, dlq_len
//! ```
//!
//! A consumer is named `push` (offline push webhook) or `app` (app webhook); one that is not
//! configured answers 404.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::Query;
use crate::backend::events::{EventQueue, Lane, QueueError};
use crate::http::AppState;

/// The consumer names a server may have.
const CONSUMERS: [&str; 2] = ["push", "app"];

/// Default and largest page of dead letters.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1_000;

impl From<QueueError> for ApiError {
    fn from(err: QueueError) -> Self {
        tracing::warn!(error = %err, "admin: event queue failed");
        match err {
            QueueError::Unavailable(_) | QueueError::LeaseLost => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "event queue: not answering",
            ),
            QueueError::Corrupt(_) => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL",
                "event queue: stored data is corrupt",
            ),
        }
    }
}

/// The queue of the consumer named `name`.
fn queue(state: &AppState, name: &str) -> ApiResult<Arc<dyn EventQueue>> {
    if !CONSUMERS.contains(&name) {
        return Err(ApiError::invalid(
            "consumer",
            format!("unknown consumer {name:?}: push or app"),
        ));
    }
    state
        .admin
        .event_queues()
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, q)| Arc::clone(q))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                format!("the {name} consumer is not configured (events.{name})"),
            )
        })
}

/// Which consumer's dead letters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// `push` (offline push webhook) or `app` (app webhook).
    consumer: String,
    /// At most this many, oldest dead first. Default 100, at most 1000.
    limit: Option<u32>,
}

/// One event that used up its retries.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadLetterView {
    /// The event id (`room:seq:kind` for room log events): replay it by this id.
    pub(super) id: String,
    /// What happened, dotted: `message.created`, `member.joined`, ...
    pub(super) kind: String,
    /// Its lane: `high`, `medium`, `low`.
    pub(super) lane: String,
    /// The room, for room events.
    pub(super) room: Option<String>,
    /// The room log seq, for log events.
    pub(super) seq: Option<u64>,
    /// Deliveries tried.
    pub(super) attempts: u32,
    /// The last failure, as the consumer reported it.
    pub(super) reason: String,
    /// When it was dead-lettered, Unix ms.
    pub(super) dead_at_ms: i64,
    /// When the event happened, Unix ms.
    pub(super) occurred_at_ms: i64,
}

/// A page of dead letters.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DeadLetters {
    /// The consumer.
    pub(super) consumer: String,
    /// Dead letters, oldest dead first.
    pub(super) dead_letters: Vec<DeadLetterView>,
}

/// Lists a consumer's dead-letter queue: events whose deliveries failed through every retry
/// tier.
#[utoipa::path(get, path = "/events/dead-letters", tag = "events", params(ListQuery),
    responses((status = 200, body = DeadLetters), (status = 400, body = ErrorBody),
        (status = 404, description = "The consumer is not configured", body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<DeadLetters>> {
    let queue = queue(&state, &query.consumer)?;
    let limit = match query.limit {
        None | Some(0) => DEFAULT_LIMIT,
        Some(n) => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
    };
    let letters = queue.dead_letters(limit).await?;
    let dead_letters = letters
        .into_iter()
        .map(|letter| DeadLetterView {
            id: letter.event.id,
            kind: letter.event.kind,
            lane: letter.event.lane.as_str().to_owned(),
            room: letter.event.room_id,
            seq: letter.event.seq,
            attempts: letter.attempts,
            reason: letter.reason,
            dead_at_ms: letter.dead_at_ms,
            occurred_at_ms: letter.event.occurred_at_ms,
        })
        .collect();
    Ok(Json(DeadLetters {
        consumer: query.consumer,
        dead_letters,
    }))
}

/// Which consumer's dead letter to replay.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReplayQuery {
    /// `push` or `app`.
    consumer: String,
}

/// A replay's outcome.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Replayed {
    /// The event id.
    pub(super) id: String,
    /// Always true (an unknown id answers 404).
    pub(super) replayed: bool,
}

/// Puts a dead letter back in its lane, due now, with a fresh set of retries. The receiver
/// may see it again later than events behind it: it dedupes by id and orders by seq.
#[utoipa::path(post, path = "/events/dead-letters/{id}/replay", tag = "events",
    params(("id" = String, Path, description = "The event id, percent-encoded"), ReplayQuery),
    responses((status = 200, body = Replayed), (status = 400, body = ErrorBody),
        (status = 404, description = "No such dead letter, or the consumer is not configured",
            body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(query): Query<ReplayQuery>,
) -> ApiResult<Json<Replayed>> {
    let queue = queue(&state, &query.consumer)?;
    let now_ms = state.services.clock.now_ms();
    if queue.replay_dead_letter(&id, now_ms).await? {
        tracing::info!(consumer = %query.consumer, %id, "dead letter replayed");
        Ok(Json(Replayed { id, replayed: true }))
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            format!("no dead letter {id:?} in the {} consumer", query.consumer),
        ))
    }
}

/// Events waiting or in delivery per lane.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct LaneDepths {
    /// Messages, calls.
    pub(super) high: u64,
    /// Membership, edits, deletes, reactions, room changes.
    pub(super) medium: u64,
    /// Presence, analytics.
    pub(super) low: u64,
}

/// One consumer's queue.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ConsumerStats {
    /// `push` or `app`.
    pub(super) consumer: String,
    /// Events waiting (new or between retries) or in delivery, per lane.
    pub(super) lanes: LaneDepths,
    /// Events in the dead-letter queue.
    pub(super) dead_letters: u64,
}

/// Every configured consumer's queue.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct EventStats {
    /// One entry per configured consumer; empty when none is.
    pub(super) consumers: Vec<ConsumerStats>,
}

/// The depth of each consumer's lanes and the size of its dead-letter queue.
pub(super) async fn consumer_stats(state: &AppState) -> Result<Vec<ConsumerStats>, QueueError> {
    let mut out = Vec::new();
    for (name, queue) in state.admin.event_queues() {
        let mut depths = [0; 3];
        for (depth, lane) in depths.iter_mut().zip(Lane::ALL) {
            *depth = queue.depth(lane).await?;
        }
        out.push(ConsumerStats {
            consumer: (*name).to_owned(),
            lanes: LaneDepths {
                high: depths[0],
                medium: depths[1],
                low: depths[2],
            },
            dead_letters: queue.dlq_len().await?,
        });
    }
    Ok(out)
}

/// Lane depths and dead-letter queue sizes per consumer.
#[utoipa::path(get, path = "/events/stats", tag = "events", operation_id = "event_stats",
    responses((status = 200, body = EventStats), (status = 401, body = ErrorBody),
        (status = 503, body = ErrorBody)))]
pub(super) async fn stats(State(state): State<AppState>) -> ApiResult<Json<EventStats>> {
    Ok(Json(EventStats {
        consumers: consumer_stats(&state).await?,
    }))
}
