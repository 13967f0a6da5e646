//! The moderation review queue's storage (`Reviews`, issue 21 part 2), written once and run
//! against every store: items keyed by message, flags and reports merged into them, the first
//! review standing, the open queue in (room, seq) order with paging, concurrent updates of one
//! item none of which is lost, and items surviving a reopen of the store.

use std::sync::Arc;

use chatwire_server::backend::reviews::{
    Resolution, ReviewItem, ReviewKey, ReviewReport, ReviewScope, resolved, with_flag, with_report,
};
use chatwire_server::backend::store::Store;
use chatwire_server::chat::ids::RoomId;

use super::store_suite::StoreFactory;

/// Makes one `#[tokio::test]` per behaviour of the suite, each calling `$factory()` for a fresh
/// store factory.
macro_rules! reviews_suite_tests {
    ($factory:path) => {
        $crate::support::reviews_suite::reviews_suite_tests!(
            @tests $factory;
            flags_and_reports_merge_into_one_item_per_message,
            the_first_review_stands_and_leaves_the_open_queue,
            the_open_queue_pages_in_room_and_seq_order,
            a_rooms_items_list_open_and_reviewed,
            concurrent_reports_of_one_message_are_all_kept,
            items_survive_a_reopen,
        );
    };
    (@tests $factory:path; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let factory = $factory();
                $crate::support::reviews_suite::$name(&factory).await;
            }
        )*
    };
}
pub(crate) use reviews_suite_tests;

fn key(room: &str, seq: u64) -> ReviewKey {
    ReviewKey {
        room: RoomId::parse(room).expect("room id"),
        seq,
    }
}

fn report(reporter: &str, at_ms: i64) -> ReviewReport {
    ReviewReport {
        reporter: reporter.to_owned(),
        reason: format!("reported by {reporter}"),
        at_ms,
    }
}

async fn add_report(store: &dyn Store, key: &ReviewKey, reporter: &str, at_ms: i64) -> bool {
    let report = report(reporter, at_ms);
    let change = move |current: Option<&ReviewItem>| with_report(current, key, "bob", &report);
    store
        .update_review(key, &change)
        .await
        .expect("report")
        .changed
}

async fn add_flag(store: &dyn Store, key: &ReviewKey, score: u32) -> bool {
    let reasons = vec!["words.flag".to_owned()];
    let change =
        move |current: Option<&ReviewItem>| with_flag(current, key, "bob", score, &reasons, 1);
    store
        .update_review(key, &change)
        .await
        .expect("flag")
        .changed
}

async fn resolve(store: &dyn Store, key: &ReviewKey, removed: bool, by: &str) -> ReviewItem {
    let resolution = Resolution {
        removed,
        by: by.to_owned(),
        reason: format!("{by} decided"),
        at_ms: 50,
        deleted_seq: 0,
    };
    let change = move |current: Option<&ReviewItem>| resolved(current?, resolution.clone());
    store
        .update_review(key, &change)
        .await
        .expect("resolve")
        .item
        .expect("an item")
}

async fn open_keys(
    store: &dyn Store,
    after: Option<&ReviewKey>,
    limit: usize,
) -> Vec<(String, u64)> {
    store
        .reviews(&ReviewScope::Open, after, limit)
        .await
        .expect("list")
        .into_iter()
        .map(|item| (item.room_id, item.seq))
        .collect()
}

pub async fn flags_and_reports_merge_into_one_item_per_message(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let k = key("g:team", 4);
    assert_eq!(store.review(&k).await.expect("read"), None);
    assert!(
        add_report(store.as_ref(), &k, "ann", 10).await,
        "the first report opens it"
    );
    assert!(
        !add_report(store.as_ref(), &k, "ann", 20).await,
        "a repeat changes nothing"
    );
    assert!(add_flag(store.as_ref(), &k, 70).await);
    assert!(
        !add_flag(store.as_ref(), &k, 90).await,
        "a flag counts once"
    );
    assert!(add_report(store.as_ref(), &k, "cy", 30).await);
    let item = store.review(&k).await.expect("read").expect("an item");
    assert_eq!(
        (item.room_id.as_str(), item.seq, item.sender.as_str()),
        ("g:team", 4, "bob")
    );
    assert_eq!((item.opened_ms, item.flagged, item.score), (10, true, 70));
    assert_eq!(item.reasons, ["words.flag"]);
    let reporters: Vec<_> = item
        .reports
        .iter()
        .map(|r| (r.reporter.as_str(), r.at_ms))
        .collect();
    assert_eq!(reporters, [("ann", 10), ("cy", 30)]);
    assert!(item.is_open());
    assert_eq!(store.review(&key("g:team", 5)).await.expect("read"), None);
}

pub async fn the_first_review_stands_and_leaves_the_open_queue(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let (a, b) = (key("g:a", 1), key("g:a", 2));
    add_report(store.as_ref(), &a, "ann", 1).await;
    add_flag(store.as_ref(), &b, 60).await;
    assert_eq!(open_keys(store.as_ref(), None, 10).await.len(), 2);
    let approved = resolve(store.as_ref(), &a, false, "mod1").await;
    let resolution = approved.resolution.expect("reviewed");
    assert_eq!(
        (resolution.removed, resolution.by.as_str()),
        (false, "mod1")
    );
    let again = resolve(store.as_ref(), &a, true, "mod2").await;
    assert_eq!(
        again.resolution.expect("reviewed").by,
        "mod1",
        "the first review stands"
    );
    assert_eq!(
        open_keys(store.as_ref(), None, 10).await,
        [("g:a".to_owned(), 2)]
    );
    // A report after the review is recorded without reopening the item.
    assert!(add_report(store.as_ref(), &a, "dan", 2).await);
    let item = store.review(&a).await.expect("read").expect("item");
    assert!(!item.is_open() && item.reports.len() == 2);
    assert_eq!(
        open_keys(store.as_ref(), None, 10).await,
        [("g:a".to_owned(), 2)]
    );
    // Resolving a message nobody flagged or reported changes nothing.
    let none = key("g:a", 9);
    let change = |current: Option<&ReviewItem>| resolved(current?, Resolution::default());
    let update = store.update_review(&none, &change).await.expect("update");
    assert_eq!((update.item, update.changed), (None, false));
}

pub async fn the_open_queue_pages_in_room_and_seq_order(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    let keys = [
        key("g:b", 10),
        key("g:a", 3),
        key("g:b", 2),
        key("g:a", 12),
        key("g:c", 1),
    ];
    for (i, k) in keys.iter().enumerate() {
        add_report(store.as_ref(), k, "ann", i64::try_from(i).expect("small")).await;
    }
    resolve(store.as_ref(), &key("g:b", 2), true, "system").await;
    let first = open_keys(store.as_ref(), None, 2).await;
    assert_eq!(first, [("g:a".to_owned(), 3), ("g:a".to_owned(), 12)]);
    let rest = open_keys(store.as_ref(), Some(&key("g:a", 12)), 10).await;
    assert_eq!(rest, [("g:b".to_owned(), 10), ("g:c".to_owned(), 1)]);
    assert_eq!(
        open_keys(store.as_ref(), Some(&key("g:c", 1)), 10).await,
        []
    );
    assert_eq!(open_keys(store.as_ref(), None, 0).await, []);
}

pub async fn a_rooms_items_list_open_and_reviewed(factory: &dyn StoreFactory) {
    let store = factory.open().await;
    for seq in [5, 1, 9] {
        add_flag(store.as_ref(), &key("g:r", seq), 55).await;
    }
    add_flag(store.as_ref(), &key("g:other", 2), 55).await;
    resolve(store.as_ref(), &key("g:r", 5), false, "system").await;
    let room = ReviewScope::Room(RoomId::parse("g:r").expect("room"));
    let seqs = |items: Vec<ReviewItem>| {
        items
            .into_iter()
            .map(|i| (i.seq, i.is_open()))
            .collect::<Vec<_>>()
    };
    let all = store.reviews(&room, None, 10).await.expect("list");
    assert_eq!(seqs(all), [(1, true), (5, false), (9, true)]);
    let page = store
        .reviews(&room, Some(&key("g:r", 1)), 1)
        .await
        .expect("list");
    assert_eq!(seqs(page), [(5, false)]);
}

pub async fn concurrent_reports_of_one_message_are_all_kept(factory: &dyn StoreFactory) {
    let store: Arc<dyn Store> = factory.open().await;
    let k = key("g:busy", 1);
    let reporters: Vec<String> = (0..8).map(|i| format!("u{i}")).collect();
    let tasks: Vec<_> = reporters
        .iter()
        .map(|reporter| {
            let (store, k, reporter) = (Arc::clone(&store), k.clone(), reporter.clone());
            tokio::spawn(async move { add_report(store.as_ref(), &k, &reporter, 1).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.expect("task"), "each first report is recorded");
    }
    let item = store.review(&k).await.expect("read").expect("item");
    let mut got: Vec<_> = item.reports.into_iter().map(|r| r.reporter).collect();
    got.sort();
    assert_eq!(got, reporters);
}

pub async fn items_survive_a_reopen(factory: &dyn StoreFactory) {
    let k = key("g:kept", 3);
    {
        let store = factory.open().await;
        add_report(store.as_ref(), &k, "ann", 7).await;
        add_flag(store.as_ref(), &key("g:kept", 4), 80).await;
        resolve(store.as_ref(), &key("g:kept", 4), true, "system").await;
    }
    let store = factory.open().await;
    let item = store.review(&k).await.expect("read").expect("kept");
    assert_eq!(item.reports.len(), 1);
    assert_eq!(
        open_keys(store.as_ref(), None, 10).await,
        [("g:kept".to_owned(), 3)]
    );
    let removed = store
        .review(&key("g:kept", 4))
        .await
        .expect("read")
        .expect("kept");
    assert!(removed.resolution.expect("reviewed").removed);
}
