//! Table definitions and key helpers. The keys are the logical keys of docs/architecture.md
//! "Storage" (the ScyllaDB backend uses the same ones as partition and clustering keys); every
//! table is created when the database is opened, so read transactions never meet a missing table.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | name | i64 (`format_version`, `bucket_width_ms`) |
//! | `heads` | room | (seq, ordinal, ts_ms) |
//! | `events` | (room, bucket, seq) | `v1::RoomEvent` |
//! | `buckets` | (room, bucket) | first seq of the bucket |
//! | `bucket_starts` | (room, first seq) | bucket (the same index, searchable by seq) |
//! | `messages` | (room, bucket, seq) | `v1::Message` (current state) |
//! | `edits` | (room, target seq, edit seq) | bucket of the edit event |
//! | `retention` | room | (lowest retained seq, ordinal of the newest dropped message) |
//! | `rooms` | room | `v1::Room` |
//! | `members` | (room, user) | `v1::Member` |
//! | `user_rooms` | (user, room) | [`UserRoomRecord`](super::records::UserRoomRecord) |
//! | `dedupe` | (room, sender, client_msg_id) | [`DedupeRecord`](super::records::DedupeRecord) |
//! | `dedupe_expiry` | (expires_at_ms, room, sender, client_msg_id) | () |
//! | `blocks` | (user, other) | () |
//! | `push_tokens` | token | owning user |
//! | `user_push_tokens` | (user, token) | [`PushTokenRecord`](super::records::PushTokenRecord) |
//! | `revocations` | user | i64: tokens issued before this time (Unix ms) are revoked |
//! | `outbox` | room | u64: the first seq whose downstream events may be unpublished |
//! | `reactions` | (room, user, message seq, emoji) | () |
//! | `reviews` | (room, seq) | [`ReviewItem`](crate::backend::reviews::ReviewItem) |
//! | `open_reviews` | (room, seq) | () |

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::fail::Fail;

/// Store-wide settings, written once at creation.
pub(super) const META: TableDefinition<'_, &str, i64> = TableDefinition::new("meta");
/// Room heads: `(seq, ordinal, ts_ms)`.
pub(super) const HEADS: TableDefinition<'_, &str, (u64, u64, i64)> = TableDefinition::new("heads");
/// The room log.
pub(super) const EVENTS: TableDefinition<'_, (&str, i64, u64), &[u8]> =
    TableDefinition::new("events");
/// The bucket index: `(room, bucket) -> first seq`.
pub(super) const BUCKETS: TableDefinition<'_, (&str, i64), u64> = TableDefinition::new("buckets");
/// The bucket index by first seq: `(room, first seq) -> bucket`, to map a seq to its bucket
/// with one reverse lookup.
pub(super) const BUCKET_STARTS: TableDefinition<'_, (&str, u64), i64> =
    TableDefinition::new("bucket_starts");
/// Current message state, keyed like the log.
pub(super) const MESSAGES: TableDefinition<'_, (&str, i64, u64), &[u8]> =
    TableDefinition::new("messages");
/// Edits of each message: `(room, target seq, edit seq) -> bucket of the edit`.
pub(super) const EDITS: TableDefinition<'_, (&str, u64, u64), i64> = TableDefinition::new("edits");
/// Retention cuts: `room -> (lowest retained seq, ordinal of the newest dropped message)`;
/// no row while nothing was dropped.
pub(super) const RETENTION: TableDefinition<'_, &str, (u64, u64)> =
    TableDefinition::new("retention");
/// Room settings.
pub(super) const ROOMS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("rooms");
/// Memberships.
pub(super) const MEMBERS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("members");
/// Per-user room state.
pub(super) const USER_ROOMS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("user_rooms");
/// Dedupe entries.
pub(super) const DEDUPE: TableDefinition<'_, (&str, &str, &str), &[u8]> =
    TableDefinition::new("dedupe");
/// Dedupe entries by expiry, for purging.
pub(super) const DEDUPE_EXPIRY: TableDefinition<'_, (i64, &str, &str, &str), ()> =
    TableDefinition::new("dedupe_expiry");
/// Blocks: `(user, other)`.
pub(super) const BLOCKS: TableDefinition<'_, (&str, &str), ()> = TableDefinition::new("blocks");
/// Push token owners: `token -> user`.
pub(super) const PUSH_TOKENS: TableDefinition<'_, &str, &str> = TableDefinition::new("push_tokens");
/// Push tokens per user.
pub(super) const USER_PUSH_TOKENS: TableDefinition<'_, (&str, &str), &[u8]> =
    TableDefinition::new("user_push_tokens");

/// Token revocations: `user -> issued-before time`, Unix ms.
pub(super) const REVOCATIONS: TableDefinition<'_, &str, i64> = TableDefinition::new("revocations");

/// Outbox marks (docs/architecture.md "Downstream events"): `room -> first seq` whose
/// downstream events may not have been published; set in the append's transaction.
pub(super) const OUTBOX: TableDefinition<'_, &str, u64> = TableDefinition::new("outbox");

/// Who reacted with what: `(room, user, message seq, emoji)`, so a reader's reactions on a page
/// of messages are one range.
pub(super) const REACTIONS: TableDefinition<'_, (&str, &str, u64, &str), ()> =
    TableDefinition::new("reactions");

/// The moderation review queue (crate::backend::reviews): `(room, seq) -> ReviewItem`.
pub(super) const REVIEWS: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("reviews");

/// The open review items, `(room, seq)`: the queue moderators work through.
pub(super) const OPEN_REVIEWS: TableDefinition<'_, (&str, u64), ()> =
    TableDefinition::new("open_reviews");
/// Contacts (issue 22): `(user, other) -> (state, since_ms)`, one row per side.
pub(super) const CONTACTS: TableDefinition<'_, (&str, &str), (i32, i64)> =
    TableDefinition::new("contacts");

/// Opens (creating) every table, so that later read transactions find them all.
pub(super) fn create_all(txn: &WriteTransaction) -> Result<(), Fail> {
    txn.open_table(META)?;
    txn.open_table(HEADS)?;
    txn.open_table(EVENTS)?;
    txn.open_table(BUCKETS)?;
    txn.open_table(BUCKET_STARTS)?;
    txn.open_table(MESSAGES)?;
    txn.open_table(EDITS)?;
    txn.open_table(RETENTION)?;
    txn.open_table(ROOMS)?;
    txn.open_table(MEMBERS)?;
    txn.open_table(USER_ROOMS)?;
    txn.open_table(DEDUPE)?;
    txn.open_table(DEDUPE_EXPIRY)?;
    txn.open_table(BLOCKS)?;
    txn.open_table(PUSH_TOKENS)?;
    txn.open_table(USER_PUSH_TOKENS)?;
    txn.open_table(REVOCATIONS)?;
    txn.open_table(OUTBOX)?;
    txn.open_table(REACTIONS)?;
    txn.open_table(REVIEWS)?;
    txn.open_table(OPEN_REVIEWS)?;
    txn.open_table(CONTACTS)?;
    Ok(())
}

/// The bucket holding `seq`: the bucket whose first seq is the highest one at or below `seq`.
/// `None` when `seq` lies before the room's first bucket (or the room has none).
pub(super) fn bucket_of<T>(starts: &T, room: &str, seq: u64) -> Result<Option<i64>, Fail>
where
    T: ReadableTable<(&'static str, u64), i64>,
{
    match starts.range((room, 0)..=(room, seq))?.next_back() {
        Some(entry) => Ok(Some(entry?.1.value())),
        None => Ok(None),
    }
}

/// A room's retention cut: nothing below `from` is stored any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cut {
    /// The lowest retained seq; 1 while nothing was dropped.
    pub(super) from: u64,
    /// The ordinal of the newest dropped message; 0 while none was.
    pub(super) ordinal: u64,
}

impl Default for Cut {
    fn default() -> Self {
        Self {
            from: 1,
            ordinal: 0,
        }
    }
}

/// The retention cut of `room` (the default when retention never dropped anything).
pub(super) fn read_cut<T>(retention: &T, room: &str) -> Result<Cut, Fail>
where
    T: ReadableTable<&'static str, (u64, u64)>,
{
    Ok(retention
        .get(room)?
        .map(|row| {
            let (from, ordinal) = row.value();
            Cut { from, ordinal }
        })
        .unwrap_or_default())
}

/// A key range of the tables keyed `(room, bucket, seq)`.
pub(super) type SeqKeyRange<'a> = std::ops::RangeInclusive<(&'a str, i64, u64)>;

/// The key range `(room, bucket, seq)` of the seqs `low..=high` of a room, using the bucket
/// index to turn seqs into buckets. `None` when the range holds no stored seq.
pub(super) fn seq_key_range<'a, T>(
    starts: &T,
    room: &'a str,
    low: u64,
    high: u64,
) -> Result<Option<SeqKeyRange<'a>>, Fail>
where
    T: ReadableTable<(&'static str, u64), i64>,
{
    if low > high {
        return Ok(None);
    }
    let Some(high_bucket) = bucket_of(starts, room, high)? else {
        return Ok(None);
    };
    let low_bucket = bucket_of(starts, room, low)?.unwrap_or(i64::MIN);
    Ok(Some((room, low_bucket, low)..=(room, high_bucket, high)))
}
