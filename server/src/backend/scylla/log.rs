//! [`RoomLog`]: heads (writers read at SERIAL and roll a pending batch forward; readers read
//! at QUORUM and never write), the fenced append
//! (in `append.rs`) and the two read views.
//!
//! Both views read one partition per time bucket: the bucket index turns the seq bounds into
//! a list of buckets, each partition is read within the seq bounds in the wanted direction,
//! and the reading stops as soon as the page is full. Every read starts at the room's
//! retention cut (`retention.rs`).

use async_trait::async_trait;
use chatwire_protocol::v1;

use super::cql::{big, unsigned};
use super::index::MAX_SEQ;
use super::records::decode;
use super::retention::Cut;
use super::{Inner, ScyllaStore};
use crate::backend::store::{
    AppendOutcome, Batch, DedupeEntry, Head, HistoryQuery, MessagePage, Pager, RetentionOutcome,
    RoomLog, RoomSnapshot, StoreError,
};
use crate::chat::ids::{RoomId, UserId};

/// The dedupe columns.
type DedupeColumns = (i64, i64, i64, Vec<u8>, i64);

impl Inner {
    /// The ordinal of the newest message at or below `seq`; dropped messages count as the
    /// newest dropped one's ordinal.
    pub(super) async fn ordinal_at(
        &self,
        room: &str,
        cut: Cut,
        seq: u64,
    ) -> Result<u64, StoreError> {
        let buckets = self.buckets_between(room, cut.from, seq).await?;
        for bucket in buckets.into_iter().rev() {
            let values = (room, bucket, big(cut.from), big(seq));
            let newest: Option<(i64, Vec<u8>)> = self.row(&self.st.messages_desc, values).await?;
            if let Some((_, bytes)) = newest {
                return Ok(decode::<v1::Message>(&bytes)?.ordinal);
            }
        }
        Ok(cut.ordinal)
    }

    async fn load_room(&self, room: &str) -> Result<Option<RoomSnapshot>, StoreError> {
        let Some(head) = self.roll_forward(room).await? else {
            return Ok(None);
        };
        let settings: Option<(Vec<u8>,)> = self.row(&self.st.room_select, (room,)).await?;
        let (settings,) = settings.ok_or_else(|| {
            StoreError::Corrupt(format!("room {room} has a head but no room row"))
        })?;
        let rows: Vec<(Vec<u8>,)> = self.rows(&self.st.members_all, (room,)).await?;
        let members = rows
            .iter()
            .map(|(bytes,)| decode(bytes))
            .collect::<Result<_, _>>()?;
        Ok(Some(RoomSnapshot {
            head,
            room: decode(&settings)?,
            members,
            outbox_from: self.outbox_from(room).await?,
        }))
    }

    async fn read_events(
        &self,
        room: &str,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<v1::RoomEvent>, StoreError> {
        let cut = self.read_cut(room).await?;
        let Some(first) = after_seq.checked_add(1).map(|first| first.max(cut.from)) else {
            return Ok(Vec::new());
        };
        let mut pager = Pager::new(limit, max_bytes);
        let mut page = Vec::new();
        let mut full = false;
        for bucket in self.buckets_between(room, first, MAX_SEQ).await? {
            let values = (room, bucket, big(first), big(MAX_SEQ));
            self.scan(&self.st.events_asc, values, |(_, bytes): (i64, Vec<u8>)| {
                if !pager.take(bytes.len()) {
                    full = true;
                    return Ok(false);
                }
                page.push(decode(&bytes)?);
                Ok(true)
            })
            .await?;
            if full {
                break;
            }
        }
        Ok(page)
    }

    async fn read_messages(
        &self,
        room: &str,
        query: HistoryQuery,
    ) -> Result<MessagePage, StoreError> {
        let cut = self.read_cut(room).await?;
        let query = HistoryQuery {
            min_seq: query.min_seq.max(cut.from),
            ..query
        };
        let Some((low, high, newest_first)) = query.bounds(MAX_SEQ) else {
            return Ok(MessagePage::default());
        };
        let mut buckets = self.buckets_between(room, low, high).await?;
        let st = if newest_first {
            buckets.reverse();
            &self.st.messages_desc
        } else {
            &self.st.messages_asc
        };
        let mut pager = Pager::new(query.limit, query.max_bytes);
        let mut page = MessagePage::default();
        for bucket in buckets {
            let values = (room, bucket, big(low), big(high));
            self.scan(st, values, |(_, bytes): (i64, Vec<u8>)| {
                let message: v1::Message = decode(&bytes)?;
                // A thread holds the replies, not the root (the root is an ordinary message).
                if query.thread_root_seq != 0 && message.thread_root_seq != query.thread_root_seq {
                    return Ok(true);
                }
                if !pager.take(bytes.len()) {
                    page.has_more = true;
                    return Ok(false);
                }
                page.messages.push(message);
                Ok(true)
            })
            .await?;
            if page.has_more {
                break;
            }
        }
        Ok(page)
    }

    async fn message(&self, room: &str, seq: u64) -> Result<Option<v1::Message>, StoreError> {
        if seq < self.read_cut(room).await?.from {
            return Ok(None);
        }
        let index = self.load_index(room).await?;
        let Some(bucket) = self.bucket_of(room, &index, seq).await? else {
            return Ok(None);
        };
        let row: Option<(Vec<u8>,)> = self
            .row(&self.st.message_select, (room, bucket, big(seq)))
            .await?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }

    async fn dedupe(
        &self,
        room: &str,
        sender: &str,
        client_msg_id: &str,
        now_ms: i64,
    ) -> Result<Option<DedupeEntry>, StoreError> {
        let row: Option<DedupeColumns> = self
            .row(&self.st.dedupe_select, (room, sender, client_msg_id))
            .await?;
        let Some((seq, ordinal, ts_ms, hash, expires_at_ms)) = row else {
            return Ok(None);
        };
        if expires_at_ms <= now_ms {
            return Ok(None);
        }
        Ok(Some(DedupeEntry {
            seq: super::cql::unsigned(seq)?,
            ordinal: super::cql::unsigned(ordinal)?,
            ts_ms,
            content_hash: hash
                .as_slice()
                .try_into()
                .map_err(|_| StoreError::Corrupt("stored dedupe hash is not 32 bytes".into()))?,
            expires_at_ms,
        }))
    }
}

#[async_trait]
impl RoomLog for ScyllaStore {
    async fn load_room(&self, room: &RoomId) -> Result<Option<RoomSnapshot>, StoreError> {
        self.inner.load_room(room.as_str()).await
    }

    async fn head(&self, room: &RoomId) -> Result<Option<Head>, StoreError> {
        self.inner.materialized_head(room.as_str()).await
    }

    async fn append(
        &self,
        room: &RoomId,
        expected_seq: u64,
        batch: &Batch,
    ) -> Result<AppendOutcome, StoreError> {
        self.inner
            .append(room.as_str(), expected_seq, batch, true)
            .await
    }

    async fn read_events(
        &self,
        room: &RoomId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<v1::RoomEvent>, StoreError> {
        self.inner
            .read_events(room.as_str(), after_seq, limit, max_bytes)
            .await
    }

    async fn read_messages(
        &self,
        room: &RoomId,
        query: HistoryQuery,
    ) -> Result<MessagePage, StoreError> {
        self.inner.read_messages(room.as_str(), query).await
    }

    async fn message(&self, room: &RoomId, seq: u64) -> Result<Option<v1::Message>, StoreError> {
        self.inner.message(room.as_str(), seq).await
    }

    async fn ordinal_at(&self, room: &RoomId, seq: u64) -> Result<u64, StoreError> {
        let cut = self.inner.read_cut(room.as_str()).await?;
        self.inner.ordinal_at(room.as_str(), cut, seq).await
    }

    async fn dedupe(
        &self,
        room: &RoomId,
        sender: &UserId,
        client_msg_id: &str,
        now_ms: i64,
    ) -> Result<Option<DedupeEntry>, StoreError> {
        self.inner
            .dedupe(room.as_str(), sender.as_str(), client_msg_id, now_ms)
            .await
    }

    async fn apply_retention(
        &self,
        room: &RoomId,
        keep_from_ms: i64,
    ) -> Result<RetentionOutcome, StoreError> {
        self.inner
            .apply_retention(room.as_str(), keep_from_ms)
            .await
    }

    async fn retained_from(&self, room: &RoomId) -> Result<u64, StoreError> {
        Ok(self.inner.read_cut(room.as_str()).await?.from)
    }

    async fn reactions_of(
        &self,
        room: &RoomId,
        user: &UserId,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        let values = (room.as_str(), user.as_str(), big(from_seq), big(to_seq));
        let rows: Vec<(i64, String)> = self.inner.rows(&self.inner.st.reactions_of, values).await?;
        rows.into_iter()
            .map(|(seq, emoji)| Ok((unsigned(seq)?, emoji)))
            .collect()
    }

    async fn outbox_marks(
        &self,
        shard: usize,
        shards: usize,
    ) -> Result<Vec<(RoomId, u64)>, StoreError> {
        self.inner.outbox_marks(shard, shards).await
    }

    async fn update_outbox(&self, marks: &[(RoomId, Option<u64>)]) -> Result<(), StoreError> {
        self.inner.update_outbox(marks).await
    }
}
