//! The review queue's flow (docs/operations.md "Review queue"; storage and item rules in
//! [`crate::backend::reviews`]): the stage's flags and members' reports open items, each new
//! flag or report goes to the webhook consumers as a `moderation.flagged` event, and a review
//! approves the message or removes it (a Delete with the reviewer's reason, so the room's
//! audit records it).

use bytes::Bytes;
use serde_json::json;

use crate::backend::events::{DownstreamEvent, Lane};
use crate::backend::reviews::{
    Resolution, ReviewItem, ReviewKey, ReviewReport, resolved, with_flag, with_report,
};
use crate::chat::command::{Outcome, RoomCommand, RoomOp, Verdict};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};
use crate::session::services::Services;

/// The downstream event of a new flag or report.
pub const FLAGGED_KIND: &str = "moderation.flagged";

impl ReviewKey {
    /// The item's id as clients and the admin API see it: `<room id>:<seq>`. Room ids may hold
    /// `:` themselves; the seq never does, so the id parses from the right.
    pub fn id(&self) -> String {
        format!("{}:{}", self.room, self.seq)
    }

    /// Parses an id made by [`ReviewKey::id`].
    pub fn parse_id(id: &str) -> Result<Self, ChatError> {
        let bad = || ChatError::invalid("review_id", "expected <room id>:<seq>");
        let (room, seq) = id.rsplit_once(':').ok_or_else(bad)?;
        Ok(Self {
            room: RoomId::parse(room).map_err(|_| bad())?,
            seq: seq.parse().ok().filter(|seq| *seq > 0).ok_or_else(bad)?,
        })
    }
}

/// Where an item's new entry came from, for its event.
enum Source<'a> {
    /// The moderation stage flagged the message.
    Flag(&'a Verdict),
    /// A member reported it.
    Report(&'a ReviewReport),
}

/// Queues the `moderation.flagged` event of a new flag or report for the webhook consumers
/// (none configured: nothing to do). Its id names the entry (`review:<item id>:flag`, or
/// `:report:<reporter>`), so a retried publish is deduped by the queue and the receiver.
async fn publish(services: &Services, key: &ReviewKey, item: &ReviewItem, source: Source<'_>) {
    let Some(events) = &services.events else {
        return;
    };
    let (entry, data) = match source {
        Source::Flag(verdict) => (
            "flag".to_owned(),
            json!({"source": "filter", "score": verdict.score, "reasons": verdict.reasons}),
        ),
        Source::Report(report) => (
            format!("report:{}", report.reporter),
            json!({"source": "report", "reporter": report.reporter, "reason": report.reason}),
        ),
    };
    let mut payload = json!({
        "reviewId": key.id(),
        "roomId": key.room.as_str(),
        "targetSeq": key.seq,
        "sender": item.sender,
        "reports": item.reports.len(),
        "open": item.is_open(),
    });
    if let (Some(payload), serde_json::Value::Object(data)) = (payload.as_object_mut(), data) {
        payload.extend(data);
    }
    let event = DownstreamEvent {
        id: format!("review:{}:{entry}", key.id()),
        lane: Lane::Medium,
        kind: FLAGGED_KIND.to_owned(),
        room_id: Some(key.room.to_string()),
        seq: None,
        occurred_at_ms: services.clock.now_ms(),
        payload: Bytes::from(payload.to_string()),
    };
    if let Err(error) = events.publish(vec![event]).await {
        tracing::warn!(%error, review = %key.id(), "moderation.flagged event not queued");
    }
}

/// Records the stage's flag of message `seq` (posted or edited by `sender`) in the review
/// queue. The message is already acknowledged: a store failure here is logged, never returned.
pub async fn record_flag(
    services: &Services,
    room: &RoomId,
    seq: u64,
    sender: &UserId,
    verdict: &Verdict,
) {
    let key = ReviewKey {
        room: room.clone(),
        seq,
    };
    let now = services.clock.now_ms();
    let change = |current: Option<&ReviewItem>| {
        with_flag(
            current,
            &key,
            sender.as_str(),
            verdict.score,
            &verdict.reasons,
            now,
        )
    };
    match services.store.update_review(&key, &change).await {
        Ok(update) => {
            tracing::info!(room = %room, sender = %sender, seq, score = verdict.score,
                reasons = %verdict.reasons.join(","), "moderation: message flagged for review");
            if let (true, Some(item)) = (update.changed, &update.item) {
                publish(services, &key, item, Source::Flag(verdict)).await;
            }
        }
        Err(error) => {
            tracing::error!(%error, room = %room, seq, "moderation: flag not recorded");
        }
    }
}

/// Records `reporter`'s report of message `key` (written by `sender`). Repeats by the same
/// reporter change nothing and answer the same id.
pub async fn report(
    services: &Services,
    key: &ReviewKey,
    sender: &str,
    reporter: &UserId,
    reason: String,
) -> Result<ReviewItem, ChatError> {
    let report = ReviewReport {
        reporter: reporter.to_string(),
        reason,
        at_ms: services.clock.now_ms(),
    };
    let change = |current: Option<&ReviewItem>| with_report(current, key, sender, &report);
    let update = services.store.update_review(key, &change).await?;
    let item = update.item.ok_or(ChatError::Internal)?;
    if update.changed {
        publish(services, key, &item, Source::Report(&report)).await;
    }
    Ok(item)
}

/// Reviews item `key` as `reviewer`: approves it (the message stays) or removes the message (a
/// Delete with `reason`, by `reviewer`, privileged when `privileged`). An item reviewed already
/// is answered as it stands; the first review stands. NotFound when there is no item.
pub async fn resolve(
    services: &Services,
    key: &ReviewKey,
    removed: bool,
    reviewer: &UserId,
    reason: String,
    privileged: bool,
) -> Result<ReviewItem, ChatError> {
    let item = services
        .store
        .review(key)
        .await?
        .ok_or(ChatError::NotFound)?;
    if !item.is_open() {
        return Ok(item);
    }
    let mut deleted_seq = 0;
    if removed {
        let command = RoomCommand {
            room: key.room.clone(),
            actor: reviewer.clone(),
            op: RoomOp::Delete {
                target_seq: key.seq,
                reason: reason.clone(),
            },
            trace_id: String::new(),
            privileged,
        };
        match services.pipeline.execute(command).await {
            Ok(Outcome::Seq(seq)) => deleted_seq = seq,
            Ok(_) => {}
            // Deleted already (by its author or anyone): the removal stands without a seq.
            Err(ChatError::MessageNotFound { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    let resolution = Resolution {
        removed,
        by: reviewer.to_string(),
        reason,
        at_ms: services.clock.now_ms(),
        deleted_seq,
    };
    let change = |current: Option<&ReviewItem>| resolved(current?, resolution.clone());
    let update = services.store.update_review(key, &change).await?;
    update.item.ok_or(ChatError::NotFound)
}
