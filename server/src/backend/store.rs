//! The storage traits: the room log with its fenced append, the directory of rooms, members and
//! per-user room state, and per-user account data. One implementation per backend
//! (`embedded`, later `scylla`), all passing the same behavioural suite
//! (`server/tests/support/store_suite.rs`).
//!
//! Stored values are the protocol's own messages (`v1::RoomEvent`, `v1::Message`, `v1::Room`,
//! `v1::Member`), encoded with prost: the proto already has additive-evolution rules, so the
//! stored format inherits them.

use async_trait::async_trait;
use chatwire_protocol::v1;

pub use super::reviews::Reviews;
use crate::chat::contacts::{ContactOp, ContactRow, ContactUpdate};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

/// A room's head: the newest seq, the newest message ordinal and the newest timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Head {
    /// The seq of the newest log event; 0 for a room that does not exist yet.
    pub seq: u64,
    /// The ordinal of the newest message; 0 when there is none.
    pub ordinal: u64,
    /// The timestamp of the newest event, in Unix milliseconds.
    pub ts_ms: i64,
}

/// Everything a room writer loads when it takes over a room.
#[derive(Debug, Clone, PartialEq)]
pub struct RoomSnapshot {
    /// The head.
    pub head: Head,
    /// The room's current settings.
    pub room: v1::Room,
    /// Every current member.
    pub members: Vec<v1::Member>,
    /// The room's outbox mark (docs/architecture.md "Downstream events"): the first seq whose
    /// downstream events may not have been published yet; `None` when every event was.
    pub outbox_from: Option<u64>,
}

/// One writer batch: new log events plus the writes that materialize them. Applied atomically
/// with the head move by [`RoomLog::append`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Batch {
    /// The head after the batch.
    pub head: Head,
    /// New log events, with seqs `expected.seq + 1 ..= head.seq` in order and contiguous.
    pub events: Vec<v1::RoomEvent>,
    /// Writes that bring the current state in line with the events.
    pub writes: Vec<Write>,
    /// Marks the room in the outbox from the batch's first seq, unless it is marked already
    /// (an older mark is kept): durable no later than the events. The writer sets it on a room
    /// it does not know to be marked, when downstream consumers are configured.
    pub mark_outbox: bool,
}

/// A materialization write. Every write is idempotent, so a batch can be applied again (a
/// roll-forward after a crash) with the same result.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Insert or replace the room row.
    Room(v1::Room),
    /// Insert or replace a membership; also creates the user's room state when missing
    /// (watermarks start at `joined_seq - 1`).
    Member(v1::Member),
    /// Delete a membership and the user's room state.
    RemoveMember(UserId),
    /// Insert or replace a message's current state, keyed by `(room, seq)`.
    Message(v1::Message),
    /// Redact a message: clear the content of its `MessageCreated` event and of every
    /// `MessageEdited` event that targets it (setting `redacted`), and of its current state.
    Redact {
        /// The seq of the message.
        target_seq: u64,
    },
    /// Remember a sent message for deduplication until `entry.expires_at_ms`.
    Dedupe {
        /// The sender.
        sender: UserId,
        /// The sender's client_msg_id.
        client_msg_id: String,
        /// The original outcome.
        entry: DedupeEntry,
    },
    /// Record (`added`) or forget that `user` reacted to the message at `target_seq` with
    /// `emoji`. The message's state keeps counts and a few user ids for display; who reacted
    /// is kept here, one row per reaction (issue 15 M7).
    Reaction {
        /// Who reacted.
        user: UserId,
        /// The message.
        target_seq: u64,
        /// The emoji.
        emoji: String,
        /// Recorded (true) or forgotten (false).
        added: bool,
    },
    /// Move a member's read (and delivered) watermark forward to `seq` with `ordinal`, as
    /// sending a message does for its sender.
    ReadUpTo {
        /// The member.
        user: UserId,
        /// The new watermark (only applied when higher).
        seq: u64,
        /// The message ordinal at that seq.
        ordinal: u64,
    },
}

/// What a room remembers about a sent message, to answer a retry with the original result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DedupeEntry {
    /// The message's seq.
    pub seq: u64,
    /// The message ordinal.
    pub ordinal: u64,
    /// The server timestamp.
    pub ts_ms: i64,
    /// A hash of the request's content, reply and thread, to tell a retry from a conflict.
    pub content_hash: [u8; 32],
    /// When the entry may be forgotten, in Unix milliseconds.
    pub expires_at_ms: i64,
}

/// The outcome of a fenced append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The head was at the expected seq; the batch is durable and the head moved.
    Applied,
    /// The head had moved (another writer took over); nothing was written.
    Fenced {
        /// The head found.
        current: Head,
    },
}

/// What a retention cut did ([`RoomLog::apply_retention`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// How many whole time buckets this call dropped: 0 when none was old enough (a repeat of
    /// an earlier cut, a cut before it, or a room whose only bucket holds its head).
    pub dropped_buckets: u64,
    /// The room's lowest retained seq after the call: 1 when nothing was ever dropped.
    pub first_retained_seq: u64,
}

/// Which messages a history page reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryAnchor {
    /// The newest messages, newest first.
    Latest,
    /// Messages with a lower seq, newest first.
    Before(u64),
    /// Messages with a higher seq, oldest first.
    After(u64),
}

/// A history query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Where the page starts.
    pub anchor: HistoryAnchor,
    /// The lowest seq the reader may see (history visibility); lower seqs are never returned.
    pub min_seq: u64,
    /// The most messages to return.
    pub limit: usize,
    /// Stop before the encoded messages exceed this many bytes (at least one is returned).
    pub max_bytes: usize,
    /// Only messages of this thread (`thread_root_seq`), when non-zero.
    pub thread_root_seq: u64,
}

impl HistoryQuery {
    /// The seq bounds the query reads, with `max_seq` standing for "no upper bound", and
    /// whether it reads newest first; `None` when nothing can match.
    pub fn bounds(&self, max_seq: u64) -> Option<(u64, u64, bool)> {
        let low = self.min_seq.max(1);
        let (low, high, newest_first) = match self.anchor {
            HistoryAnchor::Latest => (low, max_seq, true),
            HistoryAnchor::Before(seq) => (low, seq.checked_sub(1)?, true),
            HistoryAnchor::After(seq) => (low.max(seq.checked_add(1)?), max_seq, false),
        };
        (low <= high).then_some((low, high, newest_first))
    }
}

/// Fills a page up to a count and a byte budget; the first item always fits.
pub(crate) struct Pager {
    limit: usize,
    max_bytes: usize,
    bytes: usize,
    taken: usize,
}

impl Pager {
    pub(crate) fn new(limit: usize, max_bytes: usize) -> Self {
        Self {
            limit,
            max_bytes,
            bytes: 0,
            taken: 0,
        }
    }

    /// Takes an item of `len` bytes, or refuses it when the page is full.
    pub(crate) fn take(&mut self, len: usize) -> bool {
        let over_budget = self.taken > 0 && self.bytes.saturating_add(len) > self.max_bytes;
        if self.taken >= self.limit || over_budget {
            return false;
        }
        self.taken += 1;
        self.bytes = self.bytes.saturating_add(len);
        true
    }
}

/// One page of messages.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MessagePage {
    /// The messages, in the order of the anchor.
    pub messages: Vec<v1::Message>,
    /// True when more messages lie beyond the page in the same direction.
    pub has_more: bool,
}

/// A user's state in one room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRoom {
    /// The room.
    pub room_id: RoomId,
    /// The user's role.
    pub role: v1::Role,
    /// The seq of the user's join event.
    pub joined_seq: u64,
    /// The read watermark.
    pub read_seq: u64,
    /// The message ordinal at the read watermark.
    pub read_ordinal: u64,
    /// The delivered watermark.
    pub delivered_seq: u64,
    /// Push muted until this time, Unix milliseconds; 0 when not muted.
    pub muted_until_ms: i64,
}

/// A registered push token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushToken {
    /// The platform.
    pub platform: v1::PushPlatform,
    /// The device token.
    pub token: String,
    /// The device it belongs to.
    pub device_id: String,
}

/// Storage failures. Peer faults never show up here: callers validate before storing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The backend is unreachable or refused the operation; the caller may retry.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The operation may or may not have been applied (a timeout). For appends the writer
    /// resolves it by reading the head again.
    #[error("store outcome unknown: {0}")]
    Unknown(String),
    /// Stored data could not be decoded, or another invariant of the store is broken.
    #[error("store corrupt: {0}")]
    Corrupt(String),
}

/// A store failure as the chat domain reports it (the conversion lives here, above `chat`, so
/// `chat` imports nothing from the backends).
impl From<StoreError> for ChatError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(reason) | StoreError::Unknown(reason) => {
                ChatError::Unavailable(reason)
            }
            StoreError::Corrupt(reason) => {
                tracing::error!(%reason, "store corrupt");
                ChatError::Internal
            }
        }
    }
}

/// The room log: heads, the fenced append, and the two read views (events and messages).
#[async_trait]
pub trait RoomLog: Send + Sync + std::fmt::Debug {
    /// The room's head and settings and members, or `None` when the room does not exist.
    /// Rolls forward a pending batch first where the implementation has one. For the room's
    /// writer only (it takes the room over with it); readers use [`RoomLog::head`].
    async fn load_room(&self, room: &RoomId) -> Result<Option<RoomSnapshot>, StoreError>;

    /// The room's newest materialized head, `None` when the room does not exist. Never writes:
    /// a batch not yet materialized is left to the writer and not reported.
    async fn head(&self, room: &RoomId) -> Result<Option<Head>, StoreError>;

    /// Applies `batch` if the head is still at `expected_seq` (0 when the room must not exist
    /// yet): moves the head and makes every event and write durable, atomically.
    async fn append(
        &self,
        room: &RoomId,
        expected_seq: u64,
        batch: &Batch,
    ) -> Result<AppendOutcome, StoreError>;

    /// Log events with seq greater than `after_seq`, in seq order, at most `limit` of them and
    /// stopping before their encoded size exceeds `max_bytes` (at least one is returned).
    async fn read_events(
        &self,
        room: &RoomId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<v1::RoomEvent>, StoreError>;

    /// Messages in their current state.
    async fn read_messages(
        &self,
        room: &RoomId,
        query: HistoryQuery,
    ) -> Result<MessagePage, StoreError>;

    /// One message in its current state.
    async fn message(&self, room: &RoomId, seq: u64) -> Result<Option<v1::Message>, StoreError>;

    /// The ordinal of the newest message with seq at or below `seq` (0 when none). Messages
    /// dropped by retention still count: where no retained message lies at or below `seq`
    /// (`seq` below the retained seq included), it is the ordinal of the newest dropped one.
    async fn ordinal_at(&self, room: &RoomId, seq: u64) -> Result<u64, StoreError>;

    /// The dedupe entry of a sender's client_msg_id, if it has not expired at `now_ms`.
    async fn dedupe(
        &self,
        room: &RoomId,
        sender: &UserId,
        client_msg_id: &str,
        now_ms: i64,
    ) -> Result<Option<DedupeEntry>, StoreError>;

    /// Retention (docs/architecture.md "Storage"): drops every whole time bucket of the room that
    /// ends at or before `keep_from_ms` (so every event in it is older than that), except the
    /// bucket holding the head: its log events, message states, the index rows of its edits and its
    /// bucket index rows. A bucket that reaches `keep_from_ms` is kept whole. Records the room's
    /// lowest retained seq (the first seq of the oldest kept bucket), which only moves forward: a
    /// repeat, or an earlier `keep_from_ms`, drops nothing and changes nothing. Dedupe entries stay
    /// until they expire. The head, the room row, the members and their watermarks are untouched.
    ///
    /// From then on the reads ([`read_events`](Self::read_events),
    /// [`read_messages`](Self::read_messages), [`message`](Self::message)) return nothing below
    /// the retained seq, and writes of an append to a message below it are skipped (the
    /// message is gone). For a room that does not exist: nothing dropped, retained from 1.
    async fn apply_retention(
        &self,
        room: &RoomId,
        keep_from_ms: i64,
    ) -> Result<RetentionOutcome, StoreError>;

    /// The room's lowest retained seq: 1 while retention never dropped anything (and for a
    /// room that does not exist).
    async fn retained_from(&self, room: &RoomId) -> Result<u64, StoreError>;

    /// The reactions of `user` on the messages with seq in `from_seq..=to_seq`: `(seq, emoji)`
    /// in seq order (then emoji order). Recorded by [`Write::Reaction`].
    async fn reactions_of(
        &self,
        room: &RoomId,
        user: &UserId,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<(u64, String)>, StoreError>;

    /// The outbox marks of the rooms of `shard` (of `shards`, as
    /// [`shard_of`](crate::backend::pipeline::shard_of) places rooms): each room with its mark's
    /// first seq, in room order. Marks are set by [`append`](Self::append)
    /// ([`Batch::mark_outbox`]) and moved or removed by [`update_outbox`](Self::update_outbox).
    async fn outbox_marks(
        &self,
        shard: usize,
        shards: usize,
    ) -> Result<Vec<(RoomId, u64)>, StoreError>;

    /// Moves outbox marks, each room's writer having published its events: `Some(from)` moves
    /// the room's mark to `from` (its events before it were published; the room stays marked
    /// because it is busy), `None` removes the mark (absent ones are skipped).
    async fn update_outbox(&self, marks: &[(RoomId, Option<u64>)]) -> Result<(), StoreError>;
}

/// Rooms, members and per-user room state (watermarks, mute).
#[async_trait]
pub trait Directory: Send + Sync + std::fmt::Debug {
    /// The room's settings, `None` when it does not exist.
    async fn room(&self, room: &RoomId) -> Result<Option<v1::Room>, StoreError>;

    /// One membership.
    async fn member(&self, room: &RoomId, user: &UserId) -> Result<Option<v1::Member>, StoreError>;

    /// Members ordered by user id, after `after_user` (exclusive), at most `limit`.
    async fn members(
        &self,
        room: &RoomId,
        after_user: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<v1::Member>, StoreError>;

    /// The user's rooms ordered by room id, after `after_room` (exclusive), at most `limit`.
    async fn user_rooms(
        &self,
        user: &UserId,
        after_room: Option<&RoomId>,
        limit: usize,
    ) -> Result<Vec<UserRoom>, StoreError>;

    /// The user's state in one room, `None` when not a member.
    async fn user_room(&self, user: &UserId, room: &RoomId)
    -> Result<Option<UserRoom>, StoreError>;

    /// Moves watermarks forward (each only when higher), returning the state after. Reading
    /// moves delivery too. `None` when the user is not a member.
    async fn advance_watermarks(
        &self,
        user: &UserId,
        room: &RoomId,
        delivered_seq: u64,
        read: Option<(u64, u64)>,
    ) -> Result<Option<UserRoom>, StoreError>;

    /// Sets the push mute of a room. `None` when the user is not a member.
    async fn set_mute(
        &self,
        user: &UserId,
        room: &RoomId,
        until_ms: i64,
    ) -> Result<Option<UserRoom>, StoreError>;
}

/// Per-user account data: blocks, push tokens and token revocations.
#[async_trait]
pub trait Accounts: Send + Sync + std::fmt::Debug {
    /// `user` blocks `other` (idempotent).
    async fn block(&self, user: &UserId, other: &UserId) -> Result<(), StoreError>;
    /// `user` lifts a block of `other` (idempotent).
    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<(), StoreError>;
    /// The users `user` blocked, ordered by id.
    async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, StoreError>;
    /// True when either user blocked the other.
    async fn either_blocked(&self, a: &UserId, b: &UserId) -> Result<bool, StoreError>;
    /// Registers (or moves to `user`) a push token.
    async fn register_push_token(&self, user: &UserId, token: PushToken) -> Result<(), StoreError>;
    /// Removes a push token of `user` (idempotent).
    async fn unregister_push_token(&self, user: &UserId, token: &str) -> Result<(), StoreError>;
    /// The user's push tokens.
    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>, StoreError>;
    /// Records that `user`'s tokens issued before `before_ms` are revoked. The recorded time
    /// only moves forward: an earlier time than the one recorded changes nothing.
    async fn revoke_tokens_before(&self, user: &UserId, before_ms: i64) -> Result<(), StoreError>;
    /// The time before which `user`'s tokens are revoked, `None` when none were.
    async fn tokens_revoked_before(&self, user: &UserId) -> Result<Option<i64>, StoreError>;
}

// ---------------------------------------------------------------------------------------------
// Issue 22: contacts (docs/protocol.md §25). Behavioural suite: server/tests/support/contacts_suite.rs (one test per store, `contacts_suite`).

/// Contact relationships: one row per side and pair of users (see [`crate::chat::contacts`]).
#[async_trait]
pub trait Contacts: Send + Sync + std::fmt::Debug {
    /// Applies `op` of `actor` about `other` at `now_ms`: reads both rows, computes
    /// [`transition`](crate::chat::contacts::transition) and writes the rows that changed;
    /// returns both rows before and after. The embedded store does this in one transaction; the
    /// CQL store reads then writes (two concurrent changes of one pair: the last write of each
    /// row wins, docs/architecture.md "Contacts").
    async fn update_contact(
        &self,
        actor: &UserId,
        other: &UserId,
        op: ContactOp,
        now_ms: i64,
    ) -> Result<ContactUpdate, StoreError>;

    /// `user`'s row about `other`.
    async fn contact(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<ContactRow>, StoreError>;

    /// `user`'s rows ordered by the other user's id, after `after` (exclusive), only those in
    /// `state` when it is set, at most `limit`.
    async fn list_contacts(
        &self,
        user: &UserId,
        state: Option<v1::ContactState>,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<(UserId, ContactRow)>, StoreError>;

    /// Every user `user` has accepted as a contact, ordered by id.
    async fn accepted_contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError>;
}

/// Every storage trait, as one handle.
pub trait Store: RoomLog + Directory + Accounts + Reviews + Contacts {}

impl<T: RoomLog + Directory + Accounts + Reviews + Contacts> Store for T {}
