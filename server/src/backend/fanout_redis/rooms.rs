//! The node's view of each room it delivers (sans IO): a cursor, the last known audience and
//! a small ring of events around the cursor (recently delivered ones, and ones that arrived
//! ahead of a gap and wait for it to be repaired).
//!
//! Every batch, whether published here, received from pub/sub or read back by a repair, goes
//! through [`Rooms::offer`]: seqs at or below the cursor are dropped (pub/sub duplicates, a
//! stale writer's re-publish), `cursor + 1` onwards is released in order, and anything beyond
//! a gap waits in the ring while the caller repairs the gap (tail stream, then log).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chatwire_protocol::v1;

use crate::chat::ids::{RoomId, UserId};

/// Events ready for the sessions of `audience`, contiguous and in order.
#[derive(Debug, Clone)]
pub(super) struct Ready {
    /// The events.
    pub events: Arc<[v1::RoomEvent]>,
    /// Who gets them.
    pub audience: Arc<[UserId]>,
}

#[derive(Debug, Clone)]
struct Entry {
    event: v1::RoomEvent,
    audience: Arc<[UserId]>,
}

#[derive(Debug)]
struct Room {
    cursor: u64,
    audience: Arc<[UserId]>,
    ring: BTreeMap<u64, Entry>,
    repairing: bool,
}

/// Every room this node delivers.
#[derive(Debug)]
pub(super) struct Rooms {
    rooms: HashMap<RoomId, Room>,
    ring: usize,
}

impl Rooms {
    /// No rooms yet; each room keeps at most `ring` delivered and `ring` waiting events.
    pub(super) fn new(ring: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            ring: ring.max(1),
        }
    }

    /// Takes a batch of `room`. A room not seen before starts at the batch (only when
    /// `track`: some audience user has a session here). Returns what is now deliverable.
    pub(super) fn offer(
        &mut self,
        room: &RoomId,
        events: &Arc<[v1::RoomEvent]>,
        audience: &Arc<[UserId]>,
        track: bool,
    ) -> Vec<Ready> {
        let Some(first) = events.first().map(|e| e.seq) else {
            return Vec::new();
        };
        let ring = self.ring;
        let state = match self.rooms.get_mut(room) {
            Some(state) => state,
            None if track => self.rooms.entry(room.clone()).or_insert_with(|| Room {
                cursor: first.saturating_sub(1),
                audience: Arc::clone(audience),
                ring: BTreeMap::new(),
                repairing: false,
            }),
            None => return Vec::new(),
        };
        if !audience.is_empty() {
            state.audience = Arc::clone(audience);
        }
        let mut ready = Vec::new();
        let contiguous = events
            .iter()
            .zip(first..)
            .all(|(event, seq)| event.seq == seq);
        if first == state.cursor + 1 && contiguous {
            // The common case: the whole batch is next, delivered as it came.
            state.cursor = first + events.len() as u64 - 1;
            for event in events.iter() {
                state.ring.insert(event.seq, entry(event, audience));
            }
            ready.push(Ready {
                events: Arc::clone(events),
                audience: Arc::clone(audience),
            });
        } else {
            for event in events.iter().filter(|e| e.seq > state.cursor) {
                state.ring.insert(event.seq, entry(event, audience));
            }
        }
        state.release(&mut ready);
        state.trim(ring);
        ready
    }

    /// The gap of `room` to repair, as `(after, until)`, if seqs up to `head` (or up to the
    /// first waiting event) are missing and no repair runs. Marks a repair as running.
    pub(super) fn begin_repair(&mut self, room: &RoomId, head: u64) -> Option<(u64, u64)> {
        let state = self.rooms.get_mut(room)?;
        let until = state.waiting_from().map_or(head, |first| first - 1);
        if state.repairing || until <= state.cursor {
            return None;
        }
        state.repairing = true;
        Some((state.cursor, until))
    }

    /// Ends the running repair of `room`. With `again`, returns the gap still open, if any
    /// (`(after, until)`, marked as repairing again).
    pub(super) fn end_repair(&mut self, room: &RoomId, again: bool) -> Option<(u64, u64)> {
        let state = self.rooms.get_mut(room)?;
        state.repairing = false;
        let first = state.waiting_from().filter(|_| again)?;
        state.repairing = true;
        Some((state.cursor, first - 1))
    }

    /// Moves the cursor of `room` up to `seq` without delivering (those seqs are gone from
    /// the log: retention), then releases what waits behind.
    pub(super) fn skip_to(&mut self, room: &RoomId, seq: u64) -> Vec<Ready> {
        let mut ready = Vec::new();
        if let Some(state) = self.rooms.get_mut(room)
            && seq > state.cursor
        {
            state.cursor = seq;
            state.release(&mut ready);
            state.trim(self.ring);
        }
        ready
    }

    /// The room's cursor, if it is tracked.
    pub(super) fn cursor(&self, room: &RoomId) -> Option<u64> {
        self.rooms.get(room).map(|state| state.cursor)
    }

    /// The room's last known audience.
    pub(super) fn audience(&self, room: &RoomId) -> Option<Arc<[UserId]>> {
        self.rooms
            .get(room)
            .map(|state| Arc::clone(&state.audience))
    }

    /// Every tracked room with its cursor.
    pub(super) fn tracked(&self) -> Vec<(RoomId, u64)> {
        self.rooms
            .iter()
            .map(|(room, state)| (room.clone(), state.cursor))
            .collect()
    }

    /// Forgets rooms for which `keep` says no (no audience user has a session here any more).
    pub(super) fn retain(&mut self, mut keep: impl FnMut(&[UserId]) -> bool) {
        self.rooms
            .retain(|_, state| state.repairing || keep(&state.audience));
    }
}

impl Room {
    /// The first waiting event's seq (beyond the cursor).
    fn waiting_from(&self) -> Option<u64> {
        self.ring
            .range(self.cursor + 1..)
            .next()
            .map(|(seq, _)| *seq)
    }

    /// Moves the cursor over waiting events that are now next, grouping runs that share an
    /// audience into one delivery.
    fn release(&mut self, ready: &mut Vec<Ready>) {
        let mut run: Vec<v1::RoomEvent> = Vec::new();
        let mut audience: Option<Arc<[UserId]>> = None;
        while let Some(next) = self.ring.get(&(self.cursor + 1)) {
            if audience
                .as_ref()
                .is_some_and(|a| !Arc::ptr_eq(a, &next.audience))
            {
                flush(&mut run, &mut audience, ready);
            }
            audience.get_or_insert_with(|| Arc::clone(&next.audience));
            run.push(next.event.clone());
            self.cursor += 1;
        }
        flush(&mut run, &mut audience, ready);
    }

    /// Keeps at most `ring` delivered events and `ring` waiting ones (the lowest: those are
    /// released first; dropped higher ones are repaired again later).
    fn trim(&mut self, ring: usize) {
        let delivered = self.ring.range(..=self.cursor).count();
        for _ in ring..delivered {
            self.ring.pop_first();
        }
        let waiting = self.ring.range(self.cursor + 1..).count();
        for _ in ring..waiting {
            self.ring.pop_last();
        }
    }
}

fn flush(
    run: &mut Vec<v1::RoomEvent>,
    audience: &mut Option<Arc<[UserId]>>,
    ready: &mut Vec<Ready>,
) {
    if let Some(audience) = audience.take()
        && !run.is_empty()
    {
        ready.push(Ready {
            events: std::mem::take(run).into(),
            audience,
        });
    }
    run.clear();
}

fn entry(event: &v1::RoomEvent, audience: &Arc<[UserId]>) -> Entry {
    Entry {
        event: event.clone(),
        audience: Arc::clone(audience),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomId {
        RoomId::parse("g.r").unwrap()
    }

    fn batch(seqs: impl IntoIterator<Item = u64>) -> Arc<[v1::RoomEvent]> {
        seqs.into_iter()
            .map(|seq| v1::RoomEvent {
                seq,
                ..Default::default()
            })
            .collect()
    }

    fn seqs(ready: &[Ready]) -> Vec<u64> {
        ready
            .iter()
            .flat_map(|r| r.events.iter().map(|e| e.seq))
            .collect()
    }

    fn audience() -> Arc<[UserId]> {
        vec![UserId::parse("alice").unwrap()].into()
    }

    #[test]
    fn untracked_rooms_are_ignored_until_tracked() {
        let mut rooms = Rooms::new(8);
        let a = audience();
        assert!(rooms.offer(&room(), &batch([5]), &a, false).is_empty());
        assert_eq!(
            seqs(&rooms.offer(&room(), &batch([5, 6]), &a, true)),
            vec![5, 6]
        );
        assert_eq!(rooms.cursor(&room()), Some(6));
    }

    #[test]
    fn duplicates_drop_and_gaps_wait_for_repair() {
        let mut rooms = Rooms::new(8);
        let a = audience();
        rooms.offer(&room(), &batch([1, 2]), &a, true);
        assert!(rooms.offer(&room(), &batch([1, 2]), &a, true).is_empty());
        assert!(rooms.offer(&room(), &batch([5, 6]), &a, true).is_empty());
        assert_eq!(rooms.begin_repair(&room(), 0), Some((2, 4)));
        assert_eq!(rooms.begin_repair(&room(), 9), None, "one repair at a time");
        // The repair brings 3 (partly overlapping what is known): 3 goes out, 4 still missing.
        assert_eq!(
            seqs(&rooms.offer(&room(), &batch([2, 3]), &a, true)),
            vec![3]
        );
        assert_eq!(rooms.end_repair(&room(), true), Some((3, 4)));
        assert_eq!(
            seqs(&rooms.offer(&room(), &batch([4]), &a, true)),
            vec![4, 5, 6]
        );
        assert_eq!(rooms.end_repair(&room(), true), None);
        assert_eq!(
            rooms.begin_repair(&room(), 6),
            None,
            "caught up with the head"
        );
        assert_eq!(rooms.begin_repair(&room(), 8), Some((6, 8)), "stale head");
    }

    #[test]
    fn the_ring_stays_bounded() {
        let mut rooms = Rooms::new(2);
        let a = audience();
        rooms.offer(&room(), &batch(1..=5), &a, true);
        rooms.offer(&room(), &batch(10..=15), &a, true);
        let state = &rooms.rooms[&room()];
        assert_eq!(
            state.ring.keys().copied().collect::<Vec<_>>(),
            vec![4, 5, 10, 11]
        );
    }
}
