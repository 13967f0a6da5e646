//! The fenced append and the roll-forward (docs/architecture.md "Room writers", steps 3-4).
//!
//! 1. Record the buckets the batch starts (harmless if the transaction then fails: see
//!    `index.rs`).
//! 2. One lightweight transaction on the room's head row: head := batch head, pending := the
//!    encoded batch, `IF seq = expected` (`IF NOT EXISTS` for a new room). Not applied: the
//!    head read at SERIAL is the `Fenced` answer. Timed out: a SERIAL read decides (our batch
//!    is the head and the pending one: applied; anything else: fenced); if even that read
//!    fails the outcome is `Unknown`.
//! 3. Materialize: events, edit index rows, then the writes in order. Every write is an
//!    idempotent upsert or delete, so anyone may redo it.
//! 4. Record `materialized_seq := batch head`: a plain write `USING TIMESTAMP` the head seq, so
//!    a delayed write of an older head never wins over a newer one whatever the clocks. The
//!    batch stays in `pending` (the next transaction replaces it); it is pending while
//!    `materialized_seq` is below the head. One Paxos round per batch (issue 15 M4: clearing
//!    `pending` was a second one).
//!
//! Only a writer rolls a pending batch forward: `load_room`, which a writer calls when it takes
//! a room over, redoes steps 3 and 4 first (the batch is durable from the moment the
//! transaction applied). Readers (`head`) never write: they read the head row at QUORUM and
//! report a pending batch as the head it was appended on, the newest materialized one. A
//! reader that rolled forward would write with its own clock; delayed past the writer's next
//! batch (a delete, an erasure, a removal), its upserts would win last-write-wins and bring
//! the old content or membership back (issue 15 H2; docs/storage-scylla.md).

use std::collections::HashMap;

use chatwire_protocol::v1;
use chatwire_protocol::v1::room_event::Kind;

use super::cql::{big, corrupt, unsigned};
use super::index::IndexRow;
use super::records::{decode, decode_batch, encode_batch};
use super::retention::Cut;
use super::{Inner, ScyllaStore};
use crate::backend::store::{AppendOutcome, Batch, Head, StoreError, Write};
use crate::chat::ids::{RoomId, UserId};

/// Dedupe rows live this long past their window (`expires_at_ms - ts_ms`), in seconds, so a
/// writer clock ahead of the cluster never drops an entry early; reads still compare
/// `expires_at_ms` with the caller's clock.
const DEDUPE_TTL_GRACE_S: i64 = 86_400;
/// CQL's largest TTL (20 years).
const MAX_TTL_S: i64 = 630_720_000;

/// A head row: the head, the last appended batch, and the newest head materialized.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct HeadRow {
    pub(super) head: Head,
    /// The last batch appended (kept after it was materialized, until the next replaces it).
    pub(super) pending: Option<Vec<u8>>,
    /// The newest head whose batch was materialized (0 when none was recorded: rows written
    /// before the column cleared `pending` instead).
    pub(super) materialized_seq: u64,
}

impl HeadRow {
    /// The batch not yet materialized, if any: the last one, while `materialized_seq` is below
    /// the head.
    pub(super) fn unmaterialized(&self) -> Option<&[u8]> {
        self.pending
            .as_deref()
            .filter(|_| self.materialized_seq < self.head.seq)
    }
}

type HeadColumns = (
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<Vec<u8>>,
    Option<i64>,
);

/// The batch's events must continue `expected`: seqs `expected + 1 ..= head.seq`, contiguous,
/// timestamps never going backwards within the batch.
fn check_batch(expected: u64, batch: &Batch) -> Result<(), StoreError> {
    let mut seq = expected;
    let mut last_ts = None;
    for event in &batch.events {
        if seq.checked_add(1) != Some(event.seq) {
            return Err(corrupt(format!(
                "batch event seq {} does not follow {seq}",
                event.seq
            )));
        }
        if last_ts.is_some_and(|ts| event.ts_ms < ts) {
            return Err(corrupt(format!(
                "batch event {} goes back in time to {}",
                event.seq, event.ts_ms
            )));
        }
        seq = event.seq;
        last_ts = Some(event.ts_ms);
    }
    if batch.head.seq != seq {
        return Err(corrupt(format!(
            "batch head {} is not its last event seq {seq}",
            batch.head.seq
        )));
    }
    Ok(())
}

/// The TTL of a dedupe row, in seconds.
fn dedupe_ttl_s(ts_ms: i64, expires_at_ms: i64) -> i32 {
    let window_s = expires_at_ms
        .saturating_sub(ts_ms)
        .max(0)
        .saturating_add(999)
        / 1000;
    let ttl = window_s
        .saturating_add(DEDUPE_TTL_GRACE_S)
        .clamp(1, MAX_TTL_S);
    i32::try_from(ttl).unwrap_or(i32::MAX)
}

/// Seq -> bucket lookups during one materialization: the batch's own events first, then the
/// bucket index (loaded once).
struct Buckets {
    of_batch: HashMap<u64, i64>,
    index: Option<Vec<IndexRow>>,
}

impl Inner {
    /// Reads a head row, at SERIAL consistency when `serial`.
    pub(super) async fn read_head_row(
        &self,
        room: &str,
        serial: bool,
    ) -> Result<Option<HeadRow>, StoreError> {
        let st = if serial {
            &self.st.head_serial
        } else {
            &self.st.head_plain
        };
        let Some((seq, ordinal, ts_ms, pending, materialized)) =
            self.row::<HeadColumns>(st, (room,)).await?
        else {
            return Ok(None);
        };
        let (Some(seq), Some(ordinal), Some(ts_ms)) = (seq, ordinal, ts_ms) else {
            return Err(corrupt(format!("room {room}: incomplete head row")));
        };
        Ok(Some(HeadRow {
            head: Head {
                seq: unsigned(seq)?,
                ordinal: unsigned(ordinal)?,
                ts_ms,
            },
            pending,
            materialized_seq: materialized.map(unsigned).transpose()?.unwrap_or(0),
        }))
    }

    /// The fenced append; `materialize` false stops after the transaction (a crashed writer,
    /// for tests).
    pub(super) async fn append(
        &self,
        room: &str,
        expected: u64,
        batch: &Batch,
        materialize: bool,
    ) -> Result<AppendOutcome, StoreError> {
        if let Err(refused) = check_batch(expected, batch) {
            // As the embedded store does: a stale writer is fenced whatever its batch holds.
            let current = self.read_head_row(room, true).await?.map(|r| r.head);
            let current = current.unwrap_or_default();
            if current.seq != expected {
                return Ok(AppendOutcome::Fenced { current });
            }
            return Err(refused);
        }
        self.record_buckets(room, &batch.events).await?;
        if batch.mark_outbox {
            // Before the transaction: a batch is never durable unmarked (a mark whose batch
            // then fails only costs its writer a look at the log).
            self.mark_outbox(room, expected.saturating_add(1)).await?;
        }
        let pending = encode_batch(batch);
        let head = batch.head;
        let attempt = if expected == 0 {
            let values = (room, big(head.seq), big(head.ordinal), head.ts_ms, &pending);
            self.lwt(&self.st.head_create, values).await
        } else {
            let values = (
                big(head.seq),
                big(head.ordinal),
                head.ts_ms,
                &pending,
                room,
                big(expected),
            );
            self.lwt(&self.st.head_advance, values).await
        };
        match attempt {
            Ok(true) => {}
            Ok(false) => return self.fenced(room).await,
            Err(StoreError::Unknown(reason)) => match self.read_head_row(room, true).await {
                Ok(Some(row)) if row.head == head && row.pending.as_deref() == Some(&pending) => {}
                Ok(row) => {
                    let current = row.map(|r| r.head).unwrap_or_default();
                    return Ok(AppendOutcome::Fenced { current });
                }
                Err(_) => return Err(StoreError::Unknown(reason)),
            },
            Err(other) => return Err(other),
        }
        if materialize {
            // The batch is durable now: a failure from here on leaves it pending, to be
            // rolled forward by whoever reads the head next.
            self.materialize(room, batch)
                .await
                .map_err(|e| StoreError::Unknown(format!("applied, not yet materialized: {e}")))?;
            self.mark_materialized(room, head.seq).await?;
        }
        Ok(AppendOutcome::Applied)
    }

    /// The answer to a transaction whose condition failed: the head read at SERIAL.
    async fn fenced(&self, room: &str) -> Result<AppendOutcome, StoreError> {
        let current = self
            .read_head_row(room, true)
            .await?
            .map(|r| r.head)
            .unwrap_or_default();
        Ok(AppendOutcome::Fenced { current })
    }

    /// Records that the batch of head `seq` is materialized: a plain write whose timestamp is
    /// the seq, so the newest head wins last-write-wins (never a Paxos round).
    async fn mark_materialized(&self, room: &str, seq: u64) -> Result<(), StoreError> {
        let values = (big(seq), big(seq), room);
        self.write(&self.st.head_materialized, values)
            .await
            .map(drop)
            .map_err(|e| StoreError::Unknown(format!("materialized, not yet recorded: {e}")))
    }

    /// The head as readers see it: the newest materialized one, from a QUORUM read that never
    /// writes. A pending batch is reported as the head it was appended on (`None` when it is
    /// the room's first): its `seq` and `ordinal` exactly, its `ts_ms` as the batch's first
    /// event's (no later than that head's; readers do not use it).
    pub(super) async fn materialized_head(&self, room: &str) -> Result<Option<Head>, StoreError> {
        let Some(row) = self.read_head_row(room, false).await? else {
            return Ok(None);
        };
        let Some(pending) = row.unmaterialized() else {
            return Ok(Some(row.head));
        };
        let batch = decode_batch(pending)?;
        let first = batch
            .events
            .first()
            .ok_or_else(|| corrupt(format!("room {room}: empty pending batch")))?;
        let seq = first.seq.saturating_sub(1);
        if seq == 0 {
            return Ok(None);
        }
        let created = batch
            .events
            .iter()
            .filter(|e| matches!(e.kind, Some(Kind::MessageCreated(_))))
            .count() as u64;
        Ok(Some(Head {
            seq,
            ordinal: batch.head.ordinal.saturating_sub(created),
            ts_ms: first.ts_ms,
        }))
    }

    /// Reads the head at SERIAL and rolls a pending batch forward; `None` for no room. For
    /// writers only (see the module docs).
    pub(super) async fn roll_forward(&self, room: &str) -> Result<Option<Head>, StoreError> {
        let Some(row) = self.read_head_row(room, true).await? else {
            return Ok(None);
        };
        if let Some(pending) = row.unmaterialized() {
            let batch = decode_batch(pending)?;
            if batch.head != row.head {
                return Err(corrupt(format!(
                    "room {room}: pending batch up to {} under head {}",
                    batch.head.seq, row.head.seq
                )));
            }
            self.record_buckets(room, &batch.events).await?;
            self.materialize(room, &batch).await?;
            self.mark_materialized(room, row.head.seq).await?;
        }
        Ok(Some(row.head))
    }

    /// Writes a batch's events and materialization writes (idempotent).
    async fn materialize(&self, room: &str, batch: &Batch) -> Result<(), StoreError> {
        let cut = self.read_cut(room).await?;
        let mut buckets = Buckets {
            of_batch: HashMap::new(),
            index: None,
        };
        for event in &batch.events {
            let bucket = self.bucket(event.ts_ms);
            buckets.of_batch.insert(event.seq, bucket);
            let bytes = prost::Message::encode_to_vec(event);
            self.write(&self.st.event_insert, (room, bucket, big(event.seq), bytes))
                .await?;
            if let Some(Kind::MessageEdited(edit)) = &event.kind {
                let values = (room, big(edit.target_seq), big(event.seq), bucket);
                self.write(&self.st.edit_insert, values).await?;
            }
        }
        for write in &batch.writes {
            self.apply(room, batch.head.seq, cut, &mut buckets, write)
                .await?;
        }
        Ok(())
    }

    /// The bucket of `seq`, from the batch or the index.
    async fn bucket_for(
        &self,
        room: &str,
        buckets: &mut Buckets,
        seq: u64,
    ) -> Result<Option<i64>, StoreError> {
        if let Some(bucket) = buckets.of_batch.get(&seq) {
            return Ok(Some(*bucket));
        }
        if buckets.index.is_none() {
            buckets.index = Some(self.load_index(room).await?);
        }
        let index = buckets.index.as_deref().unwrap_or_default();
        self.bucket_of(room, index, seq).await
    }

    async fn apply(
        &self,
        room: &str,
        head_seq: u64,
        cut: Cut,
        buckets: &mut Buckets,
        write: &Write,
    ) -> Result<(), StoreError> {
        match write {
            Write::Room(settings) => {
                let bytes = prost::Message::encode_to_vec(settings);
                self.write(&self.st.room_insert, (room, bytes)).await?;
            }
            Write::Member(member) => self.put_member(room, cut, member).await?,
            Write::RemoveMember(user) => {
                self.write(&self.st.member_delete, (room, user.as_str()))
                    .await?;
                self.write(&self.st.user_room_delete, (user.as_str(), room))
                    .await?;
            }
            Write::Message(message) => {
                if message.seq == 0 || message.seq > head_seq {
                    return Err(corrupt(format!(
                        "message state for seq {} outside the log (head {head_seq})",
                        message.seq
                    )));
                }
                if message.seq >= cut.from {
                    let bucket = self
                        .bucket_for(room, buckets, message.seq)
                        .await?
                        .ok_or_else(|| corrupt(format!("no bucket holds seq {}", message.seq)))?;
                    let bytes = prost::Message::encode_to_vec(message);
                    let values = (room, bucket, big(message.seq), bytes);
                    self.write(&self.st.message_insert, values).await?;
                }
            }
            Write::Redact { target_seq } => self.redact(room, cut, buckets, *target_seq).await?,
            Write::Dedupe {
                sender,
                client_msg_id,
                entry,
            } => {
                let values = (
                    room,
                    sender.as_str(),
                    client_msg_id.as_str(),
                    big(entry.seq),
                    big(entry.ordinal),
                    entry.ts_ms,
                    entry.content_hash.to_vec(),
                    entry.expires_at_ms,
                    dedupe_ttl_s(entry.ts_ms, entry.expires_at_ms),
                );
                self.write(&self.st.dedupe_insert, values).await?;
            }
            Write::Reaction {
                user,
                target_seq,
                emoji,
                added,
            } => {
                let values = (room, user.as_str(), big(*target_seq), emoji.as_str());
                let st = if *added {
                    &self.st.reaction_insert
                } else {
                    &self.st.reaction_delete
                };
                self.write(st, values).await?;
            }
            Write::ReadUpTo { user, seq, ordinal } => {
                self.raise_watermarks(user.as_str(), room, *seq, Some((*seq, *ordinal)))
                    .await?;
            }
        }
        Ok(())
    }

    /// Clears a message's content from its `MessageCreated` event, from every
    /// `MessageEdited` event targeting it and from its current state. Of a message dropped by
    /// retention only the edits it kept are left to clear.
    async fn redact(
        &self,
        room: &str,
        cut: Cut,
        buckets: &mut Buckets,
        target_seq: u64,
    ) -> Result<(), StoreError> {
        let created_bucket = if target_seq < cut.from {
            None
        } else {
            Some(self.redact_created(room, buckets, target_seq).await?)
        };
        let edits: Vec<(i64, i64)> = self
            .rows(&self.st.edits_of, (room, big(target_seq)))
            .await?;
        for (edit_seq, bucket) in edits {
            let Some(mut event) = self.read_event(room, bucket, edit_seq).await? else {
                return Err(corrupt(format!("edit index names missing seq {edit_seq}")));
            };
            if let Some(Kind::MessageEdited(edit)) = &mut event.kind {
                edit.content = None;
                edit.redacted = true;
                let bytes = prost::Message::encode_to_vec(&event);
                self.write(&self.st.event_insert, (room, bucket, edit_seq, bytes))
                    .await?;
            }
        }
        let Some(bucket) = created_bucket else {
            return Ok(());
        };
        let key = (room, bucket, big(target_seq));
        let state: Option<(Vec<u8>,)> = self.row(&self.st.message_select, key).await?;
        if let Some((bytes,)) = state {
            let mut message: v1::Message = decode(&bytes)?;
            message.content = None;
            message.deleted = true;
            message.reactions.clear();
            let bytes = prost::Message::encode_to_vec(&message);
            let values = (room, bucket, big(target_seq), bytes);
            self.write(&self.st.message_insert, values).await?;
        }
        Ok(())
    }

    /// Clears the content of a message's `MessageCreated` event; returns its bucket.
    async fn redact_created(
        &self,
        room: &str,
        buckets: &mut Buckets,
        target_seq: u64,
    ) -> Result<i64, StoreError> {
        let unknown = || corrupt(format!("redaction of unknown seq {target_seq}"));
        let bucket = self
            .bucket_for(room, buckets, target_seq)
            .await?
            .ok_or_else(unknown)?;
        let seq = big(target_seq);
        let mut created = self
            .read_event(room, bucket, seq)
            .await?
            .ok_or_else(unknown)?;
        match &mut created.kind {
            Some(Kind::MessageCreated(message)) => {
                message.content = None;
                message.redacted = true;
            }
            _ => {
                return Err(corrupt(format!(
                    "redaction of non-message seq {target_seq}"
                )));
            }
        }
        let bytes = prost::Message::encode_to_vec(&created);
        self.write(&self.st.event_insert, (room, bucket, seq, bytes))
            .await?;
        Ok(bucket)
    }

    async fn read_event(
        &self,
        room: &str,
        bucket: i64,
        seq: i64,
    ) -> Result<Option<v1::RoomEvent>, StoreError> {
        let row: Option<(Vec<u8>,)> = self.row(&self.st.event_select, (room, bucket, seq)).await?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }
}

impl ScyllaStore {
    /// Test support: runs the fenced transaction of an append (head and pending batch) and
    /// stops there, as a writer that crashed right after it would. The next `load_room` or
    /// `head` rolls the batch forward.
    #[doc(hidden)]
    pub async fn append_without_materializing(
        &self,
        room: &RoomId,
        expected_seq: u64,
        batch: &Batch,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner
            .append(room.as_str(), expected_seq, batch, false)
            .await
    }
}

/// Parses a stored user id.
pub(super) fn stored_user(raw: &str) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(|e| corrupt(format!("stored user id {raw:?}: {e}")))
}
