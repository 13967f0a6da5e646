//! Outbox marks (docs/architecture.md "Downstream events") on the `outbox` table, one partition
//! per writer shard so a writer finds its shard's marks with one read. A mark is a plain write
//! made before the append's transaction (so a batch is never durable unmarked); only a room's
//! writer writes or clears it.

use super::Inner;
use super::cql::{big, corrupt, unsigned};
use crate::backend::pipeline::shard_of;
use crate::backend::store::StoreError;
use crate::chat::ids::RoomId;

impl Inner {
    /// The outbox partition of a room.
    fn outbox_shard(&self, room: &str) -> i32 {
        let shards = usize::try_from(self.meta.shards).unwrap_or(1);
        i32::try_from(shard_of(room, shards)).unwrap_or(0)
    }

    /// Marks `room` from `from_seq`.
    pub(super) async fn mark_outbox(&self, room: &str, from_seq: u64) -> Result<(), StoreError> {
        let values = (self.outbox_shard(room), room, big(from_seq));
        self.write(&self.st.outbox_insert, values).await.map(drop)
    }

    /// The mark of `room`, if any.
    pub(super) async fn outbox_from(&self, room: &str) -> Result<Option<u64>, StoreError> {
        let row: Option<(i64,)> = self
            .row(&self.st.outbox_select, (self.outbox_shard(room), room))
            .await?;
        row.map(|(from,)| unsigned(from)).transpose()
    }

    /// The marks of the rooms of `shard` of `shards`: one partition read when `shards` is the
    /// cluster's recorded shard count (the writers' case), every partition otherwise.
    pub(super) async fn outbox_marks(
        &self,
        shard: usize,
        shards: usize,
    ) -> Result<Vec<(RoomId, u64)>, StoreError> {
        let partitions: Vec<i32> = if u32::try_from(shards).ok() == Some(self.meta.shards) {
            vec![i32::try_from(shard).map_err(|_| corrupt(format!("shard {shard}")))?]
        } else {
            (0..i32::try_from(self.meta.shards).unwrap_or(i32::MAX)).collect()
        };
        let mut marks = Vec::new();
        for partition in partitions {
            let rows: Vec<(String, i64)> = self.rows(&self.st.outbox_shard, (partition,)).await?;
            for (room, from) in rows {
                if shard_of(&room, shards) != shard {
                    continue;
                }
                let id = RoomId::parse(&room)
                    .map_err(|e| corrupt(format!("outbox room {room}: {e}")))?;
                marks.push((id, unsigned(from)?));
            }
        }
        marks.sort();
        Ok(marks)
    }

    /// Moves (`Some`) or removes (`None`) the marks of rooms. A busy room's mark is moved, an
    /// upsert, so the partition collects a tombstone only per room that went quiet.
    pub(super) async fn update_outbox(
        &self,
        marks: &[(RoomId, Option<u64>)],
    ) -> Result<(), StoreError> {
        for (room, from) in marks {
            let shard = self.outbox_shard(room.as_str());
            match from {
                Some(from) => {
                    let values = (shard, room.as_str(), big(*from));
                    self.write(&self.st.outbox_insert, values).await?;
                }
                None => {
                    let values = (shard, room.as_str());
                    self.write(&self.st.outbox_delete, values).await?;
                }
            }
        }
        Ok(())
    }
}
