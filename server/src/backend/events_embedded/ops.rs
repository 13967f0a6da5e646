//! The queue operations, each one redb transaction (redb runs one writer at a time, so a lease
//! and an ack of the same event cannot interleave).

use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};

use super::Inner;
use super::tables::{DEAD, ENTRIES, EntryRecord, Fail, Tables, corrupt, decode, lane_table};
use crate::backend::events::{
    DeadLetter, Delivery, DeliveryTag, DownstreamEvent, Lane, QueueError,
};

const NEXT_KEY: &str = "next_key";
const NEXT_LEASE: &str = "next_lease";
const FORMAT_VERSION: &str = "format_version";
const FORMAT: u64 = 1;

/// Creates the tables, checks the format, and releases every lease: after a restart nobody
/// holds one, so each leased event is due again at once (old tags get `LeaseLost`).
pub(super) fn init(inner: &Inner) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut t = Tables::open(&txn)?;
        let format = t.meta.get(FORMAT_VERSION)?.map(|v| v.value());
        match format {
            None => {
                t.meta.insert(FORMAT_VERSION, FORMAT)?;
            }
            Some(FORMAT) => {}
            Some(other) => return Err(corrupt(format!("unknown event queue format {other}"))),
        }
        let mut leased = Vec::new();
        for entry in t.leased.iter()? {
            leased.push(entry?.0.value());
        }
        for key in leased {
            t.leased.remove(key)?;
            let Some(mut record) = t.entry(key)? else {
                continue;
            };
            let lane = record.lane()?;
            t.lane(lane).remove((record.due_ms, key))?;
            record.lease = 0;
            record.due_ms = 0;
            t.lane(lane).insert((0, key), ())?;
            t.put(key, &record)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Queues the events whose id is not queued yet.
pub(super) fn publish(inner: &Inner, events: Vec<DownstreamEvent>) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut t = Tables::open(&txn)?;
        let mut next_key = t.counter(NEXT_KEY)?.max(1);
        for event in events {
            if t.ids.get(event.id.as_str())?.is_some() {
                continue;
            }
            let key = next_key;
            next_key += 1;
            t.ids.insert(event.id.as_str(), key)?;
            t.lane(event.lane).insert((0, key), ())?;
            t.put(key, &EntryRecord::new(event))?;
        }
        t.meta.insert(NEXT_KEY, next_key)?;
    }
    txn.commit()?;
    Ok(())
}

/// Leases up to `max` due events of `lane`.
pub(super) fn lease(
    inner: &Inner,
    lane: Lane,
    max: usize,
    now_ms: i64,
) -> Result<Vec<Delivery>, Fail> {
    let txn = inner.write()?;
    let mut out = Vec::new();
    {
        let mut t = Tables::open(&txn)?;
        let mut due = Vec::new();
        for entry in t
            .lane(lane)
            .range((i64::MIN, 0)..=(now_ms, u64::MAX))?
            .take(max)
        {
            due.push(entry?.0.value());
        }
        let mut next_lease = t.counter(NEXT_LEASE)?.max(1);
        for (due_ms, key) in due {
            let mut record = t
                .entry(key)?
                .ok_or_else(|| corrupt(format!("lane {lane} points at missing entry {key}")))?;
            t.lane(lane).remove((due_ms, key))?;
            if record.lease != 0 {
                // The lease ran out: the consumer died or hung, which counts as a failure.
                t.leased.remove(key)?;
                if record.attempt >= inner.policy.max_attempts() {
                    record.reason = "lease ran out on the last attempt".to_owned();
                    bury(&mut t, key, record, now_ms)?;
                    continue;
                }
            }
            record.attempt += 1;
            record.lease = next_lease;
            next_lease += 1;
            record.due_ms = now_ms.saturating_add(inner.policy.lease_timeout_ms);
            t.lane(lane).insert((record.due_ms, key), ())?;
            t.leased.insert(key, ())?;
            t.put(key, &record)?;
            out.push(Delivery {
                event: record.event()?,
                attempt: record.attempt,
                tag: DeliveryTag {
                    key,
                    lease: record.lease,
                },
            });
        }
        t.meta.insert(NEXT_LEASE, next_lease)?;
    }
    txn.commit()?;
    Ok(out)
}

/// The entry of a current lease, taken off its lane and out of `leased`.
fn take_leased(t: &mut Tables<'_>, tag: DeliveryTag) -> Result<EntryRecord, Fail> {
    let record = match t.entry(tag.key)? {
        Some(record) if record.lease != 0 && record.lease == tag.lease => record,
        _ => return Err(Fail::Own(QueueError::LeaseLost)),
    };
    t.lane(record.lane()?).remove((record.due_ms, tag.key))?;
    t.leased.remove(tag.key)?;
    Ok(record)
}

/// Forgets a delivered event.
pub(super) fn ack(inner: &Inner, tag: DeliveryTag) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut t = Tables::open(&txn)?;
        let record = take_leased(&mut t, tag)?;
        t.ids.remove(record.id.as_str())?;
        t.entries.remove(tag.key)?;
    }
    txn.commit()?;
    Ok(())
}

/// Moves a failed event to its next retry tier, or to the dead-letter queue.
pub(super) fn nack(inner: &Inner, tag: DeliveryTag, now_ms: i64, reason: &str) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut t = Tables::open(&txn)?;
        let mut record = take_leased(&mut t, tag)?;
        record.lease = 0;
        record.reason = reason.to_owned();
        match inner.policy.delay_after(record.attempt) {
            Some(delay) => {
                record.due_ms = now_ms.saturating_add(delay);
                t.lane(record.lane()?)
                    .insert((record.due_ms, tag.key), ())?;
                t.put(tag.key, &record)?;
            }
            None => bury(&mut t, tag.key, record, now_ms)?,
        }
    }
    txn.commit()?;
    Ok(())
}

/// Dead-letters an entry already taken off its lane.
fn bury(t: &mut Tables<'_>, key: u64, mut record: EntryRecord, now_ms: i64) -> Result<(), Fail> {
    record.lease = 0;
    record.dead_at_ms = Some(now_ms);
    t.dead.insert((now_ms, key), ())?;
    t.put(key, &record)
}

/// Dead letters, oldest dead first.
pub(super) fn dead_letters(inner: &Inner, limit: usize) -> Result<Vec<DeadLetter>, Fail> {
    let txn = inner.db.begin_read()?;
    let dead = txn.open_table(DEAD)?;
    let entries = txn.open_table(ENTRIES)?;
    let mut out = Vec::new();
    for row in dead.iter()?.take(limit) {
        let (dead_at_ms, key) = row?.0.value();
        let bytes = entries
            .get(key)?
            .ok_or_else(|| corrupt(format!("dead letter {key} has no entry")))?;
        let record = decode(bytes.value())?;
        out.push(DeadLetter {
            event: record.event()?,
            attempts: record.attempt,
            dead_at_ms,
            reason: record.reason,
        });
    }
    Ok(out)
}

/// Puts a dead letter back in its lane; false when `id` is not dead.
pub(super) fn replay(inner: &Inner, id: &str, now_ms: i64) -> Result<bool, Fail> {
    let txn = inner.write()?;
    let replayed = {
        let mut t = Tables::open(&txn)?;
        let key = t.ids.get(id)?.map(|v| v.value());
        let found = match key {
            Some(key) => t.entry(key)?.map(|record| (key, record)),
            None => None,
        };
        match found {
            Some((key, mut record)) => match record.dead_at_ms.take() {
                Some(dead_at_ms) => {
                    t.dead.remove((dead_at_ms, key))?;
                    record.attempt = 0;
                    record.reason.clear();
                    record.due_ms = now_ms;
                    t.lane(record.lane()?).insert((now_ms, key), ())?;
                    t.put(key, &record)?;
                    true
                }
                None => false,
            },
            None => false,
        }
    };
    txn.commit()?;
    Ok(replayed)
}

/// Waiting and leased events of a lane.
pub(super) fn depth(inner: &Inner, lane: Lane) -> Result<u64, Fail> {
    let txn = inner.db.begin_read()?;
    Ok(txn.open_table(lane_table(lane))?.len()?)
}

/// Dead letters.
pub(super) fn dlq_len(inner: &Inner) -> Result<u64, Fail> {
    let txn = inner.db.begin_read()?;
    Ok(txn.open_table(DEAD)?.len()?)
}
