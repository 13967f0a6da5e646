//! The room writer (docs/architecture.md "Room writers"): for one room at a time, takes a batch of
//! commands, applies them to the room's state (authorize, dedupe, assign seqs and a timestamp that
//! never goes backwards), appends the batch with one fenced write ([`RoomWriter::apply`]), then
//! publishes the side effects ([`RoomWriter::publish`]). The caller (a pipeline shard) guarantees
//! one writer per room; the embedded pipeline answers between the two halves, the others after both
//! ([`RoomWriter::execute`]).
//!
//! ```text
//!  append (the log: the truth; outbox mark) ──▶ fan-out (live sessions) ──▶ downstream events
//! ```
//!
//! Downstream events (docs/architecture.md "Downstream events") are published after the fan-out
//! through the [`outbox`]: the append marks the room, so events that were not queued (the queue
//! down, an append whose outcome was unknown, a process that died between the append and the
//! queue write) are read back from the log and published later. Never lost; at least once.

pub mod downstream;
pub mod draft;
pub mod outbox;

use std::collections::HashMap;
use std::sync::Arc;

use self::draft::{Draft, RoomState, WriterConfig};
use self::outbox::Outbox;
use crate::backend::events::EventPublisher;
use crate::backend::fanout::Fanout;
use crate::backend::pipeline::{Answer, RoomExecutor};
use crate::backend::store::{AppendOutcome, Store};
use crate::chat::command::{Outcome, RoomCommand};
use crate::chat::error::ChatError;
use crate::chat::ids::RoomId;
use crate::clock::Clock;

/// How many times a fenced batch is rebuilt on fresh state before giving up.
const FENCE_RETRIES: usize = 3;

/// Most rooms whose state a writer keeps in memory.
const CACHED_ROOMS: usize = 10_000;

/// A durable batch whose events are still to be published.
#[derive(Debug)]
pub struct Applied {
    room: RoomId,
    events: Vec<chatwire_protocol::v1::RoomEvent>,
    audience: crate::backend::fanout::Audience,
    user_events: Vec<(crate::chat::ids::UserId, chatwire_protocol::v1::Event)>,
}

/// A writer for the rooms of one shard.
#[derive(Debug)]
pub struct RoomWriter {
    store: Arc<dyn Store>,
    fanout: Arc<dyn Fanout>,
    clock: Arc<dyn Clock>,
    config: WriterConfig,
    cache: RoomCache,
    outbox: Option<Outbox>,
    shard: (usize, usize),
    rooms: crate::telemetry::RoomsSlot,
}

impl RoomWriter {
    /// A writer with an empty cache.
    pub fn new(
        store: Arc<dyn Store>,
        fanout: Arc<dyn Fanout>,
        clock: Arc<dyn Clock>,
        config: WriterConfig,
    ) -> Self {
        Self {
            store,
            fanout,
            clock,
            config,
            cache: RoomCache::new(CACHED_ROOMS),
            outbox: None,
            shard: (0, 1),
            rooms: crate::telemetry::RoomsSlot::default(),
        }
    }

    /// The writer as a pipeline takes it.
    pub fn boxed(self) -> Box<dyn RoomExecutor> {
        Box::new(self)
    }

    /// The writer of `shard` of `shards` (which rooms' outbox marks it sweeps); the default is
    /// the only shard. Call before [`RoomWriter::with_events`].
    pub fn with_shard(mut self, shard: usize, shards: usize) -> Self {
        self.shard = (shard, shards.max(1));
        self
    }

    /// Publishes the downstream events of every applied batch to `events` through the outbox
    /// (none: nothing is marked, built or published, the default).
    pub fn with_events(self, events: Option<Arc<dyn EventPublisher>>) -> Self {
        self.with_events_retrying(events, outbox::PUBLISH_RETRY_FOR)
    }

    /// [`RoomWriter::with_events`], retrying a refused publish for `retry_for` before leaving
    /// it to the outbox's catch-up.
    pub fn with_events_retrying(
        mut self,
        events: Option<Arc<dyn EventPublisher>>,
        retry_for: std::time::Duration,
    ) -> Self {
        let (shard, shards) = self.shard;
        self.outbox =
            events.map(|events| Outbox::new(events, shard, shards).retrying_for(retry_for));
        self
    }

    /// Forgets every cached room and outbox mark: the store is the truth again. Called when a
    /// pipeline (re)takes the writer's shard.
    pub fn reset(&mut self) {
        self.cache = RoomCache::new(CACHED_ROOMS);
        self.rooms.set(0);
        if let Some(outbox) = &mut self.outbox {
            outbox.reset();
        }
    }

    /// Whether the writer has outbox work for an idle moment ([`RoomWriter::tick`]).
    pub fn wants_tick(&self) -> bool {
        self.outbox.as_ref().is_some_and(Outbox::wants_tick)
    }

    /// Idle work: sweeps the outbox (catches up unpublished rooms, clears published marks).
    pub async fn tick(&mut self) {
        let now_ms = self.clock.now_ms();
        if let Some(outbox) = &mut self.outbox {
            outbox.sweep(self.store.as_ref(), now_ms).await;
        }
    }

    /// Executes the commands of one room, in order, as one batch; one result per command.
    pub async fn execute(
        &mut self,
        room: &RoomId,
        commands: &[RoomCommand],
    ) -> Vec<Result<Outcome, ChatError>> {
        let (results, applied) = self.apply(room, commands).await;
        self.publish_or_catch_up(room, applied).await;
        results
    }

    /// Publishes an applied batch, or, when the commands appended nothing (a retry that
    /// deduped, say), catches the room up if it has events not yet published.
    async fn publish_or_catch_up(&mut self, room: &RoomId, applied: Option<Applied>) {
        match applied {
            Some(applied) => self.publish(applied).await,
            None => {
                if let Some(outbox) = &mut self.outbox {
                    outbox.catch_up_room(self.store.as_ref(), room).await;
                }
            }
        }
    }

    /// Sweeps the outbox when it is due (the first batch after a reset, then every
    /// [`outbox::SWEEP_EVERY_MS`] while busy).
    async fn sweep_if_due(&mut self) {
        let now_ms = self.clock.now_ms();
        if let Some(outbox) = &mut self.outbox
            && outbox.sweep_due(now_ms)
        {
            outbox.sweep(self.store.as_ref(), now_ms).await;
        }
    }

    /// The first half of [`RoomWriter::execute`]: the batch is durable when this returns, so
    /// a caller may answer the commands before it runs [`RoomWriter::publish`] (the fan-out
    /// and the downstream events), which must follow before the room's next batch.
    pub async fn apply(
        &mut self,
        room: &RoomId,
        commands: &[RoomCommand],
    ) -> (Vec<Result<Outcome, ChatError>>, Option<Applied>) {
        self.sweep_if_due().await;
        for _ in 0..FENCE_RETRIES {
            match self.try_batch(room, commands).await {
                Ok(Some(done)) => return done,
                // Fenced: another writer moved the head; rebuild on fresh state.
                Ok(None) => {}
                Err(err) => {
                    self.forget(room);
                    return (commands.iter().map(|_| Err(err.clone())).collect(), None);
                }
            }
        }
        self.forget(room);
        let contended = commands
            .iter()
            .map(|_| Err(ChatError::Unavailable("room contended".into())))
            .collect();
        (contended, None)
    }

    /// The second half of [`RoomWriter::execute`]: the batch's events to the live sessions,
    /// then to the downstream queue through the outbox.
    pub async fn publish(&mut self, applied: Applied) {
        let Applied {
            room,
            events,
            audience,
            user_events,
        } = applied;
        let events: Arc<[chatwire_protocol::v1::RoomEvent]> = Arc::from(events);
        self.fanout
            .publish_room(&room, Arc::clone(&events), &audience);
        for (user, event) in user_events {
            self.fanout.publish_user(&user, event, None);
        }
        if let Some(outbox) = &mut self.outbox {
            outbox.publish(self.store.as_ref(), &room, &events).await;
        }
    }

    /// Forgets what the writer knew of a room after an append whose outcome is unknown or that
    /// was fenced: its state and its outbox mark are read from the store again.
    fn forget(&mut self, room: &RoomId) {
        self.cache.remove(room);
        if let Some(outbox) = &mut self.outbox {
            outbox.forget(room);
        }
    }

    /// One attempt; `Ok(None)` when the append was fenced.
    async fn try_batch(
        &mut self,
        room: &RoomId,
        commands: &[RoomCommand],
    ) -> Result<Option<(Vec<Result<Outcome, ChatError>>, Option<Applied>)>, ChatError> {
        let state = self.state(room).await?;
        let mut draft = Draft::new(
            self.store.as_ref(),
            self.config,
            room.clone(),
            state,
            self.clock.now_ms(),
        );
        let mut results = Vec::with_capacity(commands.len());
        for command in commands {
            results.push(draft.apply(command).await);
        }
        if draft.is_empty() {
            return Ok(Some((results, None)));
        }
        let base = draft.base_seq();
        let Some(mut sealed) = draft.seal() else {
            return Ok(Some((results, None)));
        };
        sealed.batch.mark_outbox = self.outbox.as_ref().is_some_and(|o| o.needs_mark(room));
        match self.store.append(room, base, &sealed.batch).await {
            Ok(AppendOutcome::Applied) => {}
            Ok(AppendOutcome::Fenced { current }) => {
                tracing::info!(room = %room, expected = base, found = current.seq, "append fenced; reloading room");
                self.forget(room);
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        }
        if let Some(outbox) = &mut self.outbox {
            outbox.appended(room, base.saturating_add(1), sealed.state.head.seq);
        }
        self.remember(room.clone(), sealed.state);
        let applied = Applied {
            room: room.clone(),
            events: sealed.batch.events,
            audience: sealed.audience,
            user_events: sealed.user_events,
        };
        Ok(Some((results, Some(applied))))
    }

    async fn state(&mut self, room: &RoomId) -> Result<Option<RoomState>, ChatError> {
        if let Some(state) = self.cache.get(room) {
            return Ok(Some(state.clone()));
        }
        let snapshot = self.store.load_room(room).await?;
        if let (Some(outbox), Some(snapshot)) = (&mut self.outbox, &snapshot) {
            outbox.loaded(room, snapshot.outbox_from);
        }
        let loaded = snapshot.map(RoomState::from_snapshot);
        if let Some(state) = &loaded {
            self.remember(room.clone(), state.clone());
        }
        Ok(loaded)
    }

    fn remember(&mut self, room: RoomId, state: RoomState) {
        self.cache.insert(room, state);
        self.rooms.set(self.cache.len());
    }
}

/// The room states a writer keeps, least recently used first out: when full, the quarter used
/// longest ago is forgotten (they reload from the store on demand), so a busy room is never
/// dropped for a passing one and eviction costs O(1) per room amortised (issue 15: the whole
/// cache was flushed when full).
#[derive(Debug)]
struct RoomCache {
    rooms: HashMap<RoomId, (RoomState, u64)>,
    capacity: usize,
    tick: u64,
}

impl RoomCache {
    fn new(capacity: usize) -> Self {
        Self {
            rooms: HashMap::new(),
            capacity: capacity.max(1),
            tick: 0,
        }
    }

    fn get(&mut self, room: &RoomId) -> Option<&RoomState> {
        self.tick += 1;
        let tick = self.tick;
        self.rooms.get_mut(room).map(|(state, used)| {
            *used = tick;
            &*state
        })
    }

    fn insert(&mut self, room: RoomId, state: RoomState) {
        if self.rooms.len() >= self.capacity && !self.rooms.contains_key(&room) {
            let mut used: Vec<u64> = self.rooms.values().map(|(_, used)| *used).collect();
            let quarter = (used.len() / 4).max(1);
            let (_, cut, _) = used.select_nth_unstable(quarter - 1);
            let cut = *cut;
            self.rooms.retain(|_, (_, used)| *used > cut);
        }
        self.tick += 1;
        self.rooms.insert(room, (state, self.tick));
    }

    fn remove(&mut self, room: &RoomId) {
        self.rooms.remove(room);
    }

    fn len(&self) -> usize {
        self.rooms.len()
    }
}

/// How the pipelines drive a writer: they see it only through this trait
/// ([`crate::backend::pipeline`]), so the backends never import the writer.
#[async_trait::async_trait]
impl RoomExecutor for RoomWriter {
    async fn execute(
        &mut self,
        room: &RoomId,
        commands: &[RoomCommand],
    ) -> Vec<Result<Outcome, ChatError>> {
        RoomWriter::execute(self, room, commands).await
    }

    async fn execute_answering_early(
        &mut self,
        room: &RoomId,
        commands: &[RoomCommand],
        answer: Answer,
    ) {
        let (results, applied) = self.apply(room, commands).await;
        answer(results);
        self.publish_or_catch_up(room, applied).await;
    }

    fn wants_tick(&self) -> bool {
        RoomWriter::wants_tick(self)
    }

    async fn tick(&mut self) {
        RoomWriter::tick(self).await;
    }

    fn reset(&mut self) {
        RoomWriter::reset(self);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_room_cache_forgets_the_least_recently_used_quarter() {
        use super::{RoomCache, RoomState};
        let state = || {
            RoomState::from_snapshot(crate::backend::store::RoomSnapshot {
                head: crate::backend::store::Head::default(),
                room: chatwire_protocol::v1::Room::default(),
                members: Vec::new(),
                outbox_from: None,
            })
        };
        let room = |n: usize| crate::chat::ids::RoomId::parse(&format!("g.r{n}")).expect("room id");
        let mut cache = RoomCache::new(8);
        for n in 0..8 {
            cache.insert(room(n), state());
        }
        assert!(
            cache.get(&room(0)).is_some() && cache.get(&room(1)).is_some(),
            "busy rooms"
        );
        cache.insert(room(8), state());
        assert_eq!(cache.len(), 7, "two of eight forgotten, one added");
        for n in [0, 1, 4, 5, 6, 7, 8] {
            assert!(cache.get(&room(n)).is_some(), "room {n} kept");
        }
        for n in [2, 3] {
            assert!(
                cache.get(&room(n)).is_none(),
                "room {n}, used longest ago, forgotten"
            );
        }
    }

    use chatwire_protocol::v1;

    use super::*;
    use crate::backend::embedded::{EmbeddedOptions, EmbeddedStore};
    use crate::backend::fanout::{Delivery, SessionLink};
    use crate::backend::fanout_local::LocalFanout;
    use crate::chat::command::{CreateGroup, RoomOp, SendOp};
    use crate::chat::ids::UserId;

    fn user(name: &str) -> UserId {
        UserId::parse(name).expect("user id")
    }

    fn command(room: &RoomId, actor: &str, op: RoomOp) -> RoomCommand {
        RoomCommand {
            room: room.clone(),
            actor: user(actor),
            op,
            trace_id: String::new(),
            privileged: false,
        }
    }

    /// A writer over a fresh embedded store (no fsync) and a local fan-out; the folder lives as
    /// long as the returned guard.
    fn embedded_writer() -> (
        tempfile::TempDir,
        Arc<EmbeddedStore>,
        Arc<LocalFanout>,
        RoomWriter,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let options = EmbeddedOptions {
            bucket_width_ms: 3_600_000,
            sync: false,
        };
        let store = Arc::new(EmbeddedStore::open(&dir.path().join("s"), options).expect("store"));
        let clock = crate::server::system_clock();
        let fanout = Arc::new(LocalFanout::new(Arc::clone(&clock)));
        let writer = RoomWriter::new(
            store.clone(),
            fanout.clone(),
            clock,
            WriterConfig::default(),
        );
        (dir, store, fanout, writer)
    }

    /// A Send of `text` with idempotency key `id`.
    fn send_op(id: &str, text: &str) -> RoomOp {
        RoomOp::Send(SendOp {
            client_msg_id: id.into(),
            content: v1::Content {
                text: text.into(),
                ..Default::default()
            },
            reply_to_seq: 0,
            thread_root_seq: 0,
        })
    }

    /// A commit in a room of 10k members with one live member costs O(its events): the
    /// members are shared with the cached state (never copied) and the fan-out reaches the
    /// one live session.
    #[tokio::test]
    async fn a_message_in_a_big_room_copies_no_member() {
        const MEMBERS: usize = 10_000;
        let (_dir, _store, fanout, mut writer) = embedded_writer();
        let room = RoomId::parse("g.big").expect("room id");
        let create = CreateGroup {
            name: "big".into(),
            topic: String::new(),
            members: (1..MEMBERS).map(|i| user(&format!("m{i}"))).collect(),
            history_visibility: v1::HistoryVisibility::SinceJoin,
            member_cap: u32::try_from(MEMBERS).expect("small"),
            app_data: bytes::Bytes::new(),
        };
        let created = writer
            .execute(
                &room,
                &[command(&room, "owner", RoomOp::CreateGroup(create))],
            )
            .await;
        assert!(created[0].is_ok(), "{created:?}");
        let (link, mut deliveries, _) = SessionLink::new(16);
        fanout.attach(1, &user("m7"), link);
        let members = Arc::clone(&writer.cache.get(&room).expect("cached").members);
        assert_eq!(members.len(), MEMBERS);

        let send = send_op("c1", "hi");
        let sent = writer
            .execute(&room, &[command(&room, "owner", send)])
            .await;
        assert!(matches!(sent[0], Ok(Outcome::Sent(_))), "{sent:?}");
        assert!(
            Arc::ptr_eq(&members, &writer.cache.get(&room).expect("cached").members),
            "the commit copied the member map"
        );
        match deliveries.try_recv() {
            Ok(Delivery::Room(events)) => assert_eq!(events.len(), 1),
            other => panic!("the live member got {other:?}"),
        }
    }

    /// Reactions are kept one row per user (issue 15 M7): a message that 30 members reacted to
    /// stores a count of 30 and only 10 user ids; repeats (in one batch, or later) are no-ops,
    /// and a removal is counted once.
    #[tokio::test]
    async fn reactions_store_a_count_and_a_sample_not_every_user() {
        use crate::backend::store::RoomLog;
        const MEMBERS: usize = 30;
        let (_dir, store, _fanout, mut writer) = embedded_writer();
        let room = RoomId::parse("g.react").expect("room id");
        let create = CreateGroup {
            name: "react".into(),
            topic: String::new(),
            members: (1..MEMBERS).map(|i| user(&format!("m{i}"))).collect(),
            history_visibility: v1::HistoryVisibility::Full,
            member_cap: 100,
            app_data: bytes::Bytes::new(),
        };
        let created = writer
            .execute(&room, &[command(&room, "m0", RoomOp::CreateGroup(create))])
            .await;
        assert!(created[0].is_ok(), "{created:?}");
        let send = send_op("c1", "react to me");
        let sent = writer.execute(&room, &[command(&room, "m0", send)]).await;
        let Ok(Outcome::Sent(sent)) = &sent[0] else {
            panic!("{sent:?}");
        };
        let target = sent.seq;
        let react = |who: &str, add: bool| {
            command(
                &room,
                who,
                RoomOp::React {
                    target_seq: target,
                    emoji: "👍".into(),
                    add,
                },
            )
        };
        for i in 0..MEMBERS {
            let who = format!("m{i}");
            // The second copy in the same batch changes nothing.
            let both = writer
                .execute(&room, &[react(&who, true), react(&who, true)])
                .await;
            assert!(
                matches!(both[0], Ok(Outcome::Seq(seq)) if seq > 0),
                "{both:?}"
            );
            assert!(matches!(both[1], Ok(Outcome::Seq(0))), "{both:?}");
        }
        let stored = store
            .message(&room, target)
            .await
            .expect("read")
            .expect("message");
        assert_eq!(stored.reactions.len(), 1);
        assert_eq!(stored.reactions[0].count, 30);
        assert_eq!(
            stored.reactions[0].user_ids.len(),
            10,
            "a sample, not every user"
        );
        let m25 = user("m25");
        assert_eq!(
            store
                .reactions_of(&room, &m25, target, target)
                .await
                .expect("rows"),
            vec![(target, "👍".to_owned())]
        );

        let again = writer.execute(&room, &[react("m25", true)]).await;
        assert!(matches!(again[0], Ok(Outcome::Seq(0))), "{again:?}");
        let removed = writer.execute(&room, &[react("m25", false)]).await;
        assert!(
            matches!(removed[0], Ok(Outcome::Seq(seq)) if seq > 0),
            "{removed:?}"
        );
        let twice = writer.execute(&room, &[react("m25", false)]).await;
        assert!(matches!(twice[0], Ok(Outcome::Seq(0))), "{twice:?}");
        let stored = store
            .message(&room, target)
            .await
            .expect("read")
            .expect("message");
        assert_eq!(stored.reactions[0].count, 29);
        assert!(
            store
                .reactions_of(&room, &m25, target, target)
                .await
                .expect("rows")
                .is_empty()
        );
    }
}
