//! Retention (docs/architecture.md "Storage"): drop a room's whole old time buckets, in one write
//! transaction.
//!
//! ```text
//!  buckets:  b0   b1   b2 | b3   b4(head)        keep_from_ms falls in b3
//!            └─ dropped ──┘ └─ kept whole ┘
//! ```
//!
//! A bucket `b` covers `[b * width, (b + 1) * width)`; it is dropped when it ends at or before
//! `keep_from_ms`, so every event in it is older than that, and never when it holds the head.
//! Buckets rise with the seq, so the dropped buckets are a prefix of the log and the lowest
//! retained seq is the first seq of the oldest kept bucket. That seq is recorded with the
//! ordinal of the newest dropped message (the `retention` table), so that reads start there
//! and ordinals of later reads still count the dropped messages. Edits kept in a kept bucket
//! keep their index row even when their target was dropped.
//!
//! The cut is one redb write transaction, so it runs between two appends, never inside one,
//! and reads the head the appends left. It never touches the head, rooms, members, watermarks
//! or dedupe entries (they expire on their own).

use chatwire_protocol::v1;
use redb::{ReadableDatabase, ReadableTable};

use super::Inner;
use super::append::read_head;
use super::fail::{Fail, corrupt};
use super::records::decode;
use super::tables::{
    BUCKET_STARTS, BUCKETS, Cut, EDITS, EVENTS, HEADS, MESSAGES, RETENTION, bucket_of, read_cut,
};
use crate::backend::store::RetentionOutcome;

/// Drops the whole buckets of `room` that end at or before `keep_from_ms`, except the head's.
pub(super) fn apply_retention(
    inner: &Inner,
    room: &str,
    keep_from_ms: i64,
) -> Result<RetentionOutcome, Fail> {
    let txn = inner.write()?;
    let outcome = cut(inner, &txn, room, keep_from_ms)?;
    if outcome.dropped_buckets == 0 {
        txn.abort()?;
    } else {
        txn.commit()?;
    }
    Ok(outcome)
}

fn cut(
    inner: &Inner,
    txn: &redb::WriteTransaction,
    room: &str,
    keep_from_ms: i64,
) -> Result<RetentionOutcome, Fail> {
    let mut retention = txn.open_table(RETENTION)?;
    let previous = read_cut(&retention, room)?;
    let unchanged = RetentionOutcome {
        dropped_buckets: 0,
        first_retained_seq: previous.from,
    };
    let Some(head) = read_head(&txn.open_table(HEADS)?, room)? else {
        return Ok(unchanged);
    };
    let mut buckets = txn.open_table(BUCKETS)?;
    let mut starts = txn.open_table(BUCKET_STARTS)?;
    let head_bucket = bucket_of(&starts, room, head.seq)?
        .ok_or_else(|| corrupt(format!("room {room}: no bucket holds head {}", head.seq)))?;
    // Buckets below `inner.bucket(keep_from_ms)` end at or before `keep_from_ms`.
    let below = inner.bucket(keep_from_ms).min(head_bucket);
    let mut dropped = 0u64;
    for entry in buckets.range((room, i64::MIN)..(room, below))? {
        entry?;
        dropped += 1;
    }
    if dropped == 0 {
        return Ok(unchanged);
    }
    // The oldest kept bucket: the head's at the latest, so it exists.
    let from = match buckets.range((room, below)..=(room, i64::MAX))?.next() {
        Some(entry) => entry?.1.value(),
        None => {
            return Err(corrupt(format!(
                "room {room}: no bucket at or after {below}"
            )));
        }
    };
    if from <= previous.from {
        return Err(corrupt(format!(
            "room {room}: retention would move back from seq {} to {from}",
            previous.from
        )));
    }

    let mut messages = txn.open_table(MESSAGES)?;
    let ordinal = match messages
        .range((room, i64::MIN, 0)..(room, below, 0))?
        .next_back()
    {
        Some(entry) => decode::<v1::Message>(entry?.1.value())?.ordinal,
        None => previous.ordinal,
    }
    .max(previous.ordinal);

    messages.retain_in((room, i64::MIN, 0)..(room, below, 0), |_, _| false)?;
    txn.open_table(EVENTS)?
        .retain_in((room, i64::MIN, 0)..(room, below, 0), |_, _| false)?;
    // The edit index rows of dropped edit events. An edit's seq is above its target's, so
    // they all target dropped messages; a kept edit of a dropped message keeps its row, so a
    // later redaction of that message still clears it.
    txn.open_table(EDITS)?
        .retain_in((room, 0, 0)..(room, from, 0), |key, _| key.2 >= from)?;
    buckets.retain_in((room, i64::MIN)..(room, below), |_, _| false)?;
    starts.retain_in((room, 0)..(room, from), |_, _| false)?;
    let cut = Cut { from, ordinal };
    retention.insert(room, (cut.from, cut.ordinal))?;
    Ok(RetentionOutcome {
        dropped_buckets: dropped,
        first_retained_seq: from,
    })
}

/// The lowest retained seq of `room`; 1 while nothing was dropped.
pub(super) fn retained_from(inner: &Inner, room: &str) -> Result<u64, Fail> {
    let txn = inner.db.begin_read()?;
    Ok(read_cut(&txn.open_table(RETENTION)?, room)?.from)
}
