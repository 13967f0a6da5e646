//! What one queue handle holds on its consuming channel, with no I/O: every message it took
//! with `basic.get` and has not settled yet. The broker keeps such a message unacknowledged
//! and hands it back to the queue if this connection goes away, which is what makes a lease
//! durable; the ledger adds what the broker does not know: the lease's end on the injected
//! clock, a not-yet-due time, and the trait's lease ids.
//!
//! A held message is in one of three states:
//! - leased to a consumer until `deadline_ms` (after that it is leased again or buried);
//! - parked: taken from a lane or a retry tier before its due time (the injected clock is
//!   ahead of the tier's real TTL, or behind a replay's time); leased once due;
//! - browsed: taken from the DLQ to list or replay it.
//!
//! Keys are the channel's delivery tags; lease ids start at a random point per handle, so a
//! tag from a closed handle (or a dropped connection) is refused, never mistaken.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::message::Envelope;
use crate::backend::events::{Delivery, DeliveryTag, Lane, QueueError};

/// Where a held message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Its lane.
    Lane,
    /// Retry tier `n` (0-based) of its lane.
    Tier(usize),
    /// The dead-letter queue.
    Dead,
}

/// What the handle does with a held message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Hold {
    /// Leased to a consumer.
    Leased {
        /// The trait's lease id.
        lease: u64,
        /// When the lease runs out.
        deadline_ms: i64,
    },
    /// Waiting for its due time.
    Parked {
        /// When it may be leased.
        due_ms: i64,
    },
    /// Listed from the DLQ.
    Browsed,
}

/// One held message.
#[derive(Debug, Clone)]
pub(super) struct Held {
    /// Where it came from.
    pub(super) source: Source,
    /// The message.
    pub(super) envelope: Envelope,
    /// Deliveries made, the current lease included.
    pub(super) attempts: u32,
    /// Its state.
    pub(super) hold: Hold,
}

impl Held {
    /// The lane of its event.
    pub(super) fn lane(&self) -> Lane {
        self.envelope.event.lane
    }

    fn in_lane(&self, lane: Lane) -> bool {
        self.source != Source::Dead && self.lane() == lane
    }
}

/// The held messages of one consuming channel.
#[derive(Debug)]
pub(super) struct Ledger {
    held: BTreeMap<u64, Held>,
    next_lease: u64,
}

impl Ledger {
    /// An empty ledger whose lease ids start at `first_lease`.
    pub(super) fn new(first_lease: u64) -> Self {
        Self {
            held: BTreeMap::new(),
            next_lease: first_lease.max(1),
        }
    }

    /// Forgets every held message: the channel is gone and the broker requeued them.
    pub(super) fn clear(&mut self) {
        self.held.clear();
    }

    /// Records a message just taken, parked until `due_ms`.
    pub(super) fn hold(&mut self, key: u64, source: Source, envelope: Envelope, attempts: u32) {
        let hold = match source {
            Source::Dead => Hold::Browsed,
            _ => Hold::Parked {
                due_ms: envelope.due_ms.unwrap_or(i64::MIN),
            },
        };
        let held = Held {
            source,
            envelope,
            attempts,
            hold,
        };
        self.held.insert(key, held);
    }

    /// Whether `key` is parked with a due time at or before `now_ms`.
    pub(super) fn is_due(&self, key: u64, now_ms: i64) -> bool {
        matches!(self.held.get(&key), Some(Held { hold: Hold::Parked { due_ms }, .. }) if *due_ms <= now_ms)
    }

    /// Leases a held message (parked, or leased with its lease run out): one more attempt,
    /// a fresh lease id, a lease ending at `now_ms + timeout_ms`.
    pub(super) fn lease(&mut self, key: u64, now_ms: i64, timeout_ms: i64) -> Option<Delivery> {
        let lease = self.next_lease;
        let held = self.held.get_mut(&key)?;
        self.next_lease = self.next_lease.wrapping_add(1).max(1);
        held.attempts = held.attempts.saturating_add(1);
        held.hold = Hold::Leased {
            lease,
            deadline_ms: now_ms.saturating_add(timeout_ms),
        };
        Some(Delivery {
            event: held.envelope.event.clone(),
            attempt: held.attempts,
            tag: DeliveryTag { key, lease },
        })
    }

    /// Messages of `lane` ready to lease again at `now_ms`, oldest first, split into those
    /// with attempts left and those whose lease ran out on the last allowed attempt.
    pub(super) fn due(&self, lane: Lane, now_ms: i64, max_attempts: u32) -> (Vec<u64>, Vec<u64>) {
        let (mut again, mut bury) = (Vec::new(), Vec::new());
        for (key, held) in self.held.iter().filter(|(_, h)| h.in_lane(lane)) {
            match held.hold {
                Hold::Leased { deadline_ms, .. } if deadline_ms <= now_ms => {
                    if held.attempts >= max_attempts {
                        bury.push(*key);
                    } else {
                        again.push(*key);
                    }
                }
                Hold::Parked { due_ms } if due_ms <= now_ms => again.push(*key),
                _ => {}
            }
        }
        (again, bury)
    }

    /// The held message of a current lease, or [`QueueError::LeaseLost`].
    pub(super) fn leased(&self, tag: DeliveryTag) -> Result<&Held, QueueError> {
        match self.held.get(&tag.key) {
            Some(held) if matches!(held.hold, Hold::Leased { lease, .. } if lease == tag.lease) => {
                Ok(held)
            }
            _ => Err(QueueError::LeaseLost),
        }
    }

    /// A held message.
    pub(super) fn get(&self, key: u64) -> Option<&Held> {
        self.held.get(&key)
    }

    /// Forgets a settled message.
    pub(super) fn remove(&mut self, key: u64) -> Option<Held> {
        self.held.remove(&key)
    }

    /// Whether a message taken from `source` of `lane` waits parked (a tier is FIFO by due
    /// time, so nothing behind it is due either).
    pub(super) fn has_parked(&self, lane: Lane, source: Source) -> bool {
        self.held
            .values()
            .any(|h| h.in_lane(lane) && h.source == source && matches!(h.hold, Hold::Parked { .. }))
    }

    /// Whether an event with `id` is held for `lane` already (a duplicate publish).
    pub(super) fn holds_id(&self, lane: Lane, id: &str) -> bool {
        self.held
            .values()
            .any(|h| h.in_lane(lane) && h.envelope.event.id == id)
    }

    /// Held messages of `lane`, leased or parked.
    pub(super) fn count(&self, lane: Lane) -> u64 {
        self.held.values().filter(|h| h.in_lane(lane)).count() as u64
    }

    /// Browsed dead letters, oldest first.
    pub(super) fn browsed(&self) -> Vec<u64> {
        (self.held.iter())
            .filter(|(_, h)| h.source == Source::Dead)
            .map(|(key, _)| *key)
            .collect()
    }

    /// The browsed dead letter with `id`.
    pub(super) fn browsed_id(&self, id: &str) -> Option<u64> {
        (self.held.iter())
            .find(|(_, h)| h.source == Source::Dead && h.envelope.event.id == id)
            .map(|(key, _)| *key)
    }

    /// Every held message, oldest first (for a clean close).
    pub(super) fn drain(&mut self) -> Vec<(u64, Held)> {
        std::mem::take(&mut self.held).into_iter().collect()
    }
}

/// Event ids this handle published or leased and has not seen acknowledged, so a batch
/// published again is skipped. Bounded: the oldest ids are forgotten first.
#[derive(Debug)]
pub(super) struct RecentIds {
    ids: HashMap<String, u64>,
    order: VecDeque<(u64, String)>,
    next: u64,
    cap: usize,
}

impl RecentIds {
    /// Remembers at most `cap` ids.
    pub(super) fn new(cap: usize) -> Self {
        Self {
            ids: HashMap::new(),
            order: VecDeque::new(),
            next: 0,
            cap: cap.max(1),
        }
    }

    /// Whether `id` is remembered.
    pub(super) fn contains(&self, id: &str) -> bool {
        self.ids.contains_key(id)
    }

    /// Remembers `id`.
    pub(super) fn insert(&mut self, id: &str) {
        self.next += 1;
        self.ids.insert(id.to_owned(), self.next);
        self.order.push_back((self.next, id.to_owned()));
        while self.ids.len() > self.cap || self.order.len() > 2 * self.cap {
            let Some((stamp, old)) = self.order.pop_front() else {
                break;
            };
            if self.ids.get(&old) == Some(&stamp) {
                self.ids.remove(&old);
            }
        }
    }

    /// Forgets `id` (acknowledged: it may be published again).
    pub(super) fn remove(&mut self, id: &str) {
        self.ids.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::events::DownstreamEvent;
    use bytes::Bytes;

    fn envelope(id: &str, due_ms: Option<i64>) -> Envelope {
        Envelope {
            due_ms,
            ..Envelope::new(DownstreamEvent {
                id: id.to_owned(),
                lane: Lane::High,
                kind: "message.created".to_owned(),
                room_id: None,
                seq: None,
                occurred_at_ms: 0,
                payload: Bytes::new(),
            })
        }
    }

    #[test]
    fn leases_run_out_then_bury_on_the_last_attempt() {
        let mut ledger = Ledger::new(7);
        ledger.hold(1, Source::Lane, envelope("a", None), 0);
        assert_eq!(ledger.due(Lane::High, 0, 2), (vec![1], vec![]));
        let first = ledger.lease(1, 0, 100).expect("held");
        assert_eq!((first.attempt, first.tag.lease), (1, 7));
        assert_eq!(ledger.due(Lane::High, 99, 2), (vec![], vec![]));
        assert_eq!(ledger.due(Lane::High, 100, 2), (vec![1], vec![]));
        let second = ledger.lease(1, 100, 100).expect("held");
        assert_eq!(second.attempt, 2);
        assert_eq!(ledger.leased(first.tag).err(), Some(QueueError::LeaseLost));
        assert!(ledger.leased(second.tag).is_ok());
        assert_eq!(ledger.due(Lane::High, 200, 2), (vec![], vec![1]));
        assert_eq!(ledger.count(Lane::High), 1);
        assert_eq!(ledger.count(Lane::Low), 0);
    }

    #[test]
    fn parked_until_due() {
        let mut ledger = Ledger::new(1);
        ledger.hold(4, Source::Tier(0), envelope("b", Some(50)), 1);
        assert!(ledger.has_parked(Lane::High, Source::Tier(0)));
        assert!(!ledger.has_parked(Lane::High, Source::Tier(1)));
        assert!(!ledger.is_due(4, 49));
        assert!(ledger.is_due(4, 50));
        assert_eq!(ledger.lease(4, 50, 10).map(|d| d.attempt), Some(2));
        assert!(ledger.holds_id(Lane::High, "b"));
    }

    #[test]
    fn recent_ids_are_bounded() {
        let mut ids = RecentIds::new(2);
        for id in ["a", "b", "c"] {
            ids.insert(id);
        }
        assert!(!ids.contains("a") && ids.contains("b") && ids.contains("c"));
        ids.remove("b");
        assert!(!ids.contains("b"));
    }
}
