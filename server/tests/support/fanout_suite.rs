//! The behavioural suite of the live fan-out trait (`Fanout`), written once and run against
//! every implementation.
//!
//! An implementation provides a [`FanoutFactory`] and expands [`fanout_suite_tests!`] with it,
//! which makes one `#[tokio::test]` per behaviour, named after it:
//!
//! ```ignore
//! mod support;
//! fn factory() -> MyFactory { ... }
//! support::fanout_suite::fanout_suite_tests!(factory);
//! ```
//!
//! Sessions are plain [`SessionLink`]s whose receivers the tests read directly. That nothing
//! arrived is checked with a marker: the test sends the session a marker event with
//! `publish_session` and expects it to be the next delivery.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatwire_protocol::v1;
use chatwire_server::backend::fanout::{
    Audience, Delivery, Fanout, Overflow, SessionKey, SessionLink,
};
use chatwire_server::chat::ids::{RoomId, UserId};
use chatwire_server::clock::{Clock, ManualClock};
use tokio::sync::mpsc;

/// Makes the fan-outs under test.
#[async_trait]
pub trait FanoutFactory: Send + Sync {
    /// A fan-out with no sessions that stamps last-seen times from `clock`.
    async fn fanout(&self, clock: Arc<dyn Clock>) -> Arc<dyn Fanout>;
}

/// Makes one `#[tokio::test]` per behaviour of the suite, each calling `$factory()` for a fresh
/// factory.
#[allow(unused_macros)] // test binaries that do not test a fan-out
macro_rules! fanout_suite_tests {
    ($factory:path) => {
        $crate::support::fanout_suite::fanout_suite_tests!(
            @tests $factory;
            room_events_reach_the_audience_only,
            every_session_of_a_user_receives,
            publish_user_skips_the_excepted_session,
            publish_session_reaches_one_session,
            detach_stops_deliveries,
            sessions_are_listed_and_counted,
            a_full_queue_signals_overflow_without_blocking,
            close_reaches_full_queues,
            close_all_reaches_every_session,
            presence_follows_first_and_last_session,
            unwatch_and_detach_stop_presence_events,
            the_watch_set_is_capped_as_a_whole,
            presence_snapshot,
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory();
                $crate::support::fanout_suite::$name(&factory).await;
            }
        )*
    };
}
#[allow(unused_imports)] // test binaries that do not test a fan-out
pub(crate) use fanout_suite_tests;

// ---------------------------------------------------------------------------------------------
// Builders

/// The time the tests' clocks start at.
const T0: i64 = 1_700_000_000_000;

/// Long enough for anything that will arrive; only a guard against hanging.
const HANG_GUARD: Duration = Duration::from_secs(10);

/// A user id.
pub fn user(raw: &str) -> UserId {
    UserId::parse(raw).expect("valid user id")
}

/// A room id.
pub fn room(raw: &str) -> RoomId {
    RoomId::parse(raw).expect("valid room id")
}

/// Room events with `seqs`, sent by `alice`.
pub fn events(room: &RoomId, seqs: impl IntoIterator<Item = u64>) -> Arc<[v1::RoomEvent]> {
    seqs.into_iter()
        .map(|seq| v1::RoomEvent {
            room_id: room.to_string(),
            seq,
            ts_ms: T0,
            sender: "alice".to_owned(),
            kind: Some(v1::room_event::Kind::MessageCreated(
                v1::MessageCreated::default(),
            )),
        })
        .collect()
}

/// A user event told apart by `tag`.
pub fn tagged(tag: &str) -> v1::Event {
    v1::Event {
        kind: Some(v1::event::Kind::TypingChanged(v1::TypingChanged {
            room_id: tag.to_owned(),
            ..Default::default()
        })),
    }
}

/// A session under test: its key and the receiving end of its link.
#[derive(Debug)]
pub struct Session {
    /// The session's key.
    pub key: SessionKey,
    /// Its delivery queue.
    pub rx: mpsc::Receiver<Delivery>,
    /// Its overflow signal.
    pub overflow: Arc<Overflow>,
}

impl Session {
    /// The next delivery (panics when the link was dropped or nothing comes).
    pub async fn next(&mut self) -> Delivery {
        tokio::time::timeout(HANG_GUARD, self.rx.recv())
            .await
            .expect("a delivery within the hang guard")
            .expect("the link is open")
    }

    /// The next delivery, which must be room events: their seqs.
    pub async fn room_seqs(&mut self) -> Vec<u64> {
        match self.next().await {
            Delivery::Room(events) => events.iter().map(|e| e.seq).collect(),
            other => panic!("session {}: expected room events, got {other:?}", self.key),
        }
    }

    /// The next delivery, which must be a user event.
    pub async fn user_event(&mut self) -> v1::Event {
        match self.next().await {
            Delivery::User(event) => (*event).clone(),
            other => panic!("session {}: expected a user event, got {other:?}", self.key),
        }
    }

    /// The next delivery, which must be a Presence event.
    pub async fn presence(&mut self) -> v1::Presence {
        match self.user_event().await.kind {
            Some(v1::event::Kind::Presence(presence)) => presence,
            other => panic!("session {}: expected presence, got {other:?}", self.key),
        }
    }

    /// The next delivery, which must be a close.
    pub async fn close(&mut self) -> v1::CloseCode {
        match self.next().await {
            Delivery::Close(code) => code,
            other => panic!("session {}: expected a close, got {other:?}", self.key),
        }
    }

    /// Checks that nothing is waiting: a marker sent now is the next delivery.
    pub async fn assert_quiet(&mut self, fanout: &dyn Fanout) {
        let marker = format!("marker-{}", self.key);
        assert!(fanout.publish_session(self.key, tagged(&marker)));
        assert_eq!(
            self.user_event().await,
            tagged(&marker),
            "session {} got something unexpected",
            self.key
        );
    }

    /// Checks that the fan-out dropped the link: the queue ends once drained.
    pub async fn assert_dropped(&mut self) {
        let next = tokio::time::timeout(HANG_GUARD, self.rx.recv())
            .await
            .expect("the link is dropped within the hang guard");
        assert!(next.is_none(), "session {} got {next:?}", self.key);
    }
}

/// Attaches session `key` of `user` with a queue of `capacity`.
pub fn attach(fanout: &dyn Fanout, key: SessionKey, user: &UserId, capacity: usize) -> Session {
    let (link, rx, overflow) = SessionLink::new(capacity);
    fanout.attach(key, user, link);
    Session { key, rx, overflow }
}

fn sorted(mut keys: Vec<SessionKey>) -> Vec<SessionKey> {
    keys.sort_unstable();
    keys
}

/// A fan-out with a manual clock at [`T0`].
async fn open(factory: &dyn FanoutFactory) -> (Arc<dyn Fanout>, Arc<ManualClock>) {
    let clock = ManualClock::at(T0);
    let fanout = factory.fanout(clock.clone()).await;
    (fanout, clock)
}

// ---------------------------------------------------------------------------------------------
// Behaviours

/// Room events reach the sessions of the audience, and only them.
pub async fn room_events_reach_the_audience_only(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let mut a = attach(&*fanout, 1, &alice, 16);
    let mut b = attach(&*fanout, 2, &bob, 16);
    let mut c = attach(&*fanout, 3, &carol, 16);
    let g = room("g.audience");

    fanout.publish_room(
        &g,
        events(&g, 1..=3),
        &Audience::users([alice.clone(), bob.clone()]),
    );
    fanout.publish_room(
        &g,
        events(&g, [4]),
        &Audience::users([bob.clone(), user("nobody")]),
    );

    assert_eq!(a.room_seqs().await, vec![1, 2, 3]);
    assert_eq!(b.room_seqs().await, vec![1, 2, 3]);
    assert_eq!(b.room_seqs().await, vec![4]);
    for session in [&mut a, &mut b, &mut c] {
        session.assert_quiet(&*fanout).await;
    }
}

/// Every session of an audience user gets the events, once each.
pub async fn every_session_of_a_user_receives(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let alice = user("alice");
    let mut sessions: Vec<Session> = (1..=3).map(|k| attach(&*fanout, k, &alice, 16)).collect();
    let g = room("g.many");

    fanout.publish_room(&g, events(&g, [7]), &Audience::users([alice.clone()]));
    fanout.publish_user(&alice, tagged("all"), None);

    for session in &mut sessions {
        assert_eq!(session.room_seqs().await, vec![7]);
        assert_eq!(session.user_event().await, tagged("all"));
        session.assert_quiet(&*fanout).await;
    }
}

/// `publish_user` reaches the user's sessions except the excepted one, and no other user.
pub async fn publish_user_skips_the_excepted_session(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut a1 = attach(&*fanout, 1, &alice, 16);
    let mut a2 = attach(&*fanout, 2, &alice, 16);
    let mut b = attach(&*fanout, 3, &bob, 16);

    fanout.publish_user(&alice, tagged("not-1"), Some(1));
    // Excepting another user's session excepts nothing.
    fanout.publish_user(&alice, tagged("every"), Some(3));

    assert_eq!(a2.user_event().await, tagged("not-1"));
    assert_eq!(a2.user_event().await, tagged("every"));
    assert_eq!(a1.user_event().await, tagged("every"));
    for session in [&mut a1, &mut a2, &mut b] {
        session.assert_quiet(&*fanout).await;
    }
}

/// `publish_session` reaches that one session; false for a session that is not here.
pub async fn publish_session_reaches_one_session(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let alice = user("alice");
    let mut a1 = attach(&*fanout, 1, &alice, 16);
    let mut a2 = attach(&*fanout, 2, &alice, 16);

    assert!(fanout.publish_session(2, tagged("two")));
    assert!(!fanout.publish_session(99, tagged("nobody")));

    assert_eq!(a2.user_event().await, tagged("two"));
    a1.assert_quiet(&*fanout).await;
    a2.assert_quiet(&*fanout).await;
}

/// A detached session gets nothing more and its link is dropped; the user's other sessions
/// carry on. Detaching twice, or an unknown session, changes nothing.
pub async fn detach_stops_deliveries(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let alice = user("alice");
    let mut a1 = attach(&*fanout, 1, &alice, 16);
    let mut a2 = attach(&*fanout, 2, &alice, 16);
    let g = room("g.detach");

    fanout.detach(1);
    fanout.detach(1);
    fanout.detach(42);
    fanout.publish_room(&g, events(&g, [1]), &Audience::users([alice.clone()]));
    fanout.publish_user(&alice, tagged("after"), None);
    assert!(!fanout.publish_session(1, tagged("gone")));

    a1.assert_dropped().await;
    assert_eq!(a2.room_seqs().await, vec![1]);
    assert_eq!(a2.user_event().await, tagged("after"));
    a2.assert_quiet(&*fanout).await;
    assert_eq!(fanout.sessions_of(&alice), vec![2]);
    assert_eq!(fanout.session_count(), 1);
}

/// `sessions_of` lists a user's live sessions and `session_count` counts everyone's.
pub async fn sessions_are_listed_and_counted(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let (alice, bob) = (user("alice"), user("bob"));
    assert_eq!(fanout.session_count(), 0);
    assert_eq!(fanout.sessions_of(&alice), Vec::<SessionKey>::new());

    let _sessions = [
        attach(&*fanout, 10, &alice, 4),
        attach(&*fanout, 20, &bob, 4),
        attach(&*fanout, 30, &alice, 4),
        attach(&*fanout, 40, &alice, 4),
    ];
    assert_eq!(sorted(fanout.sessions_of(&alice)), vec![10, 30, 40]);
    assert_eq!(fanout.sessions_of(&bob), vec![20]);
    assert_eq!(fanout.session_count(), 4);

    fanout.detach(30);
    fanout.detach(20);
    assert_eq!(sorted(fanout.sessions_of(&alice)), vec![10, 40]);
    assert_eq!(fanout.sessions_of(&bob), Vec::<SessionKey>::new());
    assert_eq!(fanout.session_count(), 2);
}

/// A delivery that does not fit a session's queue signals its overflow (to a waiter that came
/// before and one that comes after) instead of blocking the publisher; other sessions still
/// get everything.
pub async fn a_full_queue_signals_overflow_without_blocking(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut slow = attach(&*fanout, 1, &alice, 2);
    let mut fast = attach(&*fanout, 2, &bob, 64);
    let early_waiter = tokio::spawn({
        let overflow = Arc::clone(&slow.overflow);
        async move { overflow.wait().await }
    });
    let g = room("g.slow");
    assert!(!slow.overflow.happened());

    // The publisher returns although the slow session's queue fills after two deliveries.
    for seq in 1..=5 {
        fanout.publish_room(
            &g,
            events(&g, [seq]),
            &Audience::users([alice.clone(), bob.clone()]),
        );
    }

    assert!(slow.overflow.happened());
    tokio::time::timeout(HANG_GUARD, slow.overflow.wait())
        .await
        .expect("wait resolves after the overflow");
    tokio::time::timeout(HANG_GUARD, early_waiter)
        .await
        .expect("a waiter from before the overflow wakes")
        .expect("waiter task");
    assert!(!fast.overflow.happened());
    for seq in 1..=5 {
        assert_eq!(fast.room_seqs().await, vec![seq]);
    }
    // The slow session has what fitted, in order; the rest was dropped.
    assert_eq!(slow.room_seqs().await, vec![1]);
    assert_eq!(slow.room_seqs().await, vec![2]);
    slow.assert_quiet(&*fanout).await;
    fast.assert_quiet(&*fanout).await;
}

/// Closing a user's sessions delivers the close to each of them, behind what is already queued
/// and even when the queue is full, without signalling an overflow; other users are untouched.
pub async fn close_reaches_full_queues(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let (alice, bob) = (user("alice"), user("bob"));
    let mut full = attach(&*fanout, 1, &alice, 1);
    let mut roomy = attach(&*fanout, 2, &alice, 16);
    let mut other = attach(&*fanout, 3, &bob, 16);
    let g = room("g.close");
    fanout.publish_room(&g, events(&g, [1]), &Audience::users([alice.clone()]));

    let closed = fanout.close_sessions(Some(&alice), v1::CloseCode::Revoked);

    assert_eq!(closed, 2);
    assert_eq!(full.room_seqs().await, vec![1]);
    assert_eq!(full.close().await, v1::CloseCode::Revoked);
    assert!(!full.overflow.happened(), "a close is not an overflow");
    assert_eq!(roomy.room_seqs().await, vec![1]);
    assert_eq!(roomy.close().await, v1::CloseCode::Revoked);
    other.assert_quiet(&*fanout).await;
    assert_eq!(
        fanout.close_sessions(Some(&user("nobody")), v1::CloseCode::Revoked),
        0
    );
}

/// Closing everyone's sessions reaches every session, full queues included.
pub async fn close_all_reaches_every_session(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let mut sessions: Vec<Session> = (1..=6)
        .map(|k| attach(&*fanout, k, &user(&format!("user{}", k % 3)), 1))
        .collect();
    // Fill two queues to the brim.
    assert!(fanout.publish_session(2, tagged("fill")));
    assert!(fanout.publish_session(5, tagged("fill")));

    assert_eq!(
        fanout.close_sessions(None, v1::CloseCode::ServerDraining),
        6
    );

    for session in &mut sessions {
        if matches!(session.key, 2 | 5) {
            assert_eq!(session.user_event().await, tagged("fill"));
        }
        assert_eq!(session.close().await, v1::CloseCode::ServerDraining);
    }
}

/// Watches `users` (all visible) within a cap they fit.
fn watch(fanout: &dyn Fanout, session: SessionKey, users: &[UserId]) {
    fanout
        .watch_presence(session, users, &[], 1_000)
        .expect("within the cap");
}

/// The watch set is capped as a whole across requests (R-14.1.4): a watch that would take it
/// past the cap is refused and changes nothing; users already watched do not count twice;
/// hidden (blocked) users count like the others but are never reported; unwatching makes room.
pub async fn the_watch_set_is_capped_as_a_whole(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let (alice, bob, carol, dave) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let mut w = attach(&*fanout, 100, &user("wendy"), 16);
    fanout
        .watch_presence(100, &[alice.clone(), bob.clone()], &[], 3)
        .expect("two of three");
    assert_eq!(
        fanout.watch_presence(100, &[alice.clone(), carol.clone(), dave.clone()], &[], 3),
        Err(4),
        "alice counts once: 4 users would be watched"
    );
    assert_eq!(
        fanout.watch_presence(100, &[], &[carol.clone(), dave.clone()], 3),
        Err(4),
        "hidden users count too"
    );
    let _c = attach(&*fanout, 3, &carol, 16);
    w.assert_quiet(&*fanout).await;
    fanout
        .watch_presence(
            100,
            std::slice::from_ref(&alice),
            std::slice::from_ref(&dave),
            3,
        )
        .expect("alice again plus dave: three");
    let _d = attach(&*fanout, 4, &dave, 16);
    w.assert_quiet(&*fanout).await;
    assert_eq!(
        fanout.watch_presence(100, std::slice::from_ref(&carol), &[], 3),
        Err(4),
        "full"
    );
    fanout.unwatch_presence(100, std::slice::from_ref(&dave));
    fanout
        .watch_presence(100, std::slice::from_ref(&carol), &[], 3)
        .expect("room after the unwatch");
    let _b = attach(&*fanout, 2, &bob, 16);
    let online = w.presence().await;
    assert_eq!((online.user_id.as_str(), online.online), ("bob", true));
    w.assert_quiet(&*fanout).await;
}

/// A watcher hears a user come online with the first session (not again with a second) and go
/// offline with the last, stamped from the clock; every watcher hears it.
pub async fn presence_follows_first_and_last_session(factory: &dyn FanoutFactory) {
    let (fanout, clock) = open(factory).await;
    let (alice, wendy, walt) = (user("alice"), user("wendy"), user("walt"));
    let mut w1 = attach(&*fanout, 100, &wendy, 16);
    let mut w2 = attach(&*fanout, 200, &walt, 16);
    watch(&*fanout, 100, std::slice::from_ref(&alice));
    watch(&*fanout, 200, &[alice.clone(), user("bob")]);

    clock.set(T0 + 1_000);
    let _a1 = attach(&*fanout, 1, &alice, 16);
    for watcher in [&mut w1, &mut w2] {
        let online = watcher.presence().await;
        assert_eq!((online.user_id.as_str(), online.online), ("alice", true));
        assert_eq!(online.last_seen_ms, T0 + 1_000, "seen now");
    }

    clock.set(T0 + 2_000);
    let _a2 = attach(&*fanout, 2, &alice, 16);
    fanout.detach(1);
    w1.assert_quiet(&*fanout).await;

    clock.set(T0 + 3_000);
    fanout.detach(2);
    for watcher in [&mut w1, &mut w2] {
        assert_eq!(
            watcher.presence().await,
            v1::Presence {
                user_id: "alice".to_owned(),
                online: false,
                last_seen_ms: T0 + 3_000,
            }
        );
        watcher.assert_quiet(&*fanout).await;
    }
}

/// `unwatch_presence` stops the events about those users only; a detached watcher is forgotten.
pub async fn unwatch_and_detach_stop_presence_events(factory: &dyn FanoutFactory) {
    let (fanout, _) = open(factory).await;
    let (alice, bob, wendy) = (user("alice"), user("bob"), user("wendy"));
    let mut w = attach(&*fanout, 100, &wendy, 16);
    let mut gone = attach(&*fanout, 200, &wendy, 16);
    watch(&*fanout, 100, &[alice.clone(), bob.clone()]);
    watch(&*fanout, 200, &[alice.clone(), bob.clone()]);

    fanout.unwatch_presence(100, std::slice::from_ref(&alice));
    fanout.detach(200);
    let _a = attach(&*fanout, 1, &alice, 16);
    fanout.detach(1);
    w.assert_quiet(&*fanout).await;

    let _b = attach(&*fanout, 2, &bob, 16);
    let online = w.presence().await;
    assert_eq!((online.user_id.as_str(), online.online), ("bob", true));
    w.assert_quiet(&*fanout).await;
    gone.assert_dropped().await;
}

/// `presence` answers from the live sessions and the last disconnect.
pub async fn presence_snapshot(factory: &dyn FanoutFactory) {
    let (fanout, clock) = open(factory).await;
    let alice = user("alice");
    let never = v1::Presence {
        user_id: "alice".to_owned(),
        online: false,
        last_seen_ms: 0,
    };
    assert_eq!(fanout.presence(&alice), never);

    let _a1 = attach(&*fanout, 1, &alice, 4);
    let _a2 = attach(&*fanout, 2, &alice, 4);
    assert!(fanout.presence(&alice).online);
    clock.set(T0 + 5_000);
    fanout.detach(1);
    assert!(fanout.presence(&alice).online, "one session is left");
    clock.set(T0 + 9_000);
    fanout.detach(2);
    assert_eq!(
        fanout.presence(&alice),
        v1::Presence {
            last_seen_ms: T0 + 9_000,
            ..never.clone()
        }
    );

    // Back online, then gone again: the newest disconnect wins.
    let _a3 = attach(&*fanout, 3, &alice, 4);
    assert!(fanout.presence(&alice).online);
    clock.set(T0 + 12_000);
    fanout.detach(3);
    assert_eq!(fanout.presence(&alice).last_seen_ms, T0 + 12_000);
    assert_eq!(fanout.presence(&user("bob")).last_seen_ms, 0);
}
