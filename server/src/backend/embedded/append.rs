//! The fenced append: check the head, write the events, the bucket index and the
//! materialization writes, move the head, all in one write transaction.
//!
//! Retention (`retention.rs`) may have dropped the messages a batch's writes target (the writer
//! read them just before the cut): those writes are skipped, since the message is gone (a
//! redaction still clears the kept edits of such a message).

use chatwire_protocol::v1;
use chatwire_protocol::v1::room_event::Kind;
use redb::{ReadableTable, Table, WriteTransaction};

use super::Inner;
use super::directory::{put_member, raise_watermarks};
use super::fail::{Fail, corrupt};
use super::records::{DedupeRecord, decode, encode};
use super::tables::{
    BUCKET_STARTS, BUCKETS, Cut, DEDUPE, DEDUPE_EXPIRY, EDITS, EVENTS, HEADS, MEMBERS, MESSAGES,
    OUTBOX, REACTIONS, RETENTION, ROOMS, USER_ROOMS, bucket_of, read_cut,
};
use crate::backend::store::{AppendOutcome, Batch, Head, Write};
use crate::chat::ids::UserId;

/// The tables a batch writes, opened once per transaction.
pub(super) struct LogTables<'txn> {
    pub(super) events: Table<'txn, (&'static str, i64, u64), &'static [u8]>,
    pub(super) buckets: Table<'txn, (&'static str, i64), u64>,
    pub(super) starts: Table<'txn, (&'static str, u64), i64>,
    pub(super) messages: Table<'txn, (&'static str, i64, u64), &'static [u8]>,
    pub(super) edits: Table<'txn, (&'static str, u64, u64), i64>,
    pub(super) rooms: Table<'txn, &'static str, &'static [u8]>,
    pub(super) members: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub(super) user_rooms: Table<'txn, (&'static str, &'static str), &'static [u8]>,
    pub(super) dedupe: Table<'txn, (&'static str, &'static str, &'static str), &'static [u8]>,
    pub(super) dedupe_expiry: Table<'txn, (i64, &'static str, &'static str, &'static str), ()>,
    pub(super) reactions: Table<'txn, (&'static str, &'static str, u64, &'static str), ()>,
    /// The room's retention cut: nothing below `cut.from` is stored any more.
    pub(super) cut: Cut,
}

impl<'txn> LogTables<'txn> {
    fn open(txn: &'txn WriteTransaction, room: &str) -> Result<Self, Fail> {
        Ok(Self {
            cut: read_cut(&txn.open_table(RETENTION)?, room)?,
            events: txn.open_table(EVENTS)?,
            buckets: txn.open_table(BUCKETS)?,
            starts: txn.open_table(BUCKET_STARTS)?,
            messages: txn.open_table(MESSAGES)?,
            edits: txn.open_table(EDITS)?,
            rooms: txn.open_table(ROOMS)?,
            members: txn.open_table(MEMBERS)?,
            user_rooms: txn.open_table(USER_ROOMS)?,
            dedupe: txn.open_table(DEDUPE)?,
            dedupe_expiry: txn.open_table(DEDUPE_EXPIRY)?,
            reactions: txn.open_table(REACTIONS)?,
        })
    }
}

/// Reads a head row.
pub(super) fn read_head<T>(heads: &T, room: &str) -> Result<Option<Head>, Fail>
where
    T: ReadableTable<&'static str, (u64, u64, i64)>,
{
    Ok(heads.get(room)?.map(|row| {
        let (seq, ordinal, ts_ms) = row.value();
        Head {
            seq,
            ordinal,
            ts_ms,
        }
    }))
}

/// Applies `batch` if the head of `room` is at `expected`.
pub(super) fn append(
    inner: &Inner,
    room: &str,
    expected: u64,
    batch: &Batch,
) -> Result<AppendOutcome, Fail> {
    let txn = inner.write()?;
    let mut heads = txn.open_table(HEADS)?;
    let current = read_head(&heads, room)?.unwrap_or_default();
    if current.seq != expected {
        drop(heads);
        txn.abort()?;
        return Ok(AppendOutcome::Fenced { current });
    }
    check_batch(&current, batch)?;
    {
        let mut tables = LogTables::open(&txn, room)?;
        write_events(inner, &mut tables, room, expected, &batch.events)?;
        let mut dedupe_writes = 0;
        for write in &batch.writes {
            dedupe_writes += usize::from(matches!(write, Write::Dedupe { .. }));
            apply(&mut tables, room, batch.head.seq, write)?;
        }
        purge_expired_dedupe(
            &mut tables,
            batch.head.ts_ms,
            dedupe_writes * PURGE_PER_DEDUPE_WRITE,
        )?;
    }
    if batch.mark_outbox {
        // In the same transaction as the events: a batch is never durable unmarked.
        let mut outbox = txn.open_table(OUTBOX)?;
        if outbox.get(room)?.is_none() {
            outbox.insert(room, expected.saturating_add(1))?;
        }
    }
    let head = batch.head;
    heads.insert(room, (head.seq, head.ordinal, head.ts_ms))?;
    drop(heads);
    txn.commit()?;
    Ok(AppendOutcome::Applied)
}

/// The batch's events must continue the log: seqs `current.seq + 1 ..= batch.head.seq`,
/// contiguous, timestamps never going backwards (the buckets rise with the seq).
fn check_batch(current: &Head, batch: &Batch) -> Result<(), Fail> {
    let mut seq = current.seq;
    let mut last_ts = (current.seq > 0).then_some(current.ts_ms);
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

/// Writes the events, the bucket index entries of new buckets and the edit index.
fn write_events(
    inner: &Inner,
    tables: &mut LogTables<'_>,
    room: &str,
    expected: u64,
    events: &[v1::RoomEvent],
) -> Result<(), Fail> {
    let mut last_bucket = bucket_of(&tables.starts, room, expected)?.filter(|_| expected > 0);
    for event in events {
        let bucket = inner.bucket(event.ts_ms);
        if last_bucket != Some(bucket) && tables.buckets.get((room, bucket))?.is_none() {
            tables.buckets.insert((room, bucket), event.seq)?;
            tables.starts.insert((room, event.seq), bucket)?;
        }
        last_bucket = Some(bucket);
        tables
            .events
            .insert((room, bucket, event.seq), encode(event).as_slice())?;
        if let Some(Kind::MessageEdited(edit)) = &event.kind {
            tables
                .edits
                .insert((room, edit.target_seq, event.seq), bucket)?;
        }
    }
    Ok(())
}

/// Applies one materialization write.
fn apply(tables: &mut LogTables<'_>, room: &str, head_seq: u64, write: &Write) -> Result<(), Fail> {
    match write {
        Write::Room(settings) => {
            tables.rooms.insert(room, encode(settings).as_slice())?;
        }
        Write::Member(member) => put_member(tables, room, member)?,
        Write::RemoveMember(user) => {
            tables.members.remove((room, user.as_str()))?;
            tables.user_rooms.remove((user.as_str(), room))?;
        }
        Write::Message(message) => put_message(tables, room, head_seq, message)?,
        Write::Redact { target_seq } => redact(tables, room, *target_seq)?,
        Write::Dedupe {
            sender,
            client_msg_id,
            entry,
        } => put_dedupe(
            tables,
            room,
            sender,
            client_msg_id,
            DedupeRecord::from(entry),
        )?,
        Write::Reaction {
            user,
            target_seq,
            emoji,
            added,
        } => {
            let key = (room, user.as_str(), *target_seq, emoji.as_str());
            if *added {
                tables.reactions.insert(key, ())?;
            } else {
                tables.reactions.remove(key)?;
            }
        }
        Write::ReadUpTo { user, seq, ordinal } => {
            raise_watermarks(
                &mut tables.user_rooms,
                user.as_str(),
                room,
                *seq,
                Some((*seq, *ordinal)),
            )?;
        }
    }
    Ok(())
}

/// Stores a message's current state under the bucket of its seq.
fn put_message(
    tables: &mut LogTables<'_>,
    room: &str,
    head_seq: u64,
    message: &v1::Message,
) -> Result<(), Fail> {
    if message.seq == 0 || message.seq > head_seq {
        return Err(corrupt(format!(
            "message state for seq {} outside the log (head {head_seq})",
            message.seq
        )));
    }
    if message.seq < tables.cut.from {
        return Ok(());
    }
    let bucket = bucket_of(&tables.starts, room, message.seq)?
        .ok_or_else(|| corrupt(format!("no bucket holds seq {}", message.seq)))?;
    tables
        .messages
        .insert((room, bucket, message.seq), encode(message).as_slice())?;
    Ok(())
}

/// Clears a message's content from its `MessageCreated` event, from every `MessageEdited`
/// event targeting it and from its current state, keeping the seqs. Of a message dropped by
/// retention only the edits it kept are left to clear.
fn redact(tables: &mut LogTables<'_>, room: &str, target_seq: u64) -> Result<(), Fail> {
    let created_key = if target_seq < tables.cut.from {
        None
    } else {
        Some(redact_created(tables, room, target_seq)?)
    };

    let mut edits = Vec::new();
    for entry in tables
        .edits
        .range((room, target_seq, 0)..=(room, target_seq, u64::MAX))?
    {
        let (key, bucket) = entry?;
        edits.push((key.value().2, bucket.value()));
    }
    for (edit_seq, edit_bucket) in edits {
        let key = (room, edit_bucket, edit_seq);
        let Some(mut event) = read_event(&tables.events, key)? else {
            return Err(corrupt(format!("edit index names missing seq {edit_seq}")));
        };
        if let Some(Kind::MessageEdited(edit)) = &mut event.kind {
            edit.content = None;
            edit.redacted = true;
            tables.events.insert(key, encode(&event).as_slice())?;
        }
    }

    let Some(created_key) = created_key else {
        return Ok(());
    };
    let state = tables
        .messages
        .get(created_key)?
        .map(|row| decode::<v1::Message>(row.value()))
        .transpose()?;
    if let Some(mut message) = state {
        message.content = None;
        message.deleted = true;
        message.reactions.clear();
        tables
            .messages
            .insert(created_key, encode(&message).as_slice())?;
    }
    Ok(())
}

/// Clears the content of a message's `MessageCreated` event; returns its key.
fn redact_created<'a>(
    tables: &mut LogTables<'_>,
    room: &'a str,
    target_seq: u64,
) -> Result<(&'a str, i64, u64), Fail> {
    let bucket = bucket_of(&tables.starts, room, target_seq)?
        .ok_or_else(|| corrupt(format!("redaction of unknown seq {target_seq}")))?;
    let created_key = (room, bucket, target_seq);
    let mut created = read_event(&tables.events, created_key)?
        .ok_or_else(|| corrupt(format!("redaction of unknown seq {target_seq}")))?;
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
    tables
        .events
        .insert(created_key, encode(&created).as_slice())?;
    Ok(created_key)
}

fn read_event<T>(events: &T, key: (&str, i64, u64)) -> Result<Option<v1::RoomEvent>, Fail>
where
    T: ReadableTable<(&'static str, i64, u64), &'static [u8]>,
{
    events
        .get(key)?
        .map(|row| decode::<v1::RoomEvent>(row.value()))
        .transpose()
}

/// Expired dedupe entries forgotten per dedupe entry written: more than one, so the table
/// shrinks back to the entries still alive however fast it grew, at a bounded cost per append.
pub(super) const PURGE_PER_DEDUPE_WRITE: usize = 2;
/// An entry is forgotten by an append only this long after it expired by the batch's clock, so
/// a reader whose clock runs behind the writer's still finds the entries it considers alive.
pub const DEDUPE_PURGE_GRACE_MS: i64 = 60_000;

/// Forgets up to `most` dedupe entries that expired [`DEDUPE_PURGE_GRACE_MS`] before `now_ms`
/// (oldest expiry first).
fn purge_expired_dedupe(tables: &mut LogTables<'_>, now_ms: i64, most: usize) -> Result<(), Fail> {
    if most == 0 {
        return Ok(());
    }
    let mut expired = Vec::new();
    for entry in tables.dedupe_expiry.iter()?.take(most) {
        let (key, _) = entry?;
        let key = key.value();
        if key.0 > now_ms.saturating_sub(DEDUPE_PURGE_GRACE_MS) {
            break;
        }
        expired.push((key.0, key.1.to_owned(), key.2.to_owned(), key.3.to_owned()));
    }
    for (expires, room, sender, id) in &expired {
        tables
            .dedupe_expiry
            .remove((*expires, room.as_str(), sender.as_str(), id.as_str()))?;
        tables
            .dedupe
            .remove((room.as_str(), sender.as_str(), id.as_str()))?;
    }
    Ok(())
}

/// Stores a dedupe entry, moving its expiry index row when the entry is replaced.
fn put_dedupe(
    tables: &mut LogTables<'_>,
    room: &str,
    sender: &UserId,
    client_msg_id: &str,
    record: DedupeRecord,
) -> Result<(), Fail> {
    let key = (room, sender.as_str(), client_msg_id);
    let previous = tables
        .dedupe
        .get(key)?
        .map(|row| decode::<DedupeRecord>(row.value()))
        .transpose()?;
    if let Some(previous) = previous {
        tables.dedupe_expiry.remove((
            previous.expires_at_ms,
            room,
            sender.as_str(),
            client_msg_id,
        ))?;
    }
    tables.dedupe.insert(key, encode(&record).as_slice())?;
    tables.dedupe_expiry.insert(
        (record.expires_at_ms, room, sender.as_str(), client_msg_id),
        (),
    )?;
    Ok(())
}
