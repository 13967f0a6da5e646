//! [`RoomLog`]: heads, the fenced append (in `append.rs`) and the two read views.
//!
//! Both views scan one key range `(room, bucket, seq)`: the bucket index turns the seq bounds
//! into bucket bounds, and since buckets rise with the seq, the key order is the seq order and
//! empty time windows cost nothing. Every read starts at the room's retention cut
//! (`retention.rs`): nothing below it is returned, even a row a cut left behind.

use std::ops::Bound;

use async_trait::async_trait;
use chatwire_protocol::v1;
use redb::{ReadableDatabase, ReadableTable};

use super::append::{append, read_head};
use super::fail::{Fail, corrupt};
use super::records::{DedupeRecord, decode};
use super::retention::{apply_retention, retained_from};
use super::tables::{
    BUCKET_STARTS, Cut, DEDUPE, EVENTS, HEADS, MEMBERS, MESSAGES, OUTBOX, REACTIONS, RETENTION,
    ROOMS, bucket_of, read_cut, seq_key_range,
};
use super::{EmbeddedStore, Inner};
use crate::backend::pipeline::shard_of;
use crate::backend::store::{
    AppendOutcome, Batch, DedupeEntry, Head, HistoryQuery, MessagePage, Pager, RetentionOutcome,
    RoomLog, RoomSnapshot, StoreError,
};
use crate::chat::ids::{RoomId, UserId};

/// The ordinal of the newest message at or below `seq`, 0 when none. Messages dropped by the
/// retention `cut` count as the newest dropped one's ordinal.
pub(super) fn ordinal_at_in<M, S>(
    messages: &M,
    starts: &S,
    cut: Cut,
    room: &str,
    seq: u64,
) -> Result<u64, Fail>
where
    M: ReadableTable<(&'static str, i64, u64), &'static [u8]>,
    S: ReadableTable<(&'static str, u64), i64>,
{
    let Some(range) = seq_key_range(starts, room, cut.from, seq)? else {
        return Ok(cut.ordinal);
    };
    match messages.range(range)?.next_back() {
        Some(entry) => Ok(decode::<v1::Message>(entry?.1.value())?.ordinal),
        None => Ok(cut.ordinal),
    }
}

fn load_room(inner: &Inner, room: &str) -> Result<Option<RoomSnapshot>, Fail> {
    let txn = inner.db.begin_read()?;
    let Some(head) = read_head(&txn.open_table(HEADS)?, room)? else {
        return Ok(None);
    };
    let settings = txn
        .open_table(ROOMS)?
        .get(room)?
        .map(|row| decode::<v1::Room>(row.value()))
        .transpose()?
        .ok_or_else(|| corrupt(format!("room {room} has a head but no room row")))?;
    let members_table = txn.open_table(MEMBERS)?;
    let mut members = Vec::new();
    for entry in members_table.range((Bound::Included((room, "")), Bound::Unbounded))? {
        let (key, value) = entry?;
        if key.value().0 != room {
            break;
        }
        members.push(decode(value.value())?);
    }
    let outbox_from = txn.open_table(OUTBOX)?.get(room)?.map(|row| row.value());
    Ok(Some(RoomSnapshot {
        head,
        room: settings,
        members,
        outbox_from,
    }))
}

fn reactions_of(
    inner: &Inner,
    room: &str,
    user: &str,
    from_seq: u64,
    to_seq: u64,
) -> Result<Vec<(u64, String)>, Fail> {
    if from_seq > to_seq {
        return Ok(Vec::new());
    }
    let txn = inner.db.begin_read()?;
    let table = txn.open_table(REACTIONS)?;
    let mut found = Vec::new();
    let end = match to_seq.checked_add(1) {
        Some(next) => Bound::Excluded((room, user, next, "")),
        None => Bound::Included((room, user, u64::MAX, "\u{10ffff}")),
    };
    for entry in table.range((Bound::Included((room, user, from_seq, "")), end))? {
        let (key, _) = entry?;
        let (_, _, seq, emoji) = key.value();
        found.push((seq, emoji.to_owned()));
    }
    Ok(found)
}

/// The outbox marks of the rooms of one shard (a scan of every mark: marks live only until
/// their writer's next sweep, so there are few).
fn outbox_marks(inner: &Inner, shard: usize, shards: usize) -> Result<Vec<(RoomId, u64)>, Fail> {
    let txn = inner.db.begin_read()?;
    let mut marks = Vec::new();
    for entry in txn.open_table(OUTBOX)?.iter()? {
        let (room, from) = entry?;
        let room = room.value();
        if shard_of(room, shards) != shard {
            continue;
        }
        let room = RoomId::parse(room).map_err(|e| corrupt(format!("outbox room {room}: {e}")))?;
        marks.push((room, from.value()));
    }
    Ok(marks)
}

fn update_outbox(inner: &Inner, marks: &[(RoomId, Option<u64>)]) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut outbox = txn.open_table(OUTBOX)?;
        for (room, from) in marks {
            match from {
                Some(from) => outbox.insert(room.as_str(), *from).map(drop)?,
                None => outbox.remove(room.as_str()).map(drop)?,
            }
        }
    }
    txn.commit()?;
    Ok(())
}

fn read_events(
    inner: &Inner,
    room: &str,
    after_seq: u64,
    limit: usize,
    max_bytes: usize,
) -> Result<Vec<v1::RoomEvent>, Fail> {
    let txn = inner.db.begin_read()?;
    let cut = read_cut(&txn.open_table(RETENTION)?, room)?;
    let starts = txn.open_table(BUCKET_STARTS)?;
    let events = txn.open_table(EVENTS)?;
    let Some(first) = after_seq.checked_add(1).map(|first| first.max(cut.from)) else {
        return Ok(Vec::new());
    };
    let Some(range) = seq_key_range(&starts, room, first, u64::MAX)? else {
        return Ok(Vec::new());
    };
    let mut pager = Pager::new(limit, max_bytes);
    let mut page = Vec::new();
    for entry in events.range(range)? {
        let (_, value) = entry?;
        let bytes = value.value();
        if !pager.take(bytes.len()) {
            break;
        }
        page.push(decode(bytes)?);
    }
    Ok(page)
}

fn read_messages(inner: &Inner, room: &str, query: HistoryQuery) -> Result<MessagePage, Fail> {
    let txn = inner.db.begin_read()?;
    let cut = read_cut(&txn.open_table(RETENTION)?, room)?;
    let query = HistoryQuery {
        min_seq: query.min_seq.max(cut.from),
        ..query
    };
    let Some((low, high, newest_first)) = query.bounds(u64::MAX) else {
        return Ok(MessagePage::default());
    };
    let starts = txn.open_table(BUCKET_STARTS)?;
    let messages = txn.open_table(MESSAGES)?;
    let Some(range) = seq_key_range(&starts, room, low, high)? else {
        return Ok(MessagePage::default());
    };
    let rows = messages.range(range)?;
    let rows: Box<dyn Iterator<Item = _>> = if newest_first {
        Box::new(rows.rev())
    } else {
        Box::new(rows)
    };
    let mut pager = Pager::new(query.limit, query.max_bytes);
    let mut page = MessagePage::default();
    for entry in rows {
        let (_, value) = entry?;
        let bytes = value.value();
        let message: v1::Message = decode(bytes)?;
        // A thread holds the replies, not the root (the root is an ordinary message).
        if query.thread_root_seq != 0 && message.thread_root_seq != query.thread_root_seq {
            continue;
        }
        if !pager.take(bytes.len()) {
            page.has_more = true;
            break;
        }
        page.messages.push(message);
    }
    Ok(page)
}

fn message(inner: &Inner, room: &str, seq: u64) -> Result<Option<v1::Message>, Fail> {
    let txn = inner.db.begin_read()?;
    if seq < read_cut(&txn.open_table(RETENTION)?, room)?.from {
        return Ok(None);
    }
    let starts = txn.open_table(BUCKET_STARTS)?;
    let Some(bucket) = bucket_of(&starts, room, seq)? else {
        return Ok(None);
    };
    let messages = txn.open_table(MESSAGES)?;
    let row = messages.get((room, bucket, seq))?;
    row.map(|row| decode(row.value())).transpose()
}

fn dedupe(
    inner: &Inner,
    room: &str,
    sender: &str,
    client_msg_id: &str,
    now_ms: i64,
) -> Result<Option<DedupeEntry>, Fail> {
    let txn = inner.db.begin_read()?;
    let table = txn.open_table(DEDUPE)?;
    let Some(row) = table.get((room, sender, client_msg_id))? else {
        return Ok(None);
    };
    let record: DedupeRecord = decode(row.value())?;
    if record.expires_at_ms <= now_ms {
        return Ok(None);
    }
    Ok(Some(DedupeEntry::try_from(record)?))
}

#[async_trait]
impl RoomLog for EmbeddedStore {
    async fn load_room(&self, room: &RoomId) -> Result<Option<RoomSnapshot>, StoreError> {
        let room = room.clone();
        self.run(move |inner| load_room(inner, room.as_str())).await
    }

    async fn head(&self, room: &RoomId) -> Result<Option<Head>, StoreError> {
        let room = room.clone();
        self.run(move |inner| {
            let txn = inner.db.begin_read()?;
            read_head(&txn.open_table(HEADS)?, room.as_str())
        })
        .await
    }

    async fn append(
        &self,
        room: &RoomId,
        expected_seq: u64,
        batch: &Batch,
    ) -> Result<AppendOutcome, StoreError> {
        let (room, batch) = (room.clone(), batch.clone());
        self.run(move |inner| append(inner, room.as_str(), expected_seq, &batch))
            .await
    }

    async fn read_events(
        &self,
        room: &RoomId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<v1::RoomEvent>, StoreError> {
        let room = room.clone();
        self.run(move |inner| read_events(inner, room.as_str(), after_seq, limit, max_bytes))
            .await
    }

    async fn read_messages(
        &self,
        room: &RoomId,
        query: HistoryQuery,
    ) -> Result<MessagePage, StoreError> {
        let room = room.clone();
        self.run(move |inner| read_messages(inner, room.as_str(), query))
            .await
    }

    async fn message(&self, room: &RoomId, seq: u64) -> Result<Option<v1::Message>, StoreError> {
        let room = room.clone();
        self.run(move |inner| message(inner, room.as_str(), seq))
            .await
    }

    async fn ordinal_at(&self, room: &RoomId, seq: u64) -> Result<u64, StoreError> {
        let room = room.clone();
        self.run(move |inner| {
            let txn = inner.db.begin_read()?;
            let messages = txn.open_table(MESSAGES)?;
            let starts = txn.open_table(BUCKET_STARTS)?;
            let cut = read_cut(&txn.open_table(RETENTION)?, room.as_str())?;
            ordinal_at_in(&messages, &starts, cut, room.as_str(), seq)
        })
        .await
    }

    async fn dedupe(
        &self,
        room: &RoomId,
        sender: &UserId,
        client_msg_id: &str,
        now_ms: i64,
    ) -> Result<Option<DedupeEntry>, StoreError> {
        let (room, sender, id) = (room.clone(), sender.clone(), client_msg_id.to_owned());
        self.run(move |inner| dedupe(inner, room.as_str(), sender.as_str(), &id, now_ms))
            .await
    }

    async fn apply_retention(
        &self,
        room: &RoomId,
        keep_from_ms: i64,
    ) -> Result<RetentionOutcome, StoreError> {
        let room = room.clone();
        self.run(move |inner| apply_retention(inner, room.as_str(), keep_from_ms))
            .await
    }

    async fn retained_from(&self, room: &RoomId) -> Result<u64, StoreError> {
        let room = room.clone();
        self.run(move |inner| retained_from(inner, room.as_str()))
            .await
    }

    async fn reactions_of(
        &self,
        room: &RoomId,
        user: &UserId,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let (room, user) = (room.clone(), user.clone());
        self.run(move |inner| reactions_of(inner, room.as_str(), user.as_str(), from_seq, to_seq))
            .await
    }

    async fn outbox_marks(
        &self,
        shard: usize,
        shards: usize,
    ) -> Result<Vec<(RoomId, u64)>, StoreError> {
        self.run(move |inner| outbox_marks(inner, shard, shards))
            .await
    }

    async fn update_outbox(&self, marks: &[(RoomId, Option<u64>)]) -> Result<(), StoreError> {
        if marks.is_empty() {
            return Ok(());
        }
        let marks = marks.to_vec();
        self.run(move |inner| update_outbox(inner, &marks)).await
    }
}
