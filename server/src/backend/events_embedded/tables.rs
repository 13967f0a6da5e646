//! Tables, the stored entry and the internal error of the embedded event queue.
//!
//! | table | key | value |
//! | --- | --- | --- |
//! | `meta` | name | u64 (`format_version`, `next_key`, `next_lease`) |
//! | `entries` | key (publish order) | [`EntryRecord`] |
//! | `ids` | event id | key |
//! | `lane_high`, `lane_medium`, `lane_low` | (due_ms, key) | () : waiting and leased events |
//! | `leased` | key | () |
//! | `dead` | (dead_at_ms, key) | () |
//!
//! A waiting event is due at 0 (new), at the end of its retry delay, or at `now` (replayed);
//! a leased one at the end of its lease, so a lease that runs out makes it due again by itself.

use crate::backend::redb_fail::{DbFault, classify};
use bytes::Bytes;
use redb::{Table, TableDefinition, WriteTransaction};

use crate::backend::events::{DownstreamEvent, Lane, QueueError};

pub(super) const META: TableDefinition<'_, &str, u64> = TableDefinition::new("meta");
pub(super) const ENTRIES: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("entries");
pub(super) const IDS: TableDefinition<'_, &str, u64> = TableDefinition::new("ids");
pub(super) const LEASED: TableDefinition<'_, u64, ()> = TableDefinition::new("leased");
pub(super) const DEAD: TableDefinition<'_, (i64, u64), ()> = TableDefinition::new("dead");
const LANE_HIGH: TableDefinition<'_, (i64, u64), ()> = TableDefinition::new("lane_high");
const LANE_MEDIUM: TableDefinition<'_, (i64, u64), ()> = TableDefinition::new("lane_medium");
const LANE_LOW: TableDefinition<'_, (i64, u64), ()> = TableDefinition::new("lane_low");

/// The table of a lane.
pub(super) fn lane_table(lane: Lane) -> TableDefinition<'static, (i64, u64), ()> {
    match lane {
        Lane::High => LANE_HIGH,
        Lane::Medium => LANE_MEDIUM,
        Lane::Low => LANE_LOW,
    }
}

/// Every table a write opens, once per transaction.
pub(super) struct Tables<'txn> {
    pub(super) meta: Table<'txn, &'static str, u64>,
    pub(super) entries: Table<'txn, u64, &'static [u8]>,
    pub(super) ids: Table<'txn, &'static str, u64>,
    pub(super) leased: Table<'txn, u64, ()>,
    pub(super) dead: Table<'txn, (i64, u64), ()>,
    lanes: [Table<'txn, (i64, u64), ()>; 3],
}

impl<'txn> Tables<'txn> {
    /// Opens (creating) every table.
    pub(super) fn open(txn: &'txn WriteTransaction) -> Result<Self, Fail> {
        Ok(Self {
            meta: txn.open_table(META)?,
            entries: txn.open_table(ENTRIES)?,
            ids: txn.open_table(IDS)?,
            leased: txn.open_table(LEASED)?,
            dead: txn.open_table(DEAD)?,
            lanes: [
                txn.open_table(LANE_HIGH)?,
                txn.open_table(LANE_MEDIUM)?,
                txn.open_table(LANE_LOW)?,
            ],
        })
    }

    /// The index of a lane.
    pub(super) fn lane(&mut self, lane: Lane) -> &mut Table<'txn, (i64, u64), ()> {
        &mut self.lanes[lane_index(lane)]
    }

    /// A counter in `meta` (0 when unset).
    pub(super) fn counter(&self, name: &str) -> Result<u64, Fail> {
        use redb::ReadableTable;
        Ok(self.meta.get(name)?.map(|v| v.value()).unwrap_or(0))
    }

    /// An entry that must exist.
    pub(super) fn entry(&self, key: u64) -> Result<Option<EntryRecord>, Fail> {
        use redb::ReadableTable;
        match self.entries.get(key)? {
            Some(bytes) => Ok(Some(decode(bytes.value())?)),
            None => Ok(None),
        }
    }

    /// Writes an entry.
    pub(super) fn put(&mut self, key: u64, record: &EntryRecord) -> Result<(), Fail> {
        self.entries
            .insert(key, prost::Message::encode_to_vec(record).as_slice())?;
        Ok(())
    }
}

fn lane_index(lane: Lane) -> usize {
    match lane {
        Lane::High => 0,
        Lane::Medium => 1,
        Lane::Low => 2,
    }
}

/// A queued event with its delivery state.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct EntryRecord {
    #[prost(string, tag = "1")]
    pub(super) id: String,
    /// 0 high, 1 medium, 2 low.
    #[prost(uint32, tag = "2")]
    pub(super) lane: u32,
    #[prost(string, tag = "3")]
    pub(super) kind: String,
    #[prost(string, optional, tag = "4")]
    pub(super) room_id: Option<String>,
    #[prost(uint64, optional, tag = "5")]
    pub(super) seq: Option<u64>,
    #[prost(int64, tag = "6")]
    pub(super) occurred_at_ms: i64,
    #[prost(bytes = "bytes", tag = "7")]
    pub(super) payload: Bytes,
    /// Deliveries so far.
    #[prost(uint32, tag = "8")]
    pub(super) attempt: u32,
    /// Its key in the lane table, while waiting or leased.
    #[prost(int64, tag = "9")]
    pub(super) due_ms: i64,
    /// The current lease; 0 when not leased.
    #[prost(uint64, tag = "10")]
    pub(super) lease: u64,
    /// Set while dead-lettered.
    #[prost(int64, optional, tag = "11")]
    pub(super) dead_at_ms: Option<i64>,
    /// The last failure.
    #[prost(string, tag = "12")]
    pub(super) reason: String,
}

impl EntryRecord {
    /// A fresh entry, due at once.
    pub(super) fn new(event: DownstreamEvent) -> Self {
        Self {
            id: event.id,
            lane: lane_index(event.lane) as u32,
            kind: event.kind,
            room_id: event.room_id,
            seq: event.seq,
            occurred_at_ms: event.occurred_at_ms,
            payload: event.payload,
            attempt: 0,
            due_ms: 0,
            lease: 0,
            dead_at_ms: None,
            reason: String::new(),
        }
    }

    /// The lane.
    pub(super) fn lane(&self) -> Result<Lane, Fail> {
        Lane::ALL
            .get(self.lane as usize)
            .copied()
            .ok_or_else(|| corrupt(format!("stored lane {}", self.lane)))
    }

    /// The event.
    pub(super) fn event(&self) -> Result<DownstreamEvent, Fail> {
        Ok(DownstreamEvent {
            id: self.id.clone(),
            lane: self.lane()?,
            kind: self.kind.clone(),
            room_id: self.room_id.clone(),
            seq: self.seq,
            occurred_at_ms: self.occurred_at_ms,
            payload: self.payload.clone(),
        })
    }
}

/// Decodes a stored entry.
pub(super) fn decode(bytes: &[u8]) -> Result<EntryRecord, Fail> {
    <EntryRecord as prost::Message>::decode(bytes)
        .map_err(|e| corrupt(format!("undecodable entry: {e}")))
}

/// An internal failure; converts into [`QueueError`] at the edge of each operation, so redb
/// types never leave this module.
pub(super) type Fail = crate::backend::redb_fail::Fail<QueueError>;

/// A broken invariant or undecodable stored data.
pub(super) fn corrupt(what: impl Into<String>) -> Fail {
    Fail::Own(QueueError::Corrupt(what.into()))
}

impl From<QueueError> for Fail {
    fn from(error: QueueError) -> Self {
        Fail::Own(error)
    }
}

impl From<Fail> for QueueError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Own(error) => error,
            Fail::Db(error) => match classify(&error) {
                DbFault::Corrupt => QueueError::Corrupt(error.to_string()),
                DbFault::Unavailable => QueueError::Unavailable(error.to_string()),
            },
        }
    }
}
