//! The prepared statements (prepared once at connect) and the small helpers that run them and
//! map driver errors onto [`StoreError`]: unreachable or refused is `Unavailable`
//! (retryable), a timed-out write is `Unknown` (it may have applied), an undecodable row is
//! `Corrupt`.

use std::ops::ControlFlow;

use scylla::client::session::Session;
use scylla::deserialize::row::DeserializeRow;
use scylla::errors::{DbError, ExecutionError, RequestAttemptError};
use scylla::response::PagingState;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::Consistency;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::{CqlValue, Row};

use super::{Inner, ScyllaError};
use crate::backend::store::StoreError;

/// Rows fetched per page by paged reads.
const PAGE_SIZE: i32 = 200;

/// Every statement the store runs.
pub(super) struct Statements {
    pub(super) head_create: PreparedStatement,
    pub(super) head_advance: PreparedStatement,
    pub(super) head_materialized: PreparedStatement,
    pub(super) head_serial: PreparedStatement,
    pub(super) head_plain: PreparedStatement,
    pub(super) event_insert: PreparedStatement,
    pub(super) event_select: PreparedStatement,
    pub(super) events_asc: PreparedStatement,
    pub(super) event_probe: PreparedStatement,
    pub(super) events_drop: PreparedStatement,
    pub(super) bucket_insert: PreparedStatement,
    pub(super) buckets_all: PreparedStatement,
    pub(super) bucket_delete: PreparedStatement,
    pub(super) message_insert: PreparedStatement,
    pub(super) message_select: PreparedStatement,
    pub(super) messages_asc: PreparedStatement,
    pub(super) messages_desc: PreparedStatement,
    pub(super) messages_drop: PreparedStatement,
    pub(super) edit_insert: PreparedStatement,
    pub(super) edits_of: PreparedStatement,
    pub(super) edits_below: PreparedStatement,
    pub(super) edit_delete: PreparedStatement,
    pub(super) retention_select: PreparedStatement,
    pub(super) retention_insert: PreparedStatement,
    pub(super) room_insert: PreparedStatement,
    pub(super) room_select: PreparedStatement,
    pub(super) member_insert: PreparedStatement,
    pub(super) member_select: PreparedStatement,
    pub(super) member_delete: PreparedStatement,
    pub(super) members_all: PreparedStatement,
    pub(super) members_first: PreparedStatement,
    pub(super) members_after: PreparedStatement,
    pub(super) user_room_insert: PreparedStatement,
    pub(super) user_room_select: PreparedStatement,
    pub(super) user_room_membership: PreparedStatement,
    pub(super) user_room_marks: PreparedStatement,
    pub(super) user_room_mute: PreparedStatement,
    pub(super) user_room_delete: PreparedStatement,
    pub(super) user_rooms_first: PreparedStatement,
    pub(super) user_rooms_after: PreparedStatement,
    pub(super) dedupe_insert: PreparedStatement,
    pub(super) dedupe_select: PreparedStatement,
    pub(super) block_insert: PreparedStatement,
    pub(super) block_delete: PreparedStatement,
    pub(super) block_select: PreparedStatement,
    pub(super) blocks_of: PreparedStatement,
    pub(super) push_owner_insert: PreparedStatement,
    pub(super) push_owner_select: PreparedStatement,
    pub(super) push_owner_delete: PreparedStatement,
    pub(super) user_push_insert: PreparedStatement,
    pub(super) user_push_delete: PreparedStatement,
    pub(super) user_push_all: PreparedStatement,
    pub(super) revocation_select: PreparedStatement,
    pub(super) revocation_insert: PreparedStatement,
    pub(super) reaction_insert: PreparedStatement,
    pub(super) reaction_delete: PreparedStatement,
    pub(super) reactions_of: PreparedStatement,
    pub(super) outbox_insert: PreparedStatement,
    pub(super) outbox_select: PreparedStatement,
    pub(super) outbox_shard: PreparedStatement,
    pub(super) outbox_delete: PreparedStatement,
    pub(super) review_select: PreparedStatement,
    pub(super) review_create: PreparedStatement,
    pub(super) review_swap: PreparedStatement,
    pub(super) reviews_of_room: PreparedStatement,
    pub(super) open_review_insert: PreparedStatement,
    pub(super) open_review_delete: PreparedStatement,
    pub(super) open_reviews_first: PreparedStatement,
    pub(super) open_reviews_after: PreparedStatement,
    pub(super) node_insert: PreparedStatement,
    pub(super) nodes_all: PreparedStatement,
    pub(super) node_delete: PreparedStatement,
    // Issue 22: contacts.
    pub(super) contact_upsert: PreparedStatement,
    pub(super) contact_delete: PreparedStatement,
    pub(super) contact_select: PreparedStatement,
    pub(super) contacts_after: PreparedStatement,
}

/// How a statement is run.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Reads and idempotent writes: the driver may retry them.
    Plain,
    /// A lightweight transaction: never retried blindly, never speculative.
    Lwt,
    /// A read at SERIAL consistency (sees, and completes, every accepted transaction).
    SerialRead,
}

async fn prepare(
    session: &Session,
    ks: &str,
    cql: &str,
    kind: Kind,
) -> Result<PreparedStatement, ScyllaError> {
    let mut st = session
        .prepare(cql.replace("{ks}", ks))
        .await
        .map_err(|e| ScyllaError::Query(format!("prepare {cql}: {e}")))?;
    st.set_page_size(PAGE_SIZE);
    match kind {
        Kind::Plain => st.set_is_idempotent(true),
        Kind::Lwt => st.set_is_idempotent(false),
        Kind::SerialRead => {
            st.set_is_idempotent(true);
            st.set_consistency(Consistency::Serial);
        }
    }
    Ok(st)
}

impl Statements {
    /// Prepares every statement against `ks`.
    pub(super) async fn prepare(session: &Session, ks: &str) -> Result<Self, ScyllaError> {
        use Kind::{Lwt, Plain, SerialRead};
        let p = |cql: &'static str, kind| prepare(session, ks, cql, kind);
        Ok(Self {
            head_create: p(
                "INSERT INTO {ks}.heads (room, seq, ordinal, ts_ms, pending) \
                 VALUES (?, ?, ?, ?, ?) IF NOT EXISTS",
                Lwt,
            )
            .await?,
            head_advance: p(
                "UPDATE {ks}.heads SET seq = ?, ordinal = ?, ts_ms = ?, pending = ? \
                 WHERE room = ? IF seq = ?",
                Lwt,
            )
            .await?,
            head_materialized: p(
                "UPDATE {ks}.heads USING TIMESTAMP ? SET materialized_seq = ? WHERE room = ?",
                Plain,
            )
            .await?,
            head_serial: p(
                "SELECT seq, ordinal, ts_ms, pending, materialized_seq FROM {ks}.heads WHERE room = ?",
                SerialRead,
            )
            .await?,
            head_plain: p(
                "SELECT seq, ordinal, ts_ms, pending, materialized_seq FROM {ks}.heads WHERE room = ?",
                Plain,
            )
            .await?,
            event_insert: p(
                "INSERT INTO {ks}.events (room, bucket, seq, event) VALUES (?, ?, ?, ?)",
                Plain,
            )
            .await?,
            event_select: p(
                "SELECT event FROM {ks}.events WHERE room = ? AND bucket = ? AND seq = ?",
                Plain,
            )
            .await?,
            events_asc: p(
                "SELECT seq, event FROM {ks}.events WHERE room = ? AND bucket = ? \
                 AND seq >= ? AND seq <= ? ORDER BY seq ASC",
                Plain,
            )
            .await?,
            event_probe: p(
                "SELECT seq FROM {ks}.events WHERE room = ? AND bucket = ? AND seq <= ? LIMIT 1",
                Plain,
            )
            .await?,
            events_drop: p(
                "DELETE FROM {ks}.events WHERE room = ? AND bucket = ?",
                Plain,
            )
            .await?,
            bucket_insert: p(
                "INSERT INTO {ks}.buckets (room, bucket, first_seq) VALUES (?, ?, ?)",
                Plain,
            )
            .await?,
            buckets_all: p(
                "SELECT bucket, first_seq FROM {ks}.buckets WHERE room = ?",
                Plain,
            )
            .await?,
            bucket_delete: p(
                "DELETE FROM {ks}.buckets WHERE room = ? AND bucket = ?",
                Plain,
            )
            .await?,
            message_insert: p(
                "INSERT INTO {ks}.messages (room, bucket, seq, message) VALUES (?, ?, ?, ?)",
                Plain,
            )
            .await?,
            message_select: p(
                "SELECT message FROM {ks}.messages WHERE room = ? AND bucket = ? AND seq = ?",
                Plain,
            )
            .await?,
            messages_asc: p(
                "SELECT seq, message FROM {ks}.messages WHERE room = ? AND bucket = ? \
                 AND seq >= ? AND seq <= ? ORDER BY seq ASC",
                Plain,
            )
            .await?,
            messages_desc: p(
                "SELECT seq, message FROM {ks}.messages WHERE room = ? AND bucket = ? \
                 AND seq >= ? AND seq <= ? ORDER BY seq DESC",
                Plain,
            )
            .await?,
            messages_drop: p(
                "DELETE FROM {ks}.messages WHERE room = ? AND bucket = ?",
                Plain,
            )
            .await?,
            edit_insert: p(
                "INSERT INTO {ks}.edits (room, target_seq, edit_seq, bucket) VALUES (?, ?, ?, ?)",
                Plain,
            )
            .await?,
            edits_of: p(
                "SELECT edit_seq, bucket FROM {ks}.edits WHERE room = ? AND target_seq = ?",
                Plain,
            )
            .await?,
            edits_below: p(
                "SELECT target_seq, edit_seq FROM {ks}.edits WHERE room = ? AND target_seq < ?",
                Plain,
            )
            .await?,
            edit_delete: p(
                "DELETE FROM {ks}.edits WHERE room = ? AND target_seq = ? AND edit_seq = ?",
                Plain,
            )
            .await?,
            retention_select: p(
                "SELECT first_seq, ordinal FROM {ks}.retention WHERE room = ?",
                Plain,
            )
            .await?,
            retention_insert: p(
                "INSERT INTO {ks}.retention (room, first_seq, ordinal) VALUES (?, ?, ?)",
                Plain,
            )
            .await?,
            room_insert: p(
                "INSERT INTO {ks}.rooms (room, settings) VALUES (?, ?)",
                Plain,
            )
            .await?,
            room_select: p("SELECT settings FROM {ks}.rooms WHERE room = ?", Plain).await?,
            member_insert: p(
                "INSERT INTO {ks}.members (room, user_id, member) VALUES (?, ?, ?)",
                Plain,
            )
            .await?,
            member_select: p(
                "SELECT member FROM {ks}.members WHERE room = ? AND user_id = ?",
                Plain,
            )
            .await?,
            member_delete: p(
                "DELETE FROM {ks}.members WHERE room = ? AND user_id = ?",
                Plain,
            )
            .await?,
            members_all: p("SELECT member FROM {ks}.members WHERE room = ?", Plain).await?,
            members_first: p(
                "SELECT member FROM {ks}.members WHERE room = ? LIMIT ?",
                Plain,
            )
            .await?,
            members_after: p(
                "SELECT member FROM {ks}.members WHERE room = ? AND user_id > ? LIMIT ?",
                Plain,
            )
            .await?,
            user_room_insert: p(
                "INSERT INTO {ks}.user_rooms (user_id, room, role, joined_seq, read_seq, \
                 read_ordinal, delivered_seq, muted_until_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                Plain,
            )
            .await?,
            user_room_select: p(
                "SELECT room, role, joined_seq, read_seq, read_ordinal, delivered_seq, \
                 muted_until_ms FROM {ks}.user_rooms WHERE user_id = ? AND room = ?",
                Plain,
            )
            .await?,
            user_room_membership: p(
                "UPDATE {ks}.user_rooms SET role = ?, joined_seq = ? \
                 WHERE user_id = ? AND room = ?",
                Plain,
            )
            .await?,
            user_room_marks: p(
                "UPDATE {ks}.user_rooms SET delivered_seq = ?, read_seq = ?, read_ordinal = ? \
                 WHERE user_id = ? AND room = ?",
                Plain,
            )
            .await?,
            user_room_mute: p(
                "UPDATE {ks}.user_rooms SET muted_until_ms = ? WHERE user_id = ? AND room = ?",
                Plain,
            )
            .await?,
            user_room_delete: p(
                "DELETE FROM {ks}.user_rooms WHERE user_id = ? AND room = ?",
                Plain,
            )
            .await?,
            user_rooms_first: p(
                "SELECT room, role, joined_seq, read_seq, read_ordinal, delivered_seq, \
                 muted_until_ms FROM {ks}.user_rooms WHERE user_id = ? LIMIT ?",
                Plain,
            )
            .await?,
            user_rooms_after: p(
                "SELECT room, role, joined_seq, read_seq, read_ordinal, delivered_seq, \
                 muted_until_ms FROM {ks}.user_rooms WHERE user_id = ? AND room > ? LIMIT ?",
                Plain,
            )
            .await?,
            dedupe_insert: p(
                "INSERT INTO {ks}.dedupe (room, sender, client_msg_id, seq, ordinal, ts_ms, \
                 content_hash, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?) USING TTL ?",
                Plain,
            )
            .await?,
            dedupe_select: p(
                "SELECT seq, ordinal, ts_ms, content_hash, expires_at_ms FROM {ks}.dedupe \
                 WHERE room = ? AND sender = ? AND client_msg_id = ?",
                Plain,
            )
            .await?,
            block_insert: p(
                "INSERT INTO {ks}.blocks (user_id, other_id) VALUES (?, ?)",
                Plain,
            )
            .await?,
            block_delete: p(
                "DELETE FROM {ks}.blocks WHERE user_id = ? AND other_id = ?",
                Plain,
            )
            .await?,
            block_select: p(
                "SELECT other_id FROM {ks}.blocks WHERE user_id = ? AND other_id = ?",
                Plain,
            )
            .await?,
            blocks_of: p("SELECT other_id FROM {ks}.blocks WHERE user_id = ?", Plain).await?,
            push_owner_insert: p(
                "INSERT INTO {ks}.push_tokens (push_token, user_id) VALUES (?, ?)",
                Plain,
            )
            .await?,
            push_owner_select: p(
                "SELECT user_id FROM {ks}.push_tokens WHERE push_token = ?",
                Plain,
            )
            .await?,
            push_owner_delete: p("DELETE FROM {ks}.push_tokens WHERE push_token = ?", Plain)
                .await?,
            user_push_insert: p(
                "INSERT INTO {ks}.user_push_tokens (user_id, push_token, platform, device_id) \
                 VALUES (?, ?, ?, ?)",
                Plain,
            )
            .await?,
            user_push_delete: p(
                "DELETE FROM {ks}.user_push_tokens WHERE user_id = ? AND push_token = ?",
                Plain,
            )
            .await?,
            user_push_all: p(
                "SELECT push_token, platform, device_id FROM {ks}.user_push_tokens \
                 WHERE user_id = ?",
                Plain,
            )
            .await?,
            revocation_select: p(
                "SELECT before_ms FROM {ks}.revocations WHERE user_id = ?",
                Plain,
            )
            .await?,
            revocation_insert: p(
                "INSERT INTO {ks}.revocations (user_id, before_ms) VALUES (?, ?)",
                Plain,
            )
            .await?,
            contact_upsert: p(
                "INSERT INTO {ks}.contacts (user_id, other_id, state, since_ms) \
                 VALUES (?, ?, ?, ?)",
                Plain,
            )
            .await?,
            contact_delete: p(
                "DELETE FROM {ks}.contacts WHERE user_id = ? AND other_id = ?",
                Plain,
            )
            .await?,
            contact_select: p(
                "SELECT state, since_ms FROM {ks}.contacts WHERE user_id = ? AND other_id = ?",
                Plain,
            )
            .await?,
            contacts_after: p(
                "SELECT other_id, state, since_ms FROM {ks}.contacts \
                 WHERE user_id = ? AND other_id > ?",
                Plain,
            )
            .await?,
            reaction_insert: p(
                "INSERT INTO {ks}.reactions (room, user_id, target_seq, emoji) VALUES (?, ?, ?, ?)",
                Plain,
            )
            .await?,
            reaction_delete: p(
                "DELETE FROM {ks}.reactions WHERE room = ? AND user_id = ? AND target_seq = ? \
                 AND emoji = ?",
                Plain,
            )
            .await?,
            reactions_of: p(
                "SELECT target_seq, emoji FROM {ks}.reactions WHERE room = ? AND user_id = ? \
                 AND target_seq >= ? AND target_seq <= ?",
                Plain,
            )
            .await?,
            outbox_insert: p(
                "INSERT INTO {ks}.outbox (shard, room, from_seq) VALUES (?, ?, ?)",
                Plain,
            )
            .await?,
            outbox_select: p(
                "SELECT from_seq FROM {ks}.outbox WHERE shard = ? AND room = ?",
                Plain,
            )
            .await?,
            outbox_shard: p(
                "SELECT room, from_seq FROM {ks}.outbox WHERE shard = ?",
                Plain,
            )
            .await?,
            outbox_delete: p(
                "DELETE FROM {ks}.outbox WHERE shard = ? AND room = ?",
                Plain,
            )
            .await?,
            review_select: p(
                "SELECT item FROM {ks}.reviews WHERE room = ? AND seq = ?",
                Plain,
            )
            .await?,
            review_create: p(
                "INSERT INTO {ks}.reviews (room, seq, item) VALUES (?, ?, ?) IF NOT EXISTS",
                Lwt,
            )
            .await?,
            review_swap: p(
                "UPDATE {ks}.reviews SET item = ? WHERE room = ? AND seq = ? IF item = ?",
                Lwt,
            )
            .await?,
            reviews_of_room: p(
                "SELECT item FROM {ks}.reviews WHERE room = ? AND seq > ? LIMIT ?",
                Plain,
            )
            .await?,
            open_review_insert: p(
                "INSERT INTO {ks}.open_reviews (part, room, seq) VALUES (0, ?, ?)",
                Plain,
            )
            .await?,
            open_review_delete: p(
                "DELETE FROM {ks}.open_reviews WHERE part = 0 AND room = ? AND seq = ?",
                Plain,
            )
            .await?,
            open_reviews_first: p(
                "SELECT room, seq FROM {ks}.open_reviews WHERE part = 0 LIMIT ?",
                Plain,
            )
            .await?,
            open_reviews_after: p(
                "SELECT room, seq FROM {ks}.open_reviews WHERE part = 0 AND (room, seq) > (?, ?) \
                 LIMIT ?",
                Plain,
            )
            .await?,
            node_insert: p(
                "INSERT INTO {ks}.nodes (node_id, address) VALUES (?, ?) USING TTL ?",
                Plain,
            )
            .await?,
            nodes_all: p("SELECT node_id, address FROM {ks}.nodes", Plain).await?,
            node_delete: p("DELETE FROM {ks}.nodes WHERE node_id = ?", Plain).await?,
        })
    }
}

/// A failed read: always retryable.
pub(super) fn read_error(error: ExecutionError) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

/// A failed write: a timeout leaves the outcome unknown, anything else is retryable.
pub(super) fn write_error(error: ExecutionError) -> StoreError {
    let timed_out = match &error {
        ExecutionError::RequestTimeout(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => {
            matches!(db, DbError::WriteTimeout { .. })
        }
        ExecutionError::LastAttemptError(RequestAttemptError::BrokenConnectionError(_)) => true,
        _ => false,
    };
    if timed_out {
        StoreError::Unknown(error.to_string())
    } else {
        StoreError::Unavailable(error.to_string())
    }
}

/// An undecodable row.
pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

/// A seq or ordinal as a CQL bigint (seqs never reach 2^63; larger bounds saturate).
pub(super) fn big(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored bigint as a seq or ordinal.
pub(super) fn unsigned(value: i64) -> Result<u64, StoreError> {
    u64::try_from(value).map_err(|_| corrupt(format!("negative stored value {value}")))
}

impl Inner {
    /// Runs a write (idempotent or not); a timeout is [`StoreError::Unknown`].
    pub(super) async fn write(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult, StoreError> {
        self.session
            .execute_unpaged(st, values)
            .await
            .map_err(write_error)
    }

    /// Runs a lightweight transaction and tells whether it applied.
    pub(super) async fn lwt(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<bool, StoreError> {
        self.lwts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.write(st, values).await?;
        applied(result)
    }

    /// Every row of a (paged) read.
    pub(super) async fn rows<R>(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Vec<R>, StoreError>
    where
        R: for<'f> DeserializeRow<'f, 'f> + Send,
    {
        let mut all = Vec::new();
        self.scan(st, values, |row: R| {
            all.push(row);
            Ok(true)
        })
        .await?;
        Ok(all)
    }

    /// The first row of a read, if any.
    pub(super) async fn row<R>(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>, StoreError>
    where
        R: for<'f> DeserializeRow<'f, 'f> + Send,
    {
        let mut first = None;
        self.scan(st, values, |row: R| {
            first = Some(row);
            Ok(false)
        })
        .await?;
        Ok(first)
    }

    /// Feeds the rows of a read to `take`, page by page, until it returns `false`.
    pub(super) async fn scan<R, F>(
        &self,
        st: &PreparedStatement,
        values: impl SerializeRow,
        mut take: F,
    ) -> Result<(), StoreError>
    where
        R: for<'f> DeserializeRow<'f, 'f> + Send,
        F: FnMut(R) -> Result<bool, StoreError> + Send,
    {
        let mut paging = PagingState::start();
        loop {
            let (result, next) = self
                .session
                .execute_single_page(st, &values, paging)
                .await
                .map_err(read_error)?;
            let rows = result.into_rows_result().map_err(corrupt)?;
            for row in rows.rows::<R>().map_err(corrupt)? {
                if !take(row.map_err(corrupt)?)? {
                    return Ok(());
                }
            }
            match next.into_paging_control_flow() {
                ControlFlow::Continue(state) => paging = state,
                ControlFlow::Break(()) => return Ok(()),
            }
        }
    }
}

/// The `[applied]` column of a lightweight transaction's result.
fn applied(result: QueryResult) -> Result<bool, StoreError> {
    let rows = result.into_rows_result().map_err(corrupt)?;
    let row: Option<Row> = rows.maybe_first_row().map_err(corrupt)?;
    match row.as_ref().and_then(|r| r.columns.first()) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(corrupt(format!("no [applied] column in {other:?}"))),
    }
}
