//! Retention (docs/architecture.md "Storage"): drop a room's whole old time buckets, as the
//! embedded store does (`embedded/retention.rs` has the picture).
//!
//! A bucket is dropped when it ends at or before `keep_from_ms` and does not hold the head.
//! The new cut (lowest retained seq, ordinal of the newest dropped message) is written first,
//! so every read stops at it at once; then the partitions, the edit index rows and the bucket
//! index rows below it are deleted. A cut interrupted half-way leaves rows below the recorded
//! seq, which no read returns and the next cut deletes (without counting them again).

use chatwire_protocol::v1;

use super::Inner;
use super::cql::{big, unsigned};
use super::index::{IndexRow, MAX_SEQ};
use super::records::decode;
use crate::backend::store::{RetentionOutcome, StoreError};

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

impl Inner {
    /// The retention cut of `room` (the default when retention never dropped anything).
    pub(super) async fn read_cut(&self, room: &str) -> Result<Cut, StoreError> {
        let row: Option<(Option<i64>, Option<i64>)> =
            self.row(&self.st.retention_select, (room,)).await?;
        match row {
            Some((Some(from), Some(ordinal))) => Ok(Cut {
                from: unsigned(from)?,
                ordinal: unsigned(ordinal)?,
            }),
            _ => Ok(Cut::default()),
        }
    }

    /// Drops the whole buckets of `room` that end at or before `keep_from_ms`, except the
    /// head's.
    pub(super) async fn apply_retention(
        &self,
        room: &str,
        keep_from_ms: i64,
    ) -> Result<RetentionOutcome, StoreError> {
        let previous = self.read_cut(room).await?;
        let unchanged = RetentionOutcome {
            dropped_buckets: 0,
            first_retained_seq: previous.from,
        };
        let Some(head) = self.read_head_row(room, false).await?.map(|r| r.head) else {
            return Ok(unchanged);
        };
        // Buckets below `below` end at or before `keep_from_ms`; the head's is kept.
        let below = self.bucket(keep_from_ms).min(self.bucket(head.ts_ms));
        let index = self.load_index(room).await?;
        let (old, kept): (Vec<&IndexRow>, Vec<&IndexRow>) =
            index.iter().partition(|r| r.bucket < below);
        let dropped = old.iter().filter(|r| r.first_seq >= previous.from).count() as u64;
        if dropped == 0 {
            self.drop_buckets(room, &old, previous.from).await?;
            return Ok(unchanged);
        }
        let from = kept.first().map(|r| r.first_seq).ok_or_else(|| {
            StoreError::Corrupt(format!("room {room}: no bucket at or after {below}"))
        })?;
        if from <= previous.from {
            return Err(StoreError::Corrupt(format!(
                "room {room}: retention would move back from seq {} to {from}",
                previous.from
            )));
        }
        let mut ordinal = previous.ordinal;
        for row in old.iter().rev() {
            let newest: Option<(i64, Vec<u8>)> = self
                .row(
                    &self.st.messages_desc,
                    (room, row.bucket, 0_i64, big(MAX_SEQ)),
                )
                .await?;
            if let Some((_, bytes)) = newest {
                ordinal = ordinal.max(decode::<v1::Message>(&bytes)?.ordinal);
                break;
            }
        }
        self.write(&self.st.retention_insert, (room, big(from), big(ordinal)))
            .await?;
        self.drop_buckets(room, &old, from).await?;
        Ok(RetentionOutcome {
            dropped_buckets: dropped,
            first_retained_seq: from,
        })
    }

    /// Deletes the partitions and index rows of `buckets`, and the edit index rows of edits
    /// below `from` (a kept edit of a dropped message keeps its row, so a later redaction of
    /// that message still clears it).
    async fn drop_buckets(
        &self,
        room: &str,
        buckets: &[&IndexRow],
        from: u64,
    ) -> Result<(), StoreError> {
        if buckets.is_empty() {
            return Ok(());
        }
        for row in buckets {
            self.write(&self.st.messages_drop, (room, row.bucket))
                .await?;
            self.write(&self.st.events_drop, (room, row.bucket)).await?;
        }
        let edits: Vec<(i64, i64)> = self.rows(&self.st.edits_below, (room, big(from))).await?;
        for (target, edit) in edits {
            if edit < big(from) {
                self.write(&self.st.edit_delete, (room, target, edit))
                    .await?;
            }
        }
        for row in buckets {
            self.write(&self.st.bucket_delete, (room, row.bucket))
                .await?;
        }
        Ok(())
    }
}
