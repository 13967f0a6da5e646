//! The behavioural suite of the event queue trait (`EventQueue`), written once and run against
//! every implementation.
//!
//! An implementation provides a [`QueueFactory`] and expands [`events_suite_tests!`] with it,
//! which makes one `#[tokio::test]` per behaviour, named after it:
//!
//! ```ignore
//! mod support;
//! fn factory() -> MyFactory { ... }
//! support::events_suite::events_suite_tests!(factory);
//! ```
//!
//! Time is passed to the queue, never slept: each test picks `now_ms` values around the
//! [`policy`]'s retry tiers and lease timeout.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chatwire_server::backend::events::{
    Delivery, DownstreamEvent, EventQueue, Lane, QueueError, RetryPolicy, log_event_id,
};

/// Makes the queues under test.
#[async_trait]
pub trait QueueFactory: Send + Sync {
    /// Opens the factory's queue with `policy`: empty on the first call; a later call (after
    /// every handle of the previous one was dropped) opens the same data again.
    async fn open(&self, policy: RetryPolicy) -> Arc<dyn EventQueue>;
}

/// Makes one `#[tokio::test]` per behaviour of the suite, each calling `$factory()` for a fresh
/// factory.
#[allow(unused_macros)] // test binaries that do not test a queue
macro_rules! events_suite_tests {
    ($factory:path) => {
        $crate::support::events_suite::events_suite_tests!(
            @tests $factory;
            publish_lease_ack,
            lease_is_fifo_and_bounded,
            publish_skips_queued_ids,
            nack_walks_retry_tiers_then_dead_letters,
            replay_from_dead_letters,
            lanes_are_independent,
            lease_timeout_redelivers,
            lease_running_out_on_last_attempt_dead_letters,
            stale_tags_are_refused,
            durable_across_reopen,
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory();
                $crate::support::events_suite::$name(&factory).await;
            }
        )*
    };
}
#[allow(unused_imports)] // test binaries that do not test a queue
pub(crate) use events_suite_tests;

// ---------------------------------------------------------------------------------------------
// Builders

/// The suite's retry policy: three tiers, a 30 s lease.
pub fn policy() -> RetryPolicy {
    RetryPolicy {
        tiers_ms: vec![1_000, 10_000, 60_000],
        lease_timeout_ms: 30_000,
    }
}

/// A start time far from zero, so "due at 0" and "due now" differ.
pub const T0: i64 = 1_700_000_000_000;

/// A log event of `room` at `seq` in `lane`.
pub fn event(lane: Lane, room: &str, seq: u64) -> DownstreamEvent {
    let kind = match lane {
        Lane::High => "message.created",
        Lane::Medium => "member.joined",
        Lane::Low => "presence.changed",
    };
    DownstreamEvent {
        id: log_event_id(room, seq, kind),
        lane,
        kind: kind.to_owned(),
        room_id: Some(room.to_owned()),
        seq: Some(seq),
        occurred_at_ms: T0 + seq as i64,
        payload: Bytes::from(format!(r#"{{"roomId":"{room}","seq":"{seq}"}}"#)),
    }
}

/// The ids of deliveries.
pub fn ids(deliveries: &[Delivery]) -> Vec<String> {
    deliveries.iter().map(|d| d.event.id.clone()).collect()
}

/// The ids of events.
pub fn event_ids(events: &[DownstreamEvent]) -> Vec<String> {
    events.iter().map(|e| e.id.clone()).collect()
}

async fn lease(queue: &dyn EventQueue, lane: Lane, max: usize, now_ms: i64) -> Vec<Delivery> {
    queue.lease(lane, max, now_ms).await.expect("lease")
}

async fn depth(queue: &dyn EventQueue, lane: Lane) -> u64 {
    queue.depth(lane).await.expect("depth")
}

/// Leases the one due event of `lane` at `now_ms` and nacks it.
async fn fail_once(queue: &dyn EventQueue, lane: Lane, now_ms: i64) -> Delivery {
    let mut leased = lease(queue, lane, 10, now_ms).await;
    assert_eq!(leased.len(), 1, "one event due at {now_ms}");
    let delivery = leased.remove(0);
    queue
        .nack(delivery.tag, now_ms, "receiver answered 500")
        .await
        .expect("nack");
    delivery
}

// ---------------------------------------------------------------------------------------------
// Behaviours

/// Published events are leased whole and in order, once; acked ones are gone.
pub async fn publish_lease_ack(factory: &dyn QueueFactory) {
    let queue = factory.open(policy()).await;
    let events = vec![
        event(Lane::High, "g:a", 1),
        event(Lane::High, "g:a", 2),
        event(Lane::High, "g:b", 1),
    ];
    queue.publish(events.clone()).await.expect("publish");
    queue.publish(Vec::new()).await.expect("empty publish");
    assert_eq!(depth(&*queue, Lane::High).await, 3);

    let leased = lease(&*queue, Lane::High, 10, T0).await;
    assert_eq!(ids(&leased), event_ids(&events));
    assert_eq!(
        leased.iter().map(|d| d.event.clone()).collect::<Vec<_>>(),
        events,
        "every field survives the queue"
    );
    assert!(leased.iter().all(|d| d.attempt == 1));
    assert!(
        lease(&*queue, Lane::High, 10, T0).await.is_empty(),
        "leased once"
    );
    assert_eq!(
        depth(&*queue, Lane::High).await,
        3,
        "leased events still count"
    );

    for delivery in &leased {
        queue.ack(delivery.tag).await.expect("ack");
    }
    assert_eq!(depth(&*queue, Lane::High).await, 0);
    let much_later = T0 + 10 * policy().lease_timeout_ms;
    assert!(lease(&*queue, Lane::High, 10, much_later).await.is_empty());
    assert_eq!(queue.dlq_len().await.expect("dlq"), 0);
}

/// A lease takes at most `max` events, oldest first; `max = 0` takes none.
pub async fn lease_is_fifo_and_bounded(factory: &dyn QueueFactory) {
    let queue = factory.open(policy()).await;
    let events: Vec<_> = (1..=5).map(|seq| event(Lane::Medium, "g:f", seq)).collect();
    queue.publish(events[..2].to_vec()).await.expect("publish");
    queue.publish(events[2..].to_vec()).await.expect("publish");
    assert!(lease(&*queue, Lane::Medium, 0, T0).await.is_empty());
    let first = lease(&*queue, Lane::Medium, 2, T0).await;
    let second = lease(&*queue, Lane::Medium, 2, T0).await;
    let third = lease(&*queue, Lane::Medium, 2, T0).await;
    assert_eq!(ids(&first), event_ids(&events[0..2]));
    assert_eq!(ids(&second), event_ids(&events[2..4]));
    assert_eq!(ids(&third), event_ids(&events[4..5]));
}

/// Publishing an id that is still queued (a re-published batch) adds nothing; once acked, the
/// id may be published again.
pub async fn publish_skips_queued_ids(factory: &dyn QueueFactory) {
    let queue = factory.open(policy()).await;
    let first = event(Lane::High, "g:d", 1);
    queue.publish(vec![first.clone()]).await.expect("publish");
    queue
        .publish(vec![first.clone(), event(Lane::High, "g:d", 2)])
        .await
        .expect("publish again");
    assert_eq!(depth(&*queue, Lane::High).await, 2);
    let leased = lease(&*queue, Lane::High, 10, T0).await;
    assert_eq!(
        ids(&leased),
        vec![first.id.clone(), log_event_id("g:d", 2, "message.created")]
    );
    queue
        .publish(vec![first.clone()])
        .await
        .expect("while leased");
    assert_eq!(depth(&*queue, Lane::High).await, 2);
    for delivery in &leased {
        queue.ack(delivery.tag).await.expect("ack");
    }
    queue.publish(vec![first]).await.expect("after ack");
    assert_eq!(depth(&*queue, Lane::High).await, 1);
}

/// Each nack waits for the next tier (1 s, 10 s, 60 s); a nack after the last tier puts the
/// event in the dead-letter queue with the number of attempts and the last reason.
pub async fn nack_walks_retry_tiers_then_dead_letters(factory: &dyn QueueFactory) {
    let queue = factory.open(policy()).await;
    let sent = event(Lane::High, "g:r", 1);
    queue.publish(vec![sent.clone()]).await.expect("publish");

    let mut now = T0;
    for (attempt, delay) in [(1, 1_000), (2, 10_000), (3, 60_000)] {
        let delivery = fail_once(&*queue, Lane::High, now).await;
        assert_eq!(delivery.attempt, attempt);
        assert!(
            lease(&*queue, Lane::High, 10, now + delay - 1)
                .await
                .is_empty(),
            "attempt {attempt}: not due before its tier's delay"
        );
        assert_eq!(depth(&*queue, Lane::High).await, 1);
        now += delay;
    }
    let last = lease(&*queue, Lane::High, 10, now).await;
    assert_eq!(last.len(), 1);
    assert_eq!(last[0].attempt, 4);
    queue
        .nack(last[0].tag, now, "still failing")
        .await
        .expect("nack");

    assert_eq!(depth(&*queue, Lane::High).await, 0);
    assert_eq!(queue.dlq_len().await.expect("dlq"), 1);
    assert!(
        lease(&*queue, Lane::High, 10, now + 3_600_000)
            .await
            .is_empty()
    );
    let dead = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event, sent);
    assert_eq!(dead[0].attempts, 4);
    assert_eq!(dead[0].dead_at_ms, now);
    assert_eq!(dead[0].reason, "still failing");
}

/// Dead letters are listed oldest first and replayed into their lane with fresh retries;
/// replaying an id that is not dead does nothing.
pub async fn replay_from_dead_letters(factory: &dyn QueueFactory) {
    let queue = factory
        .open(RetryPolicy {
            tiers_ms: vec![],
            ..policy()
        })
        .await;
    let (a, b) = (event(Lane::Medium, "g:p", 1), event(Lane::Medium, "g:p", 2));
    queue
        .publish(vec![a.clone(), b.clone()])
        .await
        .expect("publish");
    fail_once_each(&*queue, T0 + 5).await;
    assert_eq!(queue.dlq_len().await.expect("dlq"), 2);
    let dead = queue.dead_letters(1).await.expect("dead letters");
    assert_eq!(ids_of_dead(&dead), vec![a.id.clone()], "limit and order");

    assert!(
        !queue
            .replay_dead_letter("g:p:9:nothing", T0)
            .await
            .expect("replay")
    );
    assert!(
        queue
            .replay_dead_letter(&b.id, T0 + 10)
            .await
            .expect("replay")
    );
    assert!(
        !queue
            .replay_dead_letter(&b.id, T0 + 10)
            .await
            .expect("replay twice")
    );
    assert_eq!(queue.dlq_len().await.expect("dlq"), 1);
    assert_eq!(depth(&*queue, Lane::Medium).await, 1);
    assert!(
        lease(&*queue, Lane::Medium, 10, T0 + 9).await.is_empty(),
        "due at replay time"
    );
    let again = lease(&*queue, Lane::Medium, 10, T0 + 10).await;
    assert_eq!(ids(&again), vec![b.id.clone()]);
    assert_eq!(again[0].attempt, 1, "a replay starts the retries over");
    queue.ack(again[0].tag).await.expect("ack");
    let dead = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(ids_of_dead(&dead), vec![a.id]);
}

async fn fail_once_each(queue: &dyn EventQueue, now_ms: i64) {
    for delivery in lease(queue, Lane::Medium, 10, now_ms).await {
        queue.nack(delivery.tag, now_ms, "no").await.expect("nack");
    }
}

fn ids_of_dead(dead: &[chatwire_server::backend::events::DeadLetter]) -> Vec<String> {
    dead.iter().map(|d| d.event.id.clone()).collect()
}

/// Each lane is its own queue: leasing, failing or filling one leaves the others alone.
pub async fn lanes_are_independent(factory: &dyn QueueFactory) {
    let queue = factory.open(policy()).await;
    let high = event(Lane::High, "g:l", 2);
    let medium = event(Lane::Medium, "g:l", 1);
    let low = event(Lane::Low, "g:l", 3);
    queue
        .publish(vec![medium.clone(), high.clone(), low.clone()])
        .await
        .expect("publish");
    assert_eq!(depth(&*queue, Lane::High).await, 1);
    assert_eq!(depth(&*queue, Lane::Medium).await, 1);
    assert_eq!(depth(&*queue, Lane::Low).await, 1);

    let failed = fail_once(&*queue, Lane::High, T0).await;
    assert_eq!(failed.event, high);
    let medium_leased = lease(&*queue, Lane::Medium, 10, T0).await;
    assert_eq!(ids(&medium_leased), vec![medium.id.clone()]);
    queue.ack(medium_leased[0].tag).await.expect("ack");
    assert_eq!(depth(&*queue, Lane::High).await, 1);
    assert_eq!(depth(&*queue, Lane::Medium).await, 0);
    let low_leased = lease(&*queue, Lane::Low, 10, T0).await;
    assert_eq!(ids(&low_leased), vec![low.id]);
    assert_eq!(depth(&*queue, Lane::Low).await, 1);
}

/// An event whose lease runs out unacknowledged is leased again, counting the attempt, and
/// the old tag no longer counts.
pub async fn lease_timeout_redelivers(factory: &dyn QueueFactory) {
    let queue = factory.open(policy()).await;
    let timeout = policy().lease_timeout_ms;
    queue
        .publish(vec![event(Lane::High, "g:t", 1)])
        .await
        .expect("publish");
    let first = lease(&*queue, Lane::High, 10, T0).await;
    assert_eq!(first.len(), 1);
    assert!(
        lease(&*queue, Lane::High, 10, T0 + timeout - 1)
            .await
            .is_empty()
    );
    let second = lease(&*queue, Lane::High, 10, T0 + timeout).await;
    assert_eq!(ids(&second), ids(&first));
    assert_eq!(second[0].attempt, 2);
    assert_ne!(second[0].tag, first[0].tag);
    assert_eq!(queue.ack(first[0].tag).await, Err(QueueError::LeaseLost));
    queue
        .ack(second[0].tag)
        .await
        .expect("ack the current lease");
    assert_eq!(depth(&*queue, Lane::High).await, 0);
}

/// A lease that runs out on the last attempt dead-letters the event (a consumer that crashes
/// on it every time does not loop forever).
pub async fn lease_running_out_on_last_attempt_dead_letters(factory: &dyn QueueFactory) {
    let policy = RetryPolicy {
        tiers_ms: vec![100],
        lease_timeout_ms: 1_000,
    };
    let queue = factory.open(policy).await;
    queue
        .publish(vec![event(Lane::Low, "g:c", 1)])
        .await
        .expect("publish");
    let first = lease(&*queue, Lane::Low, 10, T0).await;
    assert_eq!(first[0].attempt, 1);
    let second = lease(&*queue, Lane::Low, 10, T0 + 1_000).await;
    assert_eq!(second[0].attempt, 2);
    assert!(lease(&*queue, Lane::Low, 10, T0 + 2_000).await.is_empty());
    assert_eq!(queue.dlq_len().await.expect("dlq"), 1);
    assert_eq!(depth(&*queue, Lane::Low).await, 0);
    let dead = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead[0].attempts, 2);
    assert_eq!(dead[0].dead_at_ms, T0 + 2_000);
}

/// Tags of finished deliveries are refused.
pub async fn stale_tags_are_refused(factory: &dyn QueueFactory) {
    let queue = factory.open(policy()).await;
    queue
        .publish(vec![
            event(Lane::High, "g:s", 1),
            event(Lane::High, "g:s", 2),
        ])
        .await
        .expect("publish");
    let leased = lease(&*queue, Lane::High, 10, T0).await;
    queue.ack(leased[0].tag).await.expect("ack");
    assert_eq!(queue.ack(leased[0].tag).await, Err(QueueError::LeaseLost));
    assert_eq!(
        queue.nack(leased[0].tag, T0, "late").await,
        Err(QueueError::LeaseLost)
    );
    queue.nack(leased[1].tag, T0, "no").await.expect("nack");
    assert_eq!(queue.ack(leased[1].tag).await, Err(QueueError::LeaseLost));
    assert_eq!(depth(&*queue, Lane::High).await, 1);
}

/// Waiting, retrying, leased and dead events all survive a reopen; leases do not (the events
/// are due again at once and the old tags are refused).
pub async fn durable_across_reopen(factory: &dyn QueueFactory) {
    let (waiting, retrying, leased, dead) = (
        event(Lane::Medium, "g:o", 1),
        event(Lane::High, "g:o", 2),
        event(Lane::High, "g:o", 3),
        event(Lane::Low, "g:o", 4),
    );
    let old_tag = {
        let queue = factory
            .open(RetryPolicy {
                tiers_ms: vec![5_000],
                ..policy()
            })
            .await;
        queue
            .publish(vec![
                waiting.clone(),
                retrying.clone(),
                leased.clone(),
                dead.clone(),
            ])
            .await
            .expect("publish");
        let high = lease(&*queue, Lane::High, 1, T0).await;
        queue.nack(high[0].tag, T0, "retry me").await.expect("nack");
        let low = lease(&*queue, Lane::Low, 1, T0).await;
        queue.nack(low[0].tag, T0, "first").await.expect("nack");
        let low = lease(&*queue, Lane::Low, 1, T0 + 5_000).await;
        queue
            .nack(low[0].tag, T0 + 5_000, "dead")
            .await
            .expect("nack");
        let high = lease(&*queue, Lane::High, 1, T0).await;
        assert_eq!(ids(&high), vec![leased.id.clone()]);
        high[0].tag
    };

    let queue = factory
        .open(RetryPolicy {
            tiers_ms: vec![5_000],
            ..policy()
        })
        .await;
    assert_eq!(depth(&*queue, Lane::High).await, 2);
    assert_eq!(depth(&*queue, Lane::Medium).await, 1);
    assert_eq!(depth(&*queue, Lane::Low).await, 0);
    assert_eq!(queue.dlq_len().await.expect("dlq"), 1);
    let dead_letters = queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(dead_letters[0].event, dead);
    assert_eq!(dead_letters[0].reason, "dead");

    assert_eq!(queue.ack(old_tag).await, Err(QueueError::LeaseLost));
    let high = lease(&*queue, Lane::High, 10, T0 + 1).await;
    assert_eq!(ids(&high), vec![leased.id.clone()], "the retry still waits");
    assert_eq!(high[0].attempt, 2, "the interrupted delivery counts");
    assert_eq!(high[0].event, leased);
    let high = lease(&*queue, Lane::High, 10, T0 + 5_000).await;
    assert_eq!(ids(&high), vec![retrying.id.clone()]);
    let medium = lease(&*queue, Lane::Medium, 10, T0).await;
    assert_eq!(medium[0].event, waiting);
}
