//! The per-room bucket index (`buckets`: `(room, bucket) -> first seq`): maps seqs to time
//! buckets, so a read touches only the partitions that hold its seqs and skips empty time
//! windows.
//!
//! The writer records a new bucket *before* its lightweight transaction moves the head into it
//! (docs/architecture.md "Room writers"), so an entry may name a bucket that a losing writer never
//! filled. Lookups therefore treat the index as a list of candidates and confirm the bucket of a
//! seq with one probe of the `events` partition; an empty candidate costs one extra read and
//! nothing else.

use chatwire_protocol::v1;

use super::Inner;
use super::cql::{big, unsigned};
use crate::backend::store::StoreError;

/// The highest seq CQL can hold; bounds at or above it mean "no upper bound".
pub(super) const MAX_SEQ: u64 = i64::MAX as u64;

/// One index row: a bucket and the first seq recorded for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct IndexRow {
    pub(super) bucket: i64,
    pub(super) first_seq: u64,
}

impl Inner {
    /// The room's bucket index, in bucket order (which is also seq order).
    pub(super) async fn load_index(&self, room: &str) -> Result<Vec<IndexRow>, StoreError> {
        let rows: Vec<(i64, i64)> = self.rows(&self.st.buckets_all, (room,)).await?;
        rows.into_iter()
            .map(|(bucket, first)| {
                Ok(IndexRow {
                    bucket,
                    first_seq: unsigned(first)?,
                })
            })
            .collect()
    }

    /// The bucket holding `seq`: the highest indexed bucket whose log holds a seq at or below
    /// `seq`. `None` when `seq` lies before the room's first (retained) bucket.
    pub(super) async fn bucket_of(
        &self,
        room: &str,
        index: &[IndexRow],
        seq: u64,
    ) -> Result<Option<i64>, StoreError> {
        for row in index.iter().rev().filter(|r| r.first_seq <= seq) {
            if self.holds_seq_at_or_below(room, row.bucket, seq).await? {
                return Ok(Some(row.bucket));
            }
        }
        Ok(None)
    }

    /// True when the log partition `(room, bucket)` holds a seq at or below `seq`.
    async fn holds_seq_at_or_below(
        &self,
        room: &str,
        bucket: i64,
        seq: u64,
    ) -> Result<bool, StoreError> {
        let row: Option<(i64,)> = self
            .row(&self.st.event_probe, (room, bucket, big(seq)))
            .await?;
        Ok(row.is_some())
    }

    /// The buckets that may hold seqs in `low..=high`, in ascending order.
    pub(super) async fn buckets_between(
        &self,
        room: &str,
        low: u64,
        high: u64,
    ) -> Result<Vec<i64>, StoreError> {
        if low > high {
            return Ok(Vec::new());
        }
        let index = self.load_index(room).await?;
        let high_bucket = if high >= MAX_SEQ {
            index.last().map(|r| r.bucket)
        } else {
            self.bucket_of(room, &index, high).await?
        };
        let Some(high_bucket) = high_bucket else {
            return Ok(Vec::new());
        };
        let low_bucket = self.bucket_of(room, &index, low).await?.unwrap_or(i64::MIN);
        Ok(index
            .iter()
            .map(|r| r.bucket)
            .filter(|b| (low_bucket..=high_bucket).contains(b))
            .collect())
    }

    /// Records the buckets that `events` (a batch, in seq order) start: a bucket is new when
    /// its log holds no seq before the batch's first event in it. Safe to repeat.
    pub(super) async fn record_buckets(
        &self,
        room: &str,
        events: &[v1::RoomEvent],
    ) -> Result<(), StoreError> {
        let mut last_bucket = None;
        for event in events {
            let bucket = self.bucket(event.ts_ms);
            if last_bucket == Some(bucket) {
                continue;
            }
            let is_first_of_batch = last_bucket.is_none();
            last_bucket = Some(bucket);
            if is_first_of_batch {
                let earlier = event.seq.saturating_sub(1);
                if earlier > 0 && self.holds_seq_at_or_below(room, bucket, earlier).await? {
                    continue;
                }
            }
            self.write(&self.st.bucket_insert, (room, bucket, big(event.seq)))
                .await?;
        }
        Ok(())
    }
}
