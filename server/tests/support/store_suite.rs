//! The behavioural suite of the storage traits (`RoomLog`, `Directory`, `Accounts`), written once
//! and run against every implementation.
//!
//! An implementation provides a [`StoreFactory`] and expands [`store_suite_tests!`] with it,
//! which makes one `#[tokio::test]` per behaviour, named after it:
//!
//! ```ignore
//! mod support;
//! fn factory() -> MyFactory { ... }
//! support::store_suite::store_suite_tests!(factory);
//! ```
//!
//! Batches are built by [`RoomScript`], a minimal room writer that assigns seqs, ordinals and
//! the matching materialization writes the way the real writer does.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use chatwire_protocol::v1;
use chatwire_protocol::v1::room_event::Kind;
use chatwire_server::backend::store::{
    AppendOutcome, Batch, DedupeEntry, Head, HistoryAnchor, HistoryQuery, PushToken,
    RetentionOutcome, Store, StoreError, UserRoom, Write,
};
use chatwire_server::chat::ids::{RoomId, UserId};
use prost::Message as _;

/// Makes the stores under test.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// The time bucket width of the factory's stores, so tests can spread events over buckets.
    fn bucket_width_ms(&self) -> i64;

    /// Opens the factory's store: empty on the first call; a later call (after every handle of
    /// the previous one was dropped) opens the same data again.
    async fn open(&self) -> Arc<dyn Store>;
}

/// Makes one `#[tokio::test]` per behaviour of the suite, each calling `$factory()` for a fresh
/// factory.
#[allow(unused_macros)] // test binaries that do not test a store
macro_rules! store_suite_tests {
    ($factory:path) => {
        $crate::support::store_suite::store_suite_tests!(
            @tests $factory;
            append_then_load,
            stale_append_is_fenced,
            non_contiguous_batches_are_refused,
            read_events_pages_across_buckets,
            read_messages_pages_by_anchor,
            read_messages_min_seq_and_thread,
            redaction_clears_content_everywhere,
            dedupe_hits_until_expiry,
            members_page_and_removal,
            moderation_state_is_stored,
            user_rooms_page_and_initial_watermarks,
            watermarks_only_move_forward,
            ordinal_at_skips_other_events,
            mute_is_stored,
            blocks_are_symmetric_and_idempotent,
            push_tokens_move_between_users,
            token_revocations_only_move_forward,
            durable_across_reopen,
            concurrent_appends_apply_once,
            retention_drops_whole_old_buckets_only,
            retention_keeps_the_head_bucket,
            retention_is_idempotent_and_monotonic,
            retention_survives_reopen,
            reads_start_at_the_retained_seq,
            reactions_are_rows_read_by_range,
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory();
                $crate::support::store_suite::$name(&factory).await;
            }
        )*
    };
}
#[allow(unused_imports)] // test binaries that do not test a store
pub(crate) use store_suite_tests;

// ---------------------------------------------------------------------------------------------
// Builders

/// An early, bucket-aligned timestamp all tests count from.
const T0: i64 = 1_700_000_000_000;

/// The timestamp `offset_ms` into the `bucket`-th bucket after [`T0`]'s.
pub fn at(factory: &dyn StoreFactory, bucket: i64, offset_ms: i64) -> i64 {
    let width = factory.bucket_width_ms();
    (T0.div_euclid(width) + bucket) * width + offset_ms
}

/// A room id.
pub fn room_id(raw: &str) -> RoomId {
    RoomId::parse(raw).expect("valid room id")
}

/// A user id.
pub fn user(raw: &str) -> UserId {
    UserId::parse(raw).expect("valid user id")
}

/// Text content.
pub fn text(body: &str) -> v1::Content {
    v1::Content {
        text: body.to_owned(),
        ..Default::default()
    }
}

/// A log event.
pub fn event(room: &RoomId, seq: u64, ts_ms: i64, sender: &UserId, kind: Kind) -> v1::RoomEvent {
    v1::RoomEvent {
        room_id: room.as_str().to_owned(),
        seq,
        ts_ms,
        sender: sender.as_str().to_owned(),
        kind: Some(kind),
    }
}

/// A membership.
pub fn member(user: &UserId, role: v1::Role, joined_seq: u64, joined_at_ms: i64) -> v1::Member {
    v1::Member {
        user_id: user.as_str().to_owned(),
        role: role as i32,
        joined_seq,
        joined_at_ms,
        restricted_until_ms: 0,
    }
}

/// A dedupe entry.
pub fn dedupe_entry(seq: u64, ordinal: u64, ts_ms: i64, expires_at_ms: i64) -> DedupeEntry {
    DedupeEntry {
        seq,
        ordinal,
        ts_ms,
        content_hash: [seq as u8; 32],
        expires_at_ms,
    }
}

/// A minimal room writer: builds batches with the next seqs and ordinals and the writes that
/// materialize them, and keeps the current message states it wrote.
#[derive(Debug, Clone)]
pub struct RoomScript {
    /// The room.
    pub room: RoomId,
    /// The head after the last batch built.
    pub head: Head,
    /// Current message states by seq.
    pub messages: BTreeMap<u64, v1::Message>,
    /// The room settings.
    pub settings: v1::Room,
}

impl RoomScript {
    /// A room that does not exist yet.
    pub fn new(room: &RoomId) -> Self {
        Self {
            room: room.clone(),
            head: Head::default(),
            messages: BTreeMap::new(),
            settings: v1::Room::default(),
        }
    }

    fn next(&mut self, ts_ms: i64, sender: &UserId, kind: Kind) -> v1::RoomEvent {
        self.head.seq += 1;
        self.head.ts_ms = ts_ms;
        event(&self.room, self.head.seq, ts_ms, sender, kind)
    }

    fn batch(&self, events: Vec<v1::RoomEvent>, writes: Vec<Write>) -> Batch {
        Batch {
            head: self.head,
            events,
            writes,
            mark_outbox: false,
        }
    }

    /// Creates the group with `owner` as its first member (seqs 1 and 2).
    pub fn create(&mut self, ts_ms: i64, owner: &UserId) -> Batch {
        self.settings = v1::Room {
            id: self.room.as_str().to_owned(),
            kind: v1::RoomKind::Group as i32,
            name: format!("room {}", self.room),
            history_visibility: v1::HistoryVisibility::SinceJoin as i32,
            created_by: owner.as_str().to_owned(),
            created_at_ms: ts_ms,
            member_count: 1,
            member_cap: 100,
            ..Default::default()
        };
        let created = v1::RoomCreated {
            room: Some(self.settings.clone()),
        };
        let first = self.next(ts_ms, owner, Kind::RoomCreated(created));
        let mut joined = self.join(ts_ms, owner, v1::Role::Owner);
        joined.events.insert(0, first);
        joined.writes.insert(0, Write::Room(self.settings.clone()));
        joined
    }

    /// Adds a member.
    pub fn join(&mut self, ts_ms: i64, who: &UserId, role: v1::Role) -> Batch {
        let joined = v1::MemberJoined {
            user_id: who.as_str().to_owned(),
            role: role as i32,
        };
        let event = self.next(ts_ms, who, Kind::MemberJoined(joined));
        let membership = member(who, role, self.head.seq, ts_ms);
        self.batch(vec![event], vec![Write::Member(membership)])
    }

    /// Changes a member's role (the membership keeps its join seq).
    pub fn set_role(&mut self, ts_ms: i64, who: &UserId, role: v1::Role, joined_seq: u64) -> Batch {
        let changed = v1::MemberRoleChanged {
            user_id: who.as_str().to_owned(),
            role: role as i32,
        };
        let event = self.next(ts_ms, who, Kind::MemberRoleChanged(changed));
        let membership = member(who, role, joined_seq, ts_ms);
        self.batch(vec![event], vec![Write::Member(membership)])
    }

    /// Removes a member.
    pub fn leave(&mut self, ts_ms: i64, who: &UserId) -> Batch {
        let left = v1::MemberLeft {
            user_id: who.as_str().to_owned(),
            reason: v1::LeaveReason::Left as i32,
        };
        let event = self.next(ts_ms, who, Kind::MemberLeft(left));
        self.batch(vec![event], vec![Write::RemoveMember(who.clone())])
    }

    /// Renames the room (a non-message event).
    pub fn rename(&mut self, ts_ms: i64, who: &UserId, name: &str) -> Batch {
        self.settings.name = name.to_owned();
        let updated = v1::RoomUpdated {
            room: Some(self.settings.clone()),
        };
        let event = self.next(ts_ms, who, Kind::RoomUpdated(updated));
        self.batch(vec![event], vec![Write::Room(self.settings.clone())])
    }

    /// Posts a message (in a thread when `thread_root_seq` is non-zero), with its dedupe entry
    /// expiring at `ts_ms + 1000` and the sender's read watermark moved to it.
    pub fn send(&mut self, ts_ms: i64, sender: &UserId, body: &str, thread_root_seq: u64) -> Batch {
        self.head.ordinal += 1;
        let client_msg_id = format!("c{}", self.head.seq + 1);
        let created = v1::MessageCreated {
            ordinal: self.head.ordinal,
            client_msg_id: client_msg_id.clone(),
            content: Some(text(body)),
            thread_root_seq,
            ..Default::default()
        };
        let event = self.next(ts_ms, sender, Kind::MessageCreated(created));
        let state = v1::Message {
            room_id: self.room.as_str().to_owned(),
            seq: self.head.seq,
            ordinal: self.head.ordinal,
            sender: sender.as_str().to_owned(),
            client_msg_id: client_msg_id.clone(),
            content: Some(text(body)),
            created_at_ms: ts_ms,
            thread_root_seq,
            ..Default::default()
        };
        self.messages.insert(state.seq, state.clone());
        let (seq, ordinal) = (self.head.seq, self.head.ordinal);
        let writes = vec![
            Write::Message(state),
            Write::Dedupe {
                sender: sender.clone(),
                client_msg_id,
                entry: dedupe_entry(seq, ordinal, ts_ms, ts_ms + 1000),
            },
            Write::ReadUpTo {
                user: sender.clone(),
                seq,
                ordinal,
            },
        ];
        self.batch(vec![event], writes)
    }

    /// Replaces a message's content.
    pub fn edit(&mut self, ts_ms: i64, sender: &UserId, target_seq: u64, body: &str) -> Batch {
        let edited = v1::MessageEdited {
            target_seq,
            content: Some(text(body)),
            redacted: false,
        };
        let event = self.next(ts_ms, sender, Kind::MessageEdited(edited));
        let state = self
            .messages
            .get_mut(&target_seq)
            .expect("edit of a known message");
        state.content = Some(text(body));
        state.edited_at_ms = ts_ms;
        let state = state.clone();
        self.batch(vec![event], vec![Write::Message(state)])
    }

    /// Adds a reaction.
    pub fn react(&mut self, ts_ms: i64, sender: &UserId, target_seq: u64, emoji: &str) -> Batch {
        let changed = v1::ReactionChanged {
            target_seq,
            emoji: emoji.to_owned(),
            added: true,
        };
        let event = self.next(ts_ms, sender, Kind::ReactionChanged(changed));
        let state = self
            .messages
            .get_mut(&target_seq)
            .expect("reaction to a known message");
        state.reactions.push(v1::ReactionSummary {
            emoji: emoji.to_owned(),
            count: 1,
            me: false,
            user_ids: vec![sender.as_str().to_owned()],
        });
        let state = state.clone();
        self.batch(vec![event], vec![Write::Message(state)])
    }

    /// Deletes (redacts) a message.
    pub fn delete(&mut self, ts_ms: i64, sender: &UserId, target_seq: u64) -> Batch {
        let event = self.next(
            ts_ms,
            sender,
            Kind::MessageDeleted(v1::MessageDeleted {
                target_seq,
                reason: String::new(),
            }),
        );
        if let Some(state) = self.messages.get_mut(&target_seq) {
            state.content = None;
            state.deleted = true;
            state.reactions.clear();
        }
        self.batch(vec![event], vec![Write::Redact { target_seq }])
    }
}

/// Joins batches built one after another into one.
pub fn merge(batches: impl IntoIterator<Item = Batch>) -> Batch {
    let mut merged = Batch::default();
    for batch in batches {
        merged.head = batch.head;
        merged.events.extend(batch.events);
        merged.writes.extend(batch.writes);
    }
    merged
}

/// The head a batch expects: the seq before its first event.
pub fn expected_seq(batch: &Batch) -> u64 {
    batch.head.seq - batch.events.len() as u64
}

/// Appends a batch, asserting that it applied.
pub async fn apply(store: &dyn Store, room: &RoomId, batch: &Batch) {
    let outcome = store
        .append(room, expected_seq(batch), batch)
        .await
        .expect("append");
    assert_eq!(
        outcome,
        AppendOutcome::Applied,
        "batch up to {}",
        batch.head.seq
    );
}

/// All of a room's events.
pub async fn all_events(store: &dyn Store, room: &RoomId) -> Vec<v1::RoomEvent> {
    store
        .read_events(room, 0, usize::MAX, usize::MAX)
        .await
        .expect("read events")
}

fn seqs_of_events(events: &[v1::RoomEvent]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn seqs_of_messages(messages: &[v1::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// A history query with no visibility limit, no thread and no byte budget.
pub fn history(anchor: HistoryAnchor, limit: usize) -> HistoryQuery {
    HistoryQuery {
        anchor,
        min_seq: 0,
        limit,
        max_bytes: usize::MAX,
        thread_root_seq: 0,
    }
}

async fn page(store: &dyn Store, room: &RoomId, query: HistoryQuery) -> (Vec<u64>, bool) {
    let page = store
        .read_messages(room, query)
        .await
        .expect("read messages");
    (seqs_of_messages(&page.messages), page.has_more)
}

/// A room created by `owner` at bucket 0, applied.
async fn created_room(
    factory: &dyn StoreFactory,
    store: &dyn Store,
    room: &str,
    owner: &UserId,
) -> RoomScript {
    let mut script = RoomScript::new(&room_id(room));
    let batch = script.create(at(factory, 0, 0), owner);
    apply(store, &script.room, &batch).await;
    script
}

// ---------------------------------------------------------------------------------------------
// Behaviours: the room log

/// A new room is appended, then loaded back with its head, settings and members.
pub async fn append_then_load(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let room = room_id("g:load");
    let (alice, bob) = (user("alice"), user("bob"));
    assert_eq!(store.load_room(&room).await.expect("load"), None);
    assert_eq!(store.head(&room).await.expect("head"), None);

    let mut script = RoomScript::new(&room);
    let batch = merge([
        script.create(at(factory, 0, 10), &alice),
        script.join(at(factory, 0, 20), &bob, v1::Role::Member),
    ]);
    apply(&*store, &room, &batch).await;

    let snapshot = store.load_room(&room).await.expect("load").expect("exists");
    assert_eq!(snapshot.head, batch.head);
    assert_eq!(snapshot.head.seq, 3);
    assert_eq!(snapshot.room, script.settings);
    assert_eq!(
        snapshot.members,
        vec![
            member(&alice, v1::Role::Owner, 2, at(factory, 0, 10)),
            member(&bob, v1::Role::Member, 3, at(factory, 0, 20)),
        ]
    );
    assert_eq!(store.head(&room).await.expect("head"), Some(batch.head));
    assert_eq!(all_events(&*store, &room).await, batch.events);
    assert_eq!(
        store.room(&room).await.expect("room"),
        Some(script.settings)
    );
    let bob_member = store.member(&room, &bob).await.expect("member");
    assert_eq!(bob_member.map(|m| m.joined_seq), Some(3));
    assert_eq!(store.head(&room_id("g:other")).await.expect("head"), None);
}

/// An append with a stale expected seq is fenced, reports the current head and writes nothing.
pub async fn stale_append_is_fenced(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut script = created_room(factory, &*store, "g:fence", &alice).await;
    let room = script.room.clone();
    let mut stale = script.clone();

    let winner = script.send(at(factory, 0, 100), &alice, "first", 0);
    apply(&*store, &room, &winner).await;

    let loser = merge([
        stale.send(at(factory, 0, 200), &bob, "second", 0),
        stale.rename(at(factory, 0, 200), &alice, "renamed"),
    ]);
    let outcome = store.append(&room, 2, &loser).await.expect("append");
    assert_eq!(
        outcome,
        AppendOutcome::Fenced {
            current: winner.head
        }
    );
    assert_eq!(store.head(&room).await.expect("head"), Some(winner.head));
    assert_eq!(
        seqs_of_events(&all_events(&*store, &room).await),
        vec![1, 2, 3]
    );
    let message = store
        .message(&room, 3)
        .await
        .expect("message")
        .expect("kept");
    assert_eq!(message.content, Some(text("first")));
    assert_eq!(store.message(&room, 4).await.expect("message"), None);
    let settings = store.room(&room).await.expect("room").expect("exists");
    assert_ne!(settings.name, "renamed");
    let dedupe = store.dedupe(&room, &bob, "c3", at(factory, 0, 0)).await;
    assert_eq!(dedupe.expect("dedupe"), None);

    // A room that does not exist is fenced at head 0 for any other expected seq.
    let mut other = RoomScript::new(&room_id("g:fresh"));
    let batch = other.create(at(factory, 0, 0), &alice);
    let outcome = store.append(&other.room, 5, &batch).await.expect("append");
    assert_eq!(
        outcome,
        AppendOutcome::Fenced {
            current: Head::default()
        }
    );
    assert_eq!(store.head(&other.room).await.expect("head"), None);
}

/// A batch whose seqs do not continue the head contiguously is refused and writes nothing.
pub async fn non_contiguous_batches_are_refused(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let alice = user("alice");
    let mut script = created_room(factory, &*store, "g:gaps", &alice).await;
    let room = script.room.clone();

    let mut gap = script.clone();
    gap.head.seq += 1; // skips seq 3
    let skipping = gap.send(at(factory, 0, 5), &alice, "skips", 0);
    let refused = store.append(&room, 2, &skipping).await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );

    let mut holes = merge([
        script.clone().send(at(factory, 0, 5), &alice, "a", 0),
        script.clone().send(at(factory, 0, 5), &alice, "b", 0),
    ]);
    holes.head.seq = 4; // events 3 and 3
    let refused = store.append(&room, 2, &holes).await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );

    let mut wrong_head = script.send(at(factory, 0, 5), &alice, "c", 0);
    wrong_head.head.seq = 9;
    let refused = store.append(&room, 2, &wrong_head).await;
    assert!(
        matches!(refused, Err(StoreError::Corrupt(_))),
        "{refused:?}"
    );

    assert_eq!(
        store.head(&room).await.expect("head").map(|h| h.seq),
        Some(2)
    );
    assert_eq!(
        seqs_of_events(&all_events(&*store, &room).await),
        vec![1, 2]
    );
    assert_eq!(store.message(&room, 3).await.expect("message"), None);
}

/// Events come back in seq order, paged by `after_seq`, `limit` and `max_bytes` (at least one),
/// across several time buckets with empty buckets between them.
pub async fn read_events_pages_across_buckets(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let alice = user("alice");
    let mut script = created_room(factory, &*store, "g:paging", &alice).await;
    let room = script.room.clone();
    // Buckets 0, 1, (2-4 empty), 5, 5, 9: seqs 3..=8.
    for (bucket, body) in [(0, "a"), (1, "b"), (5, "c"), (5, "d"), (9, "e")] {
        let batch = script.send(at(factory, bucket, 7), &alice, body, 0);
        apply(&*store, &room, &batch).await;
    }
    let batch = script.rename(at(factory, 9, 8), &alice, "later");
    apply(&*store, &room, &batch).await;
    // A neighbour whose id sorts right after: its events must never leak in.
    let mut neighbour = RoomScript::new(&room_id("g:paging0"));
    let batch = neighbour.create(at(factory, 3, 0), &alice);
    apply(&*store, &neighbour.room, &batch).await;

    let all = all_events(&*store, &room).await;
    assert_eq!(seqs_of_events(&all), (1..=8).collect::<Vec<_>>());
    assert!(all.iter().all(|e| e.room_id == room.as_str()));

    let mut after = 0;
    let mut walked = Vec::new();
    loop {
        let page = store
            .read_events(&room, after, 2, usize::MAX)
            .await
            .expect("read");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        after = page.last().map(|e| e.seq).expect("non-empty");
        walked.extend(page);
    }
    assert_eq!(walked, all);

    let from_middle = store
        .read_events(&room, 4, 3, usize::MAX)
        .await
        .expect("read");
    assert_eq!(seqs_of_events(&from_middle), vec![5, 6, 7]);
    let past_gap = store
        .read_events(&room, 5, 1, usize::MAX)
        .await
        .expect("read");
    assert_eq!(seqs_of_events(&past_gap), vec![6]);

    let one = store.read_events(&room, 0, 10, 1).await.expect("read");
    assert_eq!(
        seqs_of_events(&one),
        vec![1],
        "at least one event, even over budget"
    );
    let budget = all[2].encoded_len() + all[3].encoded_len();
    let two = store.read_events(&room, 2, 10, budget).await.expect("read");
    assert_eq!(seqs_of_events(&two), vec![3, 4]);
    let short = store
        .read_events(&room, 2, 10, budget - 1)
        .await
        .expect("read");
    assert_eq!(seqs_of_events(&short), vec![3]);

    assert!(
        store
            .read_events(&room, 8, 10, usize::MAX)
            .await
            .expect("read")
            .is_empty()
    );
    assert!(
        store
            .read_events(&room, 80, 10, usize::MAX)
            .await
            .expect("read")
            .is_empty()
    );
    let unknown = room_id("g:nothing");
    assert!(
        store
            .read_events(&unknown, 0, 10, usize::MAX)
            .await
            .expect("read")
            .is_empty()
    );
}

/// History pages: `Latest` and `Before` newest first, `After` oldest first, with `has_more`
/// and the byte budget, across buckets and skipping non-message events.
pub async fn read_messages_pages_by_anchor(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut script = created_room(factory, &*store, "g:history", &alice).await;
    let room = script.room.clone();
    // Messages at seqs 3, 4, 6, 7, 9; a join at 5 and a rename at 8; buckets 0..=6.
    let batches = [
        script.send(at(factory, 0, 1), &alice, "m3", 0),
        script.send(at(factory, 1, 1), &alice, "m4", 0),
        script.join(at(factory, 1, 2), &bob, v1::Role::Member),
        script.send(at(factory, 4, 1), &bob, "m6", 0),
        script.send(at(factory, 4, 2), &alice, "m7", 0),
        script.rename(at(factory, 5, 0), &alice, "renamed"),
        script.send(at(factory, 6, 1), &bob, "m9", 0),
    ];
    for batch in &batches {
        apply(&*store, &room, batch).await;
    }

    let latest = store
        .read_messages(&room, history(HistoryAnchor::Latest, 10))
        .await
        .expect("read");
    assert_eq!(seqs_of_messages(&latest.messages), vec![9, 7, 6, 4, 3]);
    assert!(!latest.has_more);
    assert_eq!(latest.messages[0], script.messages[&9]);

    assert_eq!(
        page(&*store, &room, history(HistoryAnchor::Latest, 2)).await,
        (vec![9, 7], true)
    );
    let before = history(HistoryAnchor::Before(7), 2);
    assert_eq!(page(&*store, &room, before).await, (vec![6, 4], true));
    let before = history(HistoryAnchor::Before(4), 2);
    assert_eq!(page(&*store, &room, before).await, (vec![3], false));
    let before = history(HistoryAnchor::Before(3), 2);
    assert_eq!(page(&*store, &room, before).await, (vec![], false));
    let before = history(HistoryAnchor::Before(100), 1);
    assert_eq!(page(&*store, &room, before).await, (vec![9], true));
    let after = history(HistoryAnchor::After(0), 2);
    assert_eq!(page(&*store, &room, after).await, (vec![3, 4], true));
    let after = history(HistoryAnchor::After(4), 2);
    assert_eq!(page(&*store, &room, after).await, (vec![6, 7], true));
    let after = history(HistoryAnchor::After(5), 3);
    assert_eq!(page(&*store, &room, after).await, (vec![6, 7, 9], false));
    let after = history(HistoryAnchor::After(9), 3);
    assert_eq!(page(&*store, &room, after).await, (vec![], false));

    let tight = HistoryQuery {
        max_bytes: 1,
        ..history(HistoryAnchor::Latest, 10)
    };
    assert_eq!(page(&*store, &room, tight).await, (vec![9], true));
    let budget = script.messages[&9].encoded_len() + script.messages[&7].encoded_len();
    let fits_two = HistoryQuery {
        max_bytes: budget,
        ..history(HistoryAnchor::Latest, 10)
    };
    assert_eq!(page(&*store, &room, fits_two).await, (vec![9, 7], true));
    let unknown = room_id("g:nothing");
    assert_eq!(
        page(&*store, &unknown, history(HistoryAnchor::Latest, 5)).await,
        (vec![], false)
    );
}

/// `min_seq` hides older messages in every direction; a thread filter returns the thread's
/// replies (not its root).
pub async fn read_messages_min_seq_and_thread(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let alice = user("alice");
    let mut script = created_room(factory, &*store, "g:threads", &alice).await;
    let room = script.room.clone();
    // 3 root, 4 other root, 5 reply to 3, 6 reply to 4, 7 reply to 3, 8 plain, 9 reply to 3.
    let threads = [0, 0, 3, 4, 3, 0, 3];
    for (i, root) in threads.into_iter().enumerate() {
        let batch = script.send(at(factory, i as i64, 0), &alice, "m", root);
        apply(&*store, &room, &batch).await;
    }

    let visible = |anchor, limit| HistoryQuery {
        min_seq: 5,
        ..history(anchor, limit)
    };
    let latest = visible(HistoryAnchor::Latest, 10);
    assert_eq!(
        page(&*store, &room, latest).await,
        (vec![9, 8, 7, 6, 5], false)
    );
    let before = visible(HistoryAnchor::Before(7), 10);
    assert_eq!(page(&*store, &room, before).await, (vec![6, 5], false));
    let before = visible(HistoryAnchor::Before(6), 1);
    assert_eq!(page(&*store, &room, before).await, (vec![5], false));
    let after = visible(HistoryAnchor::After(0), 2);
    assert_eq!(page(&*store, &room, after).await, (vec![5, 6], true));
    let before = visible(HistoryAnchor::Before(5), 10);
    assert_eq!(page(&*store, &room, before).await, (vec![], false));

    let thread = |anchor, limit, min_seq| HistoryQuery {
        thread_root_seq: 3,
        min_seq,
        ..history(anchor, limit)
    };
    let all = thread(HistoryAnchor::Latest, 10, 0);
    assert_eq!(page(&*store, &room, all).await, (vec![9, 7, 5], false));
    let first = thread(HistoryAnchor::Latest, 1, 0);
    assert_eq!(page(&*store, &room, first).await, (vec![9], true));
    let older = thread(HistoryAnchor::Before(9), 1, 0);
    assert_eq!(page(&*store, &room, older).await, (vec![7], true));
    let oldest = thread(HistoryAnchor::Before(7), 1, 0);
    assert_eq!(page(&*store, &room, oldest).await, (vec![5], false));
    let newer = thread(HistoryAnchor::After(5), 1, 0);
    assert_eq!(page(&*store, &room, newer).await, (vec![7], true));
    let newest = thread(HistoryAnchor::After(7), 5, 0);
    assert_eq!(page(&*store, &room, newest).await, (vec![9], false));
    let hidden = thread(HistoryAnchor::Latest, 10, 6);
    assert_eq!(page(&*store, &room, hidden).await, (vec![9, 7], false));
    let other = HistoryQuery {
        thread_root_seq: 4,
        ..history(HistoryAnchor::Latest, 10)
    };
    assert_eq!(page(&*store, &room, other).await, (vec![6], false));
}

/// A redaction clears the content of the `MessageCreated` event and of every `MessageEdited`
/// event of the message (marking them redacted), tombstones the current state and keeps the
/// seqs; other messages and their edits are untouched.
pub async fn redaction_clears_content_everywhere(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut script = created_room(factory, &*store, "g:redact", &alice).await;
    let room = script.room.clone();
    let batches = [
        script.send(at(factory, 0, 1), &alice, "secret", 0), // 3
        script.send(at(factory, 0, 2), &bob, "other", 0),    // 4
        script.edit(at(factory, 1, 0), &alice, 3, "secret v2"), // 5
        script.edit(at(factory, 1, 1), &bob, 4, "other v2"), // 6
        script.react(at(factory, 2, 0), &bob, 3, "+1"),      // 7
        script.edit(at(factory, 3, 0), &alice, 3, "secret v3"), // 8
    ];
    for batch in &batches {
        apply(&*store, &room, batch).await;
    }
    let before = store
        .message(&room, 3)
        .await
        .expect("message")
        .expect("exists");
    assert_eq!(before.content, Some(text("secret v3")));
    assert_eq!(before.reactions.len(), 1);

    let delete = script.delete(at(factory, 5, 0), &alice, 3); // 9
    apply(&*store, &room, &delete).await;

    let events = all_events(&*store, &room).await;
    assert_eq!(seqs_of_events(&events), (1..=9).collect::<Vec<_>>());
    match &events[2].kind {
        Some(Kind::MessageCreated(created)) => {
            assert!(created.redacted);
            assert_eq!(created.content, None);
            assert_eq!(created.ordinal, 1);
            assert_eq!(created.client_msg_id, "c3");
        }
        other => panic!("seq 3 is not a MessageCreated: {other:?}"),
    }
    for seq in [5, 8] {
        match &events[seq - 1].kind {
            Some(Kind::MessageEdited(edit)) => {
                assert!(edit.redacted, "edit {seq}");
                assert_eq!(edit.content, None, "edit {seq}");
                assert_eq!(edit.target_seq, 3);
            }
            other => panic!("seq {seq} is not a MessageEdited: {other:?}"),
        }
    }
    match &events[5].kind {
        Some(Kind::MessageEdited(edit)) => {
            assert!(!edit.redacted);
            assert_eq!(edit.content, Some(text("other v2")));
        }
        other => panic!("seq 6 is not a MessageEdited: {other:?}"),
    }
    match &events[3].kind {
        Some(Kind::MessageCreated(created)) => assert_eq!(created.content, Some(text("other"))),
        other => panic!("seq 4 is not a MessageCreated: {other:?}"),
    }

    let tombstone = store
        .message(&room, 3)
        .await
        .expect("message")
        .expect("kept");
    assert!(tombstone.deleted);
    assert_eq!(tombstone.content, None);
    assert!(tombstone.reactions.is_empty());
    assert_eq!((tombstone.seq, tombstone.ordinal), (3, 1));
    let other = store
        .message(&room, 4)
        .await
        .expect("message")
        .expect("kept");
    assert_eq!(other.content, Some(text("other v2")));
    let latest = store
        .read_messages(&room, history(HistoryAnchor::Latest, 10))
        .await
        .expect("read");
    assert_eq!(seqs_of_messages(&latest.messages), vec![4, 3]);
    assert!(latest.messages[1].deleted && latest.messages[1].content.is_none());

    // Applying the same redaction again changes nothing.
    let mut again = script.clone();
    let repeat = again.delete(at(factory, 5, 1), &alice, 3);
    apply(&*store, &room, &repeat).await;
    assert_eq!(
        store.message(&room, 3).await.expect("message"),
        Some(tombstone)
    );
}

/// A dedupe entry answers until (not at) its expiry, only for its sender and id.
pub async fn dedupe_hits_until_expiry(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut script = created_room(factory, &*store, "g:dedupe", &alice).await;
    let room = script.room.clone();
    let sent_at = at(factory, 0, 50);
    let batch = script.send(sent_at, &alice, "once", 0);
    apply(&*store, &room, &batch).await;
    let expected = dedupe_entry(3, 1, sent_at, sent_at + 1000);

    let hit = store
        .dedupe(&room, &alice, "c3", sent_at)
        .await
        .expect("dedupe");
    assert_eq!(hit, Some(expected.clone()));
    let late = store
        .dedupe(&room, &alice, "c3", sent_at + 999)
        .await
        .expect("dedupe");
    assert_eq!(late, Some(expected));
    let expired = store
        .dedupe(&room, &alice, "c3", sent_at + 1000)
        .await
        .expect("dedupe");
    assert_eq!(expired, None);
    assert_eq!(
        store
            .dedupe(&room, &bob, "c3", sent_at)
            .await
            .expect("dedupe"),
        None
    );
    assert_eq!(
        store
            .dedupe(&room, &alice, "c4", sent_at)
            .await
            .expect("dedupe"),
        None
    );
    let elsewhere = room_id("g:dedupe2");
    assert_eq!(
        store
            .dedupe(&elsewhere, &alice, "c3", sent_at)
            .await
            .expect("dedupe"),
        None
    );

    // A replaced entry takes the new expiry.
    let renewed = dedupe_entry(3, 1, sent_at, sent_at + 5000);
    let mut refresh = script.rename(at(factory, 0, 60), &alice, "x");
    refresh.writes.push(Write::Dedupe {
        sender: alice.clone(),
        client_msg_id: "c3".to_owned(),
        entry: renewed.clone(),
    });
    apply(&*store, &room, &refresh).await;
    let hit = store
        .dedupe(&room, &alice, "c3", sent_at + 2000)
        .await
        .expect("dedupe");
    assert_eq!(hit, Some(renewed));
}

// ---------------------------------------------------------------------------------------------
// Behaviours: the directory

/// Members page in user id order; a removal drops the membership and the user's room state.
pub async fn members_page_and_removal(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob, carol, dave) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let mut script = created_room(factory, &*store, "g:members", &alice).await;
    let room = script.room.clone();
    for who in [&dave, &bob, &carol] {
        let batch = script.join(at(factory, 0, 1), who, v1::Role::Member);
        apply(&*store, &room, &batch).await;
    }
    let ids = |members: Vec<v1::Member>| -> Vec<String> {
        members.into_iter().map(|m| m.user_id).collect()
    };

    let first = store.members(&room, None, 2).await.expect("members");
    assert_eq!(ids(first), vec!["alice", "bob"]);
    let second = store.members(&room, Some(&bob), 2).await.expect("members");
    assert_eq!(ids(second), vec!["carol", "dave"]);
    let none = store.members(&room, Some(&dave), 2).await.expect("members");
    assert!(none.is_empty());
    assert!(
        store
            .members(&room_id("g:none"), None, 10)
            .await
            .expect("members")
            .is_empty()
    );

    assert!(
        store
            .user_room(&carol, &room)
            .await
            .expect("user room")
            .is_some()
    );
    let batch = script.leave(at(factory, 1, 0), &carol);
    apply(&*store, &room, &batch).await;
    let left = store.members(&room, None, 10).await.expect("members");
    assert_eq!(ids(left), vec!["alice", "bob", "dave"]);
    assert_eq!(store.member(&room, &carol).await.expect("member"), None);
    assert_eq!(
        store.user_room(&carol, &room).await.expect("user room"),
        None
    );
    assert!(
        store
            .user_rooms(&carol, None, 10)
            .await
            .expect("user rooms")
            .is_empty()
    );
    let snapshot = store.load_room(&room).await.expect("load").expect("exists");
    assert_eq!(snapshot.members.len(), 3);
    assert_eq!(
        store
            .advance_watermarks(&carol, &room, 9, None)
            .await
            .expect("advance"),
        None
    );
}

/// Moderation state lives in the membership and the log (issue 21): a moderator's role, a
/// member's restriction and the reason of a MemberRestricted event and of a MessageDeleted
/// come back from every read, and survive a reopen.
pub async fn moderation_state_is_stored(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let mut script = created_room(factory, &*store, "g:moderation", &alice).await;
    let room = script.room.clone();
    for who in [&bob, &carol] {
        let batch = script.join(at(factory, 0, 1), who, v1::Role::Member);
        apply(&*store, &room, &batch).await;
    }
    let bob_joined = store
        .member(&room, &bob)
        .await
        .expect("member")
        .expect("bob");
    let batch = script.set_role(
        at(factory, 0, 2),
        &bob,
        v1::Role::Moderator,
        bob_joined.joined_seq,
    );
    apply(&*store, &room, &batch).await;
    let mut carol_member = store
        .member(&room, &carol)
        .await
        .expect("member")
        .expect("carol");
    carol_member.restricted_until_ms = 1_900_000_000_000;
    let restricted = v1::MemberRestricted {
        user_id: carol.as_str().to_owned(),
        until_ms: carol_member.restricted_until_ms,
        reason: "flooding".into(),
    };
    let event = script.next(
        at(factory, 0, 3),
        &bob,
        Kind::MemberRestricted(restricted.clone()),
    );
    let batch = script.batch(vec![event], vec![Write::Member(carol_member.clone())]);
    apply(&*store, &room, &batch).await;
    let sent = script.send(at(factory, 0, 4), &carol, "spam", 0);
    let target_seq = script.head.seq;
    apply(&*store, &room, &sent).await;
    let mut deleted = script.delete(at(factory, 0, 5), &bob, target_seq);
    if let Some(Kind::MessageDeleted(d)) = deleted.events.get_mut(0).and_then(|e| e.kind.as_mut()) {
        d.reason = "spam".into();
    }
    apply(&*store, &room, &deleted).await;

    let check = |store: Arc<dyn Store>| {
        let (room, bob, carol, carol_member, restricted) = (
            room.clone(),
            bob.clone(),
            carol.clone(),
            carol_member.clone(),
            restricted.clone(),
        );
        async move {
            let bob_member = store
                .member(&room, &bob)
                .await
                .expect("member")
                .expect("bob");
            assert_eq!(bob_member.role(), v1::Role::Moderator);
            let bob_room = store
                .user_room(&bob, &room)
                .await
                .expect("user room")
                .expect("bob");
            assert_eq!(bob_room.role, v1::Role::Moderator);
            let carol_now = store.member(&room, &carol).await.expect("member");
            assert_eq!(carol_now, Some(carol_member.clone()));
            let snapshot = store.load_room(&room).await.expect("load").expect("exists");
            assert!(snapshot.members.contains(&carol_member));
            let events = all_events(&*store, &room).await;
            assert!(
                events
                    .iter()
                    .any(|e| e.kind == Some(Kind::MemberRestricted(restricted.clone())))
            );
            let reasons: Vec<String> = events
                .iter()
                .filter_map(|e| match &e.kind {
                    Some(Kind::MessageDeleted(d)) => Some(d.reason.clone()),
                    _ => None,
                })
                .collect();
            assert_eq!(reasons, vec!["spam".to_owned()]);
        }
    };
    check(Arc::clone(&store)).await;
    drop(store);
    check(factory.open().await).await;
}

/// A user's rooms page in room id order; a new member's watermarks start just before its join
/// (with the ordinal there), and a role change keeps them.
pub async fn user_rooms_page_and_initial_watermarks(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    for name in ["g:r3", "g:r1", "g:r2"] {
        created_room(factory, &*store, name, &alice).await;
    }
    let mut script = RoomScript::new(&room_id("g:r2b"));
    let batch = merge([
        script.create(at(factory, 0, 0), &bob),
        script.send(at(factory, 0, 1), &bob, "one", 0),
        script.send(at(factory, 1, 1), &bob, "two", 0),
        script.rename(at(factory, 1, 2), &bob, "x"),
        script.join(at(factory, 2, 0), &alice, v1::Role::Member), // seq 6
    ]);
    apply(&*store, &script.room, &batch).await;

    let rooms = |list: Vec<UserRoom>| -> Vec<String> {
        list.into_iter()
            .map(|r| r.room_id.as_str().to_owned())
            .collect()
    };
    let first = store.user_rooms(&alice, None, 2).await.expect("user rooms");
    assert_eq!(rooms(first), vec!["g:r1", "g:r2"]);
    let next = store
        .user_rooms(&alice, Some(&room_id("g:r2")), 2)
        .await
        .expect("user rooms");
    assert_eq!(rooms(next), vec!["g:r2b", "g:r3"]);
    let last = store
        .user_rooms(&alice, Some(&room_id("g:r3")), 2)
        .await
        .expect("user rooms");
    assert!(last.is_empty());
    let bobs = store.user_rooms(&bob, None, 10).await.expect("user rooms");
    assert_eq!(rooms(bobs), vec!["g:r2b"]);

    let owner = store
        .user_room(&alice, &room_id("g:r1"))
        .await
        .expect("user room");
    let owner = owner.expect("member");
    assert_eq!((owner.role, owner.joined_seq), (v1::Role::Owner, 2));
    assert_eq!(
        (owner.read_seq, owner.delivered_seq, owner.read_ordinal),
        (1, 1, 0)
    );
    assert_eq!(owner.muted_until_ms, 0);

    let joined = store
        .user_room(&alice, &script.room)
        .await
        .expect("user room");
    let joined = joined.expect("member");
    assert_eq!(
        joined,
        UserRoom {
            room_id: script.room.clone(),
            role: v1::Role::Member,
            joined_seq: 6,
            read_seq: 5,
            read_ordinal: 2,
            delivered_seq: 5,
            muted_until_ms: 0,
        }
    );

    store
        .advance_watermarks(&alice, &script.room, 0, Some((6, 2)))
        .await
        .expect("advance");
    let promote = script.set_role(at(factory, 2, 1), &alice, v1::Role::Admin, 6);
    apply(&*store, &script.room, &promote).await;
    let promoted = store
        .user_room(&alice, &script.room)
        .await
        .expect("user room");
    let promoted = promoted.expect("member");
    assert_eq!(promoted.role, v1::Role::Admin);
    assert_eq!(
        (
            promoted.joined_seq,
            promoted.read_seq,
            promoted.delivered_seq
        ),
        (6, 6, 6)
    );
}

/// Watermarks only move forward, field by field; reading moves delivery; sending moves the
/// sender's read watermark; non-members get `None`.
pub async fn watermarks_only_move_forward(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut script = created_room(factory, &*store, "g:marks", &alice).await;
    let room = script.room.clone();
    let batch = merge([
        script.join(at(factory, 0, 1), &bob, v1::Role::Member), // 3
        script.send(at(factory, 0, 2), &alice, "a", 0),         // 4, ordinal 1
        script.send(at(factory, 0, 3), &alice, "b", 0),         // 5, ordinal 2
        script.send(at(factory, 0, 4), &alice, "c", 0),         // 6, ordinal 3
    ]);
    apply(&*store, &room, &batch).await;

    let sender = store
        .user_room(&alice, &room)
        .await
        .expect("user room")
        .expect("member");
    assert_eq!(
        (sender.read_seq, sender.read_ordinal, sender.delivered_seq),
        (6, 3, 6)
    );

    let marks = |r: Option<UserRoom>| {
        let r = r.expect("member");
        (r.delivered_seq, r.read_seq, r.read_ordinal)
    };
    let advance = |delivered, read| {
        let store = Arc::clone(&store);
        let (bob, room) = (bob.clone(), room.clone());
        async move {
            store
                .advance_watermarks(&bob, &room, delivered, read)
                .await
                .expect("advance")
        }
    };
    assert_eq!(marks(advance(5, None).await), (5, 2, 0));
    assert_eq!(marks(advance(4, None).await), (5, 2, 0));
    assert_eq!(marks(advance(0, Some((6, 3))).await), (6, 6, 3));
    assert_eq!(marks(advance(6, Some((4, 1))).await), (6, 6, 3));
    assert_eq!(
        marks(store.user_room(&bob, &room).await.expect("user room")),
        (6, 6, 3)
    );
    let stranger = store
        .advance_watermarks(&user("eve"), &room, 6, Some((6, 3)))
        .await
        .expect("advance");
    assert_eq!(stranger, None);
    assert_eq!(
        store
            .user_room(&user("eve"), &room)
            .await
            .expect("user room"),
        None
    );
}

/// `ordinal_at` gives the ordinal of the newest message at or below a seq, whatever the events
/// in between, across buckets.
pub async fn ordinal_at_skips_other_events(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut script = created_room(factory, &*store, "g:ordinals", &alice).await;
    let room = script.room.clone();
    let batches = [
        script.send(at(factory, 0, 1), &alice, "o1", 0), // 3
        script.join(at(factory, 0, 2), &bob, v1::Role::Member), // 4
        script.send(at(factory, 2, 0), &bob, "o2", 0),   // 5
        script.rename(at(factory, 2, 1), &alice, "r"),   // 6
        script.react(at(factory, 7, 0), &bob, 5, "x"),   // 7
        script.send(at(factory, 8, 0), &alice, "o3", 0), // 8
        script.rename(at(factory, 9, 0), &alice, "s"),   // 9
    ];
    for batch in &batches {
        apply(&*store, &room, batch).await;
    }
    let expected = [
        (0, 0),
        (1, 0),
        (2, 0),
        (3, 1),
        (4, 1),
        (5, 2),
        (6, 2),
        (7, 2),
        (8, 3),
    ];
    for (seq, ordinal) in expected {
        assert_eq!(
            store.ordinal_at(&room, seq).await.expect("ordinal"),
            ordinal,
            "seq {seq}"
        );
    }
    assert_eq!(store.ordinal_at(&room, 9).await.expect("ordinal"), 3);
    assert_eq!(store.ordinal_at(&room, u64::MAX).await.expect("ordinal"), 3);
    assert_eq!(
        store
            .ordinal_at(&room_id("g:none"), 5)
            .await
            .expect("ordinal"),
        0
    );
}

/// The push mute of a room is stored, replaced and kept by watermark moves.
pub async fn mute_is_stored(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let alice = user("alice");
    let script = created_room(factory, &*store, "g:mute", &alice).await;
    let room = script.room.clone();
    let until = at(factory, 10, 0);

    let muted = store
        .set_mute(&alice, &room, until)
        .await
        .expect("mute")
        .expect("member");
    assert_eq!(muted.muted_until_ms, until);
    store
        .advance_watermarks(&alice, &room, 2, Some((2, 0)))
        .await
        .expect("advance");
    let state = store
        .user_room(&alice, &room)
        .await
        .expect("user room")
        .expect("member");
    assert_eq!(state.muted_until_ms, until);
    assert_eq!(state.read_seq, 2);
    let unmuted = store
        .set_mute(&alice, &room, 0)
        .await
        .expect("mute")
        .expect("member");
    assert_eq!(unmuted.muted_until_ms, 0);
    assert_eq!(unmuted.read_seq, 2);
    assert_eq!(
        store
            .set_mute(&user("eve"), &room, until)
            .await
            .expect("mute"),
        None
    );
    assert_eq!(
        store
            .user_room(&user("eve"), &room)
            .await
            .expect("user room"),
        None
    );
}

// ---------------------------------------------------------------------------------------------
// Behaviours: accounts

/// Blocks are per direction, idempotent, listed in id order and seen by `either_blocked` from
/// both sides.
pub async fn blocks_are_symmetric_and_idempotent(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    store.block(&alice, &carol).await.expect("block");
    store.block(&alice, &bob).await.expect("block");
    store.block(&alice, &bob).await.expect("block again");
    assert_eq!(
        store.blocked(&alice).await.expect("blocked"),
        vec![bob.clone(), carol.clone()]
    );
    assert!(store.blocked(&bob).await.expect("blocked").is_empty());
    assert!(store.either_blocked(&alice, &bob).await.expect("either"));
    assert!(store.either_blocked(&bob, &alice).await.expect("either"));
    assert!(!store.either_blocked(&bob, &carol).await.expect("either"));

    store.unblock(&alice, &bob).await.expect("unblock");
    store.unblock(&alice, &bob).await.expect("unblock again");
    store
        .unblock(&bob, &alice)
        .await
        .expect("unblock of nothing");
    assert!(!store.either_blocked(&alice, &bob).await.expect("either"));
    assert!(!store.either_blocked(&bob, &alice).await.expect("either"));
    assert_eq!(
        store.blocked(&alice).await.expect("blocked"),
        vec![carol.clone()]
    );
    store.block(&carol, &alice).await.expect("block back");
    assert!(store.either_blocked(&alice, &carol).await.expect("either"));
    store.unblock(&alice, &carol).await.expect("unblock");
    assert!(
        store.either_blocked(&alice, &carol).await.expect("either"),
        "carol still blocks"
    );
}

fn token(platform: v1::PushPlatform, token: &str, device_id: &str) -> PushToken {
    PushToken {
        platform,
        token: token.to_owned(),
        device_id: device_id.to_owned(),
    }
}

/// Push tokens are listed per user; registering a token another user holds moves it;
/// unregistering is idempotent and never touches another user's token.
pub async fn push_tokens_move_between_users(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let t1 = token(v1::PushPlatform::Apns, "t1", "phone");
    let t2 = token(v1::PushPlatform::Fcm, "t2", "tablet");
    store
        .register_push_token(&alice, t2.clone())
        .await
        .expect("register");
    store
        .register_push_token(&alice, t1.clone())
        .await
        .expect("register");
    store
        .register_push_token(&alice, t1.clone())
        .await
        .expect("register again");
    let tokens = store.push_tokens(&alice).await.expect("tokens");
    assert_eq!(tokens, vec![t1.clone(), t2.clone()]);

    let moved = token(v1::PushPlatform::Apns, "t1", "bobs-phone");
    store
        .register_push_token(&bob, moved.clone())
        .await
        .expect("register");
    assert_eq!(
        store.push_tokens(&alice).await.expect("tokens"),
        vec![t2.clone()]
    );
    assert_eq!(
        store.push_tokens(&bob).await.expect("tokens"),
        vec![moved.clone()]
    );

    store
        .unregister_push_token(&alice, "t1")
        .await
        .expect("unregister");
    assert_eq!(store.push_tokens(&bob).await.expect("tokens"), vec![moved]);
    // Bob still owns it: a move takes it from him.
    let carol = user("carol");
    let carols = token(v1::PushPlatform::Apns, "t1", "carols-phone");
    store
        .register_push_token(&carol, carols.clone())
        .await
        .expect("register");
    assert!(store.push_tokens(&bob).await.expect("tokens").is_empty());
    assert_eq!(
        store.push_tokens(&carol).await.expect("tokens"),
        vec![carols]
    );
    store
        .unregister_push_token(&carol, "t1")
        .await
        .expect("unregister");
    store
        .unregister_push_token(&carol, "t1")
        .await
        .expect("unregister again");
    assert!(store.push_tokens(&carol).await.expect("tokens").is_empty());

    let renamed = token(v1::PushPlatform::Fcm, "t2", "new-tablet");
    store
        .register_push_token(&alice, renamed.clone())
        .await
        .expect("register");
    assert_eq!(
        store.push_tokens(&alice).await.expect("tokens"),
        vec![renamed]
    );
    store
        .register_push_token(&bob, t1.clone())
        .await
        .expect("register freed token");
    assert_eq!(store.push_tokens(&bob).await.expect("tokens"), vec![t1]);
}

/// Token revocations are per user, only move forward, and survive a reopen.
pub async fn token_revocations_only_move_forward(factory: &dyn StoreFactory) {
    let (alice, bob) = (user("alice"), user("bob"));
    {
        let store = factory.open().await;
        assert_eq!(
            store.tokens_revoked_before(&alice).await.expect("read"),
            None
        );
        store
            .revoke_tokens_before(&alice, 5_000)
            .await
            .expect("revoke");
        assert_eq!(
            store.tokens_revoked_before(&alice).await.expect("read"),
            Some(5_000)
        );
        store
            .revoke_tokens_before(&alice, 3_000)
            .await
            .expect("revoke earlier");
        assert_eq!(
            store.tokens_revoked_before(&alice).await.expect("read"),
            Some(5_000),
            "an earlier time does not lower the recorded one"
        );
        store
            .revoke_tokens_before(&alice, 9_000)
            .await
            .expect("revoke later");
        assert_eq!(store.tokens_revoked_before(&bob).await.expect("read"), None);
    }
    let store = factory.open().await;
    assert_eq!(
        store.tokens_revoked_before(&alice).await.expect("read"),
        Some(9_000),
        "durable across a reopen"
    );
}

// ---------------------------------------------------------------------------------------------
// Behaviours: durability and concurrency

/// Everything written is still there after the store is dropped and opened again.
pub async fn durable_across_reopen(factory: &dyn StoreFactory) {
    let (alice, bob) = (user("alice"), user("bob"));
    let room = room_id("g:durable");
    let mut script = RoomScript::new(&room);
    let batch = merge([
        script.create(at(factory, 0, 0), &alice),
        script.join(at(factory, 0, 1), &bob, v1::Role::Member),
        script.send(at(factory, 0, 2), &alice, "before", 0),
        script.send(at(factory, 3, 0), &bob, "after", 0),
        script.edit(at(factory, 4, 0), &bob, 5, "after, edited"),
    ]);
    let until = at(factory, 9, 0);
    let (events, user_room) = {
        let store = factory.open().await;
        apply(&*store, &room, &batch).await;
        store.set_mute(&bob, &room, until).await.expect("mute");
        store
            .advance_watermarks(&bob, &room, 5, Some((4, 1)))
            .await
            .expect("advance");
        store.block(&alice, &bob).await.expect("block");
        let t = token(v1::PushPlatform::WebPush, "w1", "browser");
        store.register_push_token(&bob, t).await.expect("register");
        let events = all_events(&*store, &room).await;
        let user_room = store.user_room(&bob, &room).await.expect("user room");
        (events, user_room)
    };

    let store = factory.open().await;
    let snapshot = store.load_room(&room).await.expect("load").expect("exists");
    assert_eq!(snapshot.head, batch.head);
    assert_eq!(snapshot.room, script.settings);
    assert_eq!(snapshot.members.len(), 2);
    assert_eq!(all_events(&*store, &room).await, events);
    assert_eq!(seqs_of_events(&events), (1..=6).collect::<Vec<_>>());
    let latest = store
        .read_messages(&room, history(HistoryAnchor::Latest, 10))
        .await
        .expect("read");
    assert_eq!(
        latest.messages,
        vec![script.messages[&5].clone(), script.messages[&4].clone()]
    );
    assert_eq!(
        store.user_room(&bob, &room).await.expect("user room"),
        user_room
    );
    let user_room = user_room.expect("member");
    // Sending message 5 moved bob's read watermark past the explicit (4, 1).
    assert_eq!((user_room.muted_until_ms, user_room.read_seq), (until, 5));
    assert_eq!(store.ordinal_at(&room, 6).await.expect("ordinal"), 2);
    let hit = store
        .dedupe(&room, &alice, "c4", at(factory, 0, 2))
        .await
        .expect("dedupe");
    assert_eq!(hit.map(|e| e.seq), Some(4));
    assert!(store.either_blocked(&bob, &alice).await.expect("either"));
    assert_eq!(store.push_tokens(&bob).await.expect("tokens").len(), 1);

    // The log goes on where it stopped.
    let next = script.send(at(factory, 5, 0), &alice, "again", 0);
    apply(&*store, &room, &next).await;
    assert_eq!(
        store.head(&room).await.expect("head").map(|h| h.seq),
        Some(7)
    );
}

/// Two writers appending to one room with the same expected seq: exactly one applies, the
/// other is fenced with the winner's head, and only the winner's event is in the log.
pub async fn concurrent_appends_apply_once(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut script = created_room(factory, &*store, "g:race", &alice).await;
    let room = script.room.clone();
    for round in 0..20 {
        let expected = script.head.seq;
        let mut other = script.clone();
        let ours = script.send(at(factory, 1, round), &alice, "alice's", 0);
        let theirs = other.send(at(factory, 1, round), &bob, "bob's", 0);
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let tasks = [ours.clone(), theirs.clone()].map(|batch| {
            let (store, room, barrier) = (Arc::clone(&store), room.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                store.append(&room, expected, &batch).await.expect("append")
            })
        });
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.expect("task"));
        }
        let applied = outcomes
            .iter()
            .filter(|o| **o == AppendOutcome::Applied)
            .count();
        assert_eq!(applied, 1, "round {round}: {outcomes:?}");
        let winner = if outcomes[0] == AppendOutcome::Applied {
            ours
        } else {
            script = other;
            theirs
        };
        let fenced = AppendOutcome::Fenced {
            current: winner.head,
        };
        assert!(outcomes.contains(&fenced), "round {round}: {outcomes:?}");
        let logged = store
            .read_events(&room, expected, 10, usize::MAX)
            .await
            .expect("read");
        assert_eq!(logged, winner.events, "round {round}");
    }
    assert_eq!(
        store.head(&room).await.expect("head").map(|h| h.seq),
        Some(22)
    );
}

// ---------------------------------------------------------------------------------------------
// Behaviours: retention

fn retention(dropped_buckets: u64, first_retained_seq: u64) -> RetentionOutcome {
    RetentionOutcome {
        dropped_buckets,
        first_retained_seq,
    }
}

async fn cut(store: &dyn Store, room: &RoomId, keep_from_ms: i64) -> RetentionOutcome {
    store
        .apply_retention(room, keep_from_ms)
        .await
        .expect("apply retention")
}

/// A room spread over buckets 0, 1, 3, 5 and 7 (the head's), applied:
///
/// | seq | bucket | event |
/// | --- | --- | --- |
/// | 1, 2 | 0 | created, alice joined |
/// | 3 | 0 | m3 (ordinal 1) |
/// | 4 | 1 | m4 (ordinal 2) |
/// | 5 | 1 | edit of 3 |
/// | 6 | 3 | m6 (ordinal 3) |
/// | 7 | 5 (its very start) | edit of 6 |
/// | 8 | 5 | m8 (ordinal 4) |
/// | 9 | 7 | m9 (ordinal 5) |
async fn spread_room(
    factory: &dyn StoreFactory,
    store: &dyn Store,
    room: &str,
    alice: &UserId,
) -> RoomScript {
    let mut script = created_room(factory, store, room, alice).await;
    let batches = [
        script.send(at(factory, 0, 1), alice, "m3", 0),
        script.send(at(factory, 1, 0), alice, "m4", 0),
        script.edit(at(factory, 1, 1), alice, 3, "m3 v2"),
        script.send(at(factory, 3, 0), alice, "m6", 0),
        script.edit(at(factory, 5, 0), alice, 6, "m6 v2"),
        script.send(at(factory, 5, 1), alice, "m8", 0),
        script.send(at(factory, 7, 0), alice, "m9", 0),
    ];
    for batch in &batches {
        apply(store, &script.room, batch).await;
    }
    script
}

/// A cut drops exactly the whole buckets that end at or before it (bucket 3 ends where
/// bucket 4 starts), with their events, messages and index rows; a bucket holding an event at
/// the cut time is kept whole, and other rooms are untouched.
pub async fn retention_drops_whole_old_buckets_only(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let alice = user("alice");
    let script = spread_room(factory, &*store, "g:retain", &alice).await;
    let room = script.room.clone();
    // A neighbour whose id sorts right after, with events in the dropped time range.
    let mut neighbour = RoomScript::new(&room_id("g:retain0"));
    let batch = neighbour.create(at(factory, 0, 5), &alice);
    apply(&*store, &neighbour.room, &batch).await;
    let batch = neighbour.send(at(factory, 9, 0), &alice, "n", 0);
    apply(&*store, &neighbour.room, &batch).await;
    let head = store.head(&room).await.expect("head");

    assert_eq!(store.retained_from(&room).await.expect("retained"), 1);
    assert_eq!(
        cut(&*store, &room, at(factory, 5, 0)).await,
        retention(3, 7)
    );
    assert_eq!(store.retained_from(&room).await.expect("retained"), 7);
    assert_eq!(
        store.head(&room).await.expect("head"),
        head,
        "the head stays"
    );
    assert_eq!(
        seqs_of_events(&all_events(&*store, &room).await),
        vec![7, 8, 9]
    );
    let latest = store
        .read_messages(&room, history(HistoryAnchor::Latest, 10))
        .await
        .expect("read");
    assert_eq!(
        latest.messages,
        vec![script.messages[&9].clone(), script.messages[&8].clone()]
    );
    assert!(!latest.has_more);
    for seq in [3, 4, 6] {
        assert_eq!(store.message(&room, seq).await.expect("message"), None);
    }
    assert_eq!(
        store.message(&room, 8).await.expect("message"),
        Some(script.messages[&8].clone())
    );
    let snapshot = store.load_room(&room).await.expect("load").expect("exists");
    assert_eq!((snapshot.head, snapshot.members.len()), (script.head, 1));

    assert_eq!(
        seqs_of_events(&all_events(&*store, &neighbour.room).await),
        vec![1, 2, 3]
    );
    assert_eq!(
        store
            .retained_from(&neighbour.room)
            .await
            .expect("retained"),
        1
    );
}

/// The bucket holding the head is never dropped, however late the cut; a room that lives in
/// one bucket keeps everything. A room that does not exist is left alone.
pub async fn retention_keeps_the_head_bucket(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let alice = user("alice");
    let mut script = created_room(factory, &*store, "g:headbucket", &alice).await;
    let room = script.room.clone();
    let batch = script.send(at(factory, 0, 1), &alice, "m3", 0);
    apply(&*store, &room, &batch).await;
    let far = at(factory, 1_000, 0);

    assert_eq!(cut(&*store, &room, far).await, retention(0, 1));
    assert_eq!(
        seqs_of_events(&all_events(&*store, &room).await),
        vec![1, 2, 3]
    );
    assert_eq!(store.retained_from(&room).await.expect("retained"), 1);

    let later = merge([
        script.send(at(factory, 2, 0), &alice, "m4", 0),
        script.rename(at(factory, 2, 1), &alice, "later"),
    ]);
    apply(&*store, &room, &later).await;
    assert_eq!(cut(&*store, &room, far).await, retention(1, 4));
    assert_eq!(
        seqs_of_events(&all_events(&*store, &room).await),
        vec![4, 5]
    );
    assert_eq!(
        page(&*store, &room, history(HistoryAnchor::Latest, 10)).await,
        (vec![4], false)
    );

    let unknown = room_id("g:nothing");
    assert_eq!(cut(&*store, &unknown, far).await, retention(0, 1));
    assert_eq!(store.retained_from(&unknown).await.expect("retained"), 1);
    assert_eq!(store.head(&unknown).await.expect("head"), None);
}

/// The retained seq only moves forward: repeating a cut, or cutting earlier, changes nothing;
/// a later cut drops more.
pub async fn retention_is_idempotent_and_monotonic(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let alice = user("alice");
    let script = spread_room(factory, &*store, "g:monotonic", &alice).await;
    let room = script.room.clone();

    // Bucket 3 reaches the cut: kept whole.
    assert_eq!(
        cut(&*store, &room, at(factory, 3, 999)).await,
        retention(2, 6)
    );
    let events = all_events(&*store, &room).await;
    assert_eq!(seqs_of_events(&events), vec![6, 7, 8, 9]);
    assert_eq!(
        cut(&*store, &room, at(factory, 3, 999)).await,
        retention(0, 6)
    );
    assert_eq!(
        cut(&*store, &room, at(factory, 1, 0)).await,
        retention(0, 6)
    );
    assert_eq!(cut(&*store, &room, i64::MIN).await, retention(0, 6));
    assert_eq!(store.retained_from(&room).await.expect("retained"), 6);
    assert_eq!(all_events(&*store, &room).await, events);

    assert_eq!(
        cut(&*store, &room, at(factory, 6, 0)).await,
        retention(2, 9)
    );
    assert_eq!(seqs_of_events(&all_events(&*store, &room).await), vec![9]);
    assert_eq!(
        cut(&*store, &room, at(factory, 2, 0)).await,
        retention(0, 9)
    );
    assert_eq!(store.retained_from(&room).await.expect("retained"), 9);
}

/// A cut is durable: after a reopen the reads still start at the retained seq, the cut is
/// not undone by a repeat, and the log goes on; a member joining later starts with the
/// dropped messages counted (its read ordinal is the head's).
pub async fn retention_survives_reopen(factory: &dyn StoreFactory) {
    let alice = user("alice");
    let (mut script, events) = {
        let store = factory.open().await;
        let script = spread_room(factory, &*store, "g:retained", &alice).await;
        assert_eq!(
            cut(&*store, &script.room, at(factory, 5, 0)).await,
            retention(3, 7)
        );
        let events = all_events(&*store, &script.room).await;
        (script, events)
    };
    let room = script.room.clone();

    let store = factory.open().await;
    assert_eq!(store.retained_from(&room).await.expect("retained"), 7);
    assert_eq!(all_events(&*store, &room).await, events);
    assert_eq!(seqs_of_events(&events), vec![7, 8, 9]);
    assert_eq!(store.message(&room, 6).await.expect("message"), None);
    assert_eq!(
        cut(&*store, &room, at(factory, 5, 0)).await,
        retention(0, 7)
    );

    let bob = user("bob");
    let join = script.join(at(factory, 8, 0), &bob, v1::Role::Member);
    apply(&*store, &room, &join).await;
    let joined = store
        .user_room(&bob, &room)
        .await
        .expect("user room")
        .expect("member");
    assert_eq!((joined.read_seq, joined.read_ordinal), (9, 5));
    assert_eq!(
        seqs_of_events(&all_events(&*store, &room).await),
        vec![7, 8, 9, 10]
    );
    assert_eq!(
        store.head(&room).await.expect("head").map(|h| h.seq),
        Some(10)
    );
}

/// Every read starts at the retained seq whatever it asks for: events, history in each
/// direction (a `before` page reaching it has no more), single messages; ordinals still count
/// the dropped messages. Writes racing the cut that target dropped messages are skipped,
/// except that a redaction still clears the message's kept edits.
pub async fn reads_start_at_the_retained_seq(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let alice = user("alice");
    let mut script = spread_room(factory, &*store, "g:reads", &alice).await;
    let room = script.room.clone();
    assert_eq!(
        cut(&*store, &room, at(factory, 4, 0)).await,
        retention(3, 7)
    );

    for after in [0, 1, 5, 6] {
        let events = store
            .read_events(&room, after, 2, usize::MAX)
            .await
            .expect("read");
        assert_eq!(seqs_of_events(&events), vec![7, 8], "after {after}");
    }
    let events = store
        .read_events(&room, 7, 10, usize::MAX)
        .await
        .expect("read");
    assert_eq!(seqs_of_events(&events), vec![8, 9]);

    for min_seq in [0, 1, 4, 7] {
        let query = |anchor, limit| HistoryQuery {
            min_seq,
            ..history(anchor, limit)
        };
        let latest = query(HistoryAnchor::Latest, 10);
        assert_eq!(page(&*store, &room, latest).await, (vec![9, 8], false));
        let before = query(HistoryAnchor::Before(9), 10);
        assert_eq!(page(&*store, &room, before).await, (vec![8], false));
        let before = query(HistoryAnchor::Before(8), 10);
        assert_eq!(page(&*store, &room, before).await, (vec![], false));
        let after = query(HistoryAnchor::After(0), 1);
        assert_eq!(page(&*store, &room, after).await, (vec![8], true));
        let after = query(HistoryAnchor::After(3), 10);
        assert_eq!(page(&*store, &room, after).await, (vec![8, 9], false));
    }
    for seq in 0..7 {
        assert_eq!(store.message(&room, seq).await.expect("message"), None);
    }
    // Ordinals: the newest dropped message (m6) is 3; below the cut it answers that too.
    let ordinals = [(1, 3), (6, 3), (7, 3), (8, 4), (9, 5), (u64::MAX, 5)];
    for (seq, ordinal) in ordinals {
        assert_eq!(
            store.ordinal_at(&room, seq).await.expect("ordinal"),
            ordinal,
            "seq {seq}"
        );
    }

    // A writer that read messages 4 and 6 just before the cut.
    let late = merge([
        script.react(at(factory, 7, 1), &alice, 4, "+1"), // 10
        script.edit(at(factory, 7, 2), &alice, 4, "m4 v2"), // 11
        script.delete(at(factory, 7, 3), &alice, 6),      // 12
    ]);
    apply(&*store, &room, &late).await;
    let events = all_events(&*store, &room).await;
    assert_eq!(seqs_of_events(&events), vec![7, 8, 9, 10, 11, 12]);
    match &events[0].kind {
        Some(Kind::MessageEdited(edit)) => {
            assert_eq!(edit.target_seq, 6);
            assert!(
                edit.redacted,
                "the kept edit of a dropped message is cleared"
            );
            assert_eq!(edit.content, None);
        }
        other => panic!("seq 7 is not a MessageEdited: {other:?}"),
    }
    assert_eq!(store.message(&room, 4).await.expect("message"), None);
    assert_eq!(store.message(&room, 6).await.expect("message"), None);
    assert_eq!(
        page(&*store, &room, history(HistoryAnchor::Latest, 10)).await,
        (vec![9, 8], false)
    );
}

/// Reactions are rows per user (issue 15 M7): recorded and forgotten by `Write::Reaction`,
/// read back per user over a seq range, in seq then emoji order.
pub async fn reactions_are_rows_read_by_range(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let room = room_id("g:reactions");
    let (alice, bob) = (user("alice"), user("bob"));
    let reaction = |who: &UserId, target_seq: u64, emoji: &str, added: bool| Write::Reaction {
        user: who.clone(),
        target_seq,
        emoji: emoji.to_owned(),
        added,
    };
    let mut script = RoomScript::new(&room);
    apply(&*store, &room, &script.create(at(factory, 0, 0), &alice)).await;
    let first = script.send(at(factory, 0, 1), &alice, "one", 0);
    let target = first.head.seq;
    apply(&*store, &room, &first).await;
    let mut second = script.send(at(factory, 0, 2), &alice, "two", 0);
    let other = second.head.seq;
    second.writes.extend([
        reaction(&bob, target, "👍", true),
        reaction(&bob, target, "🎉", true),
        reaction(&alice, target, "👍", true),
    ]);
    apply(&*store, &room, &second).await;
    let mut third = script.send(at(factory, 0, 3), &alice, "three", 0);
    third.writes.extend([
        reaction(&bob, other, "👍", true),
        reaction(&bob, target, "🎉", false),
    ]);
    apply(&*store, &room, &third).await;

    let of = |who: &UserId, from: u64, to: u64| {
        let (store, room, who) = (Arc::clone(&store), room.clone(), who.clone());
        async move {
            store
                .reactions_of(&room, &who, from, to)
                .await
                .expect("read")
        }
    };
    assert_eq!(
        of(&bob, 1, 100).await,
        vec![(target, "👍".to_owned()), (other, "👍".to_owned())]
    );
    assert_eq!(of(&bob, other, other).await, vec![(other, "👍".to_owned())]);
    assert_eq!(of(&alice, 1, 100).await, vec![(target, "👍".to_owned())]);
    assert!(of(&bob, other + 1, 100).await.is_empty());
    assert!(of(&bob, other, target).await.is_empty(), "an empty range");
}
