//! The storage suite against the embedded (redb) store, each store in a fresh temporary folder,
//! plus the embedded store's own behaviours (the recorded bucket width, dedupe purging, the
//! rows a retention cut removes).
//!
//! ```sh
//! cargo test -p chatwire-server --test store_embedded
//! ```

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use chatwire_server::backend::embedded::{DEDUPE_PURGE_GRACE_MS, EmbeddedOptions, EmbeddedStore};
use chatwire_server::backend::store::{RoomLog, Store, Write};
use support::store_suite::{self, RoomScript, StoreFactory, apply, at, room_id, user};
use tempfile::TempDir;

/// A small bucket width, so tests spread events over many buckets.
const WIDTH_MS: i64 = 1_000;

/// One store per factory, in its own temporary folder (removed with the factory).
struct Embedded {
    dir: TempDir,
}

fn embedded() -> Embedded {
    Embedded {
        dir: TempDir::new().expect("temporary folder"),
    }
}

fn options(bucket_width_ms: i64) -> EmbeddedOptions {
    EmbeddedOptions {
        bucket_width_ms,
        ..EmbeddedOptions::default()
    }
}

#[async_trait]
impl StoreFactory for Embedded {
    fn bucket_width_ms(&self) -> i64 {
        WIDTH_MS
    }

    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(EmbeddedStore::open(self.dir.path(), options(WIDTH_MS)).expect("open store"))
    }
}

store_suite::store_suite_tests!(embedded);
support::contacts_suite::contacts_suite_tests!(embedded);

#[tokio::test]
async fn bucket_width_is_kept_from_metadata() {
    let factory = embedded();
    let (alice, room) = (user("alice"), room_id("g:width"));
    let mut script = RoomScript::new(&room);
    let first = store_suite::merge([
        script.create(at(&factory, 0, 0), &alice),
        script.send(at(&factory, 2, 0), &alice, "a", 0),
        script.send(at(&factory, 5, 0), &alice, "b", 0),
    ]);
    {
        let store = EmbeddedStore::open(factory.dir.path(), options(WIDTH_MS)).expect("open");
        assert_eq!(store.bucket_width_ms(), WIDTH_MS);
        apply(&store, &room, &first).await;
    }

    let store = EmbeddedStore::open(factory.dir.path(), options(3_600_000)).expect("reopen");
    assert_eq!(store.bucket_width_ms(), WIDTH_MS, "the recorded width wins");
    let second = script.send(at(&factory, 9, 0), &alice, "c", 0);
    apply(&store, &room, &second).await;
    let events = store
        .read_events(&room, 0, 100, usize::MAX)
        .await
        .expect("read");
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 2, 3, 4, 5]
    );
    let after = store
        .read_events(&room, 3, 1, usize::MAX)
        .await
        .expect("read");
    assert_eq!(after.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4]);
    assert_eq!(store.ordinal_at(&room, 4).await.expect("ordinal"), 2);
    assert_eq!(store.ordinal_at(&room, 5).await.expect("ordinal"), 3);
}

#[tokio::test]
async fn default_options_sync_hourly_buckets() {
    let defaults = EmbeddedOptions::default();
    assert_eq!(defaults.bucket_width_ms, 3_600_000);
    assert!(defaults.sync);
    let dir = TempDir::new().expect("temporary folder");
    let nested = dir.path().join("data").join("store");
    let store = EmbeddedStore::open(&nested, EmbeddedOptions::default()).expect("open");
    assert_eq!(store.bucket_width_ms(), 3_600_000);
    assert!(
        nested
            .join(chatwire_server::backend::embedded::FILE_NAME)
            .is_file()
    );
    assert!(EmbeddedStore::open(&dir.path().join("bad"), options(0)).is_err());
}

/// Issue 15 M3: appends forget expired dedupe entries as they write new ones, so the table
/// never grows past the entries still alive (plus a bounded backlog), with no sweeper.
#[tokio::test]
async fn appends_forget_expired_dedupe_entries() {
    let factory = embedded();
    let store = EmbeddedStore::open(factory.dir.path(), options(WIDTH_MS)).expect("open");
    let (alice, room) = (user("alice"), room_id("g:append-purge"));
    let mut script = RoomScript::new(&room);
    let create = script.create(at(&factory, 0, 0), &alice);
    apply(&store, &room, &create).await;
    let sent = at(&factory, 0, 10);
    // Four entries expiring at sent + 1000.
    let batch = store_suite::merge([
        script.send(sent, &alice, "a", 0),
        script.send(sent, &alice, "b", 0),
        script.send(sent, &alice, "c", 0),
        script.send(sent, &alice, "d", 0),
    ]);
    apply(&store, &room, &batch).await;
    // Two later sends, each writing one entry, forget two expired entries each (once the
    // grace for readers' clocks is over).
    let later = sent + 1000 + DEDUPE_PURGE_GRACE_MS;
    let first = script.send(later, &alice, "e", 0);
    apply(&store, &room, &first).await;
    let second = script.send(later, &alice, "f", 0);
    apply(&store, &room, &second).await;
    assert_eq!(
        store.purge_expired_dedupe(later).await.expect("purge"),
        0,
        "the appends already forgot every expired entry"
    );
    assert_eq!(
        store
            .dedupe(&room, &alice, "c3", sent)
            .await
            .expect("dedupe"),
        None,
        "an expired entry is gone even for a reader whose clock says it is alive"
    );
    for id in ["c7", "c8"] {
        let entry = store
            .dedupe(&room, &alice, id, later)
            .await
            .expect("dedupe");
        assert!(entry.is_some(), "{id} is alive");
    }
}

#[tokio::test]
async fn purge_forgets_expired_dedupe_entries() {
    let factory = embedded();
    let store = EmbeddedStore::open(factory.dir.path(), options(WIDTH_MS)).expect("open");
    let (alice, room) = (user("alice"), room_id("g:purge"));
    let mut script = RoomScript::new(&room);
    let create = script.create(at(&factory, 0, 0), &alice);
    apply(&store, &room, &create).await;
    let sent = at(&factory, 0, 10);
    // Entries c3, c4, c5 expire at sent + 1000, c6 is renewed to expire later.
    let batch = store_suite::merge([
        script.send(sent, &alice, "a", 0),
        script.send(sent, &alice, "b", 0),
        script.send(sent, &alice, "c", 0),
        script.send(sent, &alice, "d", 0),
    ]);
    apply(&store, &room, &batch).await;
    let mut renew = script.rename(sent, &alice, "r");
    renew.writes.push(Write::Dedupe {
        sender: alice.clone(),
        client_msg_id: "c6".to_owned(),
        entry: store_suite::dedupe_entry(6, 4, sent, sent + 5000),
    });
    apply(&store, &room, &renew).await;

    assert_eq!(
        store.purge_expired_dedupe(sent + 999).await.expect("purge"),
        0
    );
    assert_eq!(
        store
            .purge_expired_dedupe(sent + 1000)
            .await
            .expect("purge"),
        3
    );
    assert_eq!(
        store
            .purge_expired_dedupe(sent + 1000)
            .await
            .expect("purge"),
        0
    );
    for id in ["c3", "c4", "c5"] {
        let entry = store.dedupe(&room, &alice, id, sent).await.expect("dedupe");
        assert_eq!(entry, None, "{id} was purged");
    }
    let kept = store
        .dedupe(&room, &alice, "c6", sent)
        .await
        .expect("dedupe");
    assert_eq!(kept.map(|e| e.expires_at_ms), Some(sent + 5000));
    assert_eq!(
        store
            .purge_expired_dedupe(sent + 5000)
            .await
            .expect("purge"),
        1
    );
    assert_eq!(
        store
            .dedupe(&room, &alice, "c6", sent)
            .await
            .expect("dedupe"),
        None
    );
}

#[tokio::test]
async fn retention_removes_the_rows_of_dropped_buckets() {
    use redb::{ReadableDatabase, TableDefinition};
    const EVENTS: TableDefinition<'_, (&str, i64, u64), &[u8]> = TableDefinition::new("events");
    const MESSAGES: TableDefinition<'_, (&str, i64, u64), &[u8]> = TableDefinition::new("messages");
    const BUCKETS: TableDefinition<'_, (&str, i64), u64> = TableDefinition::new("buckets");
    const STARTS: TableDefinition<'_, (&str, u64), i64> = TableDefinition::new("bucket_starts");
    const EDITS: TableDefinition<'_, (&str, u64, u64), i64> = TableDefinition::new("edits");

    let factory = embedded();
    let (alice, room) = (user("alice"), room_id("g:rows"));
    let mut script = RoomScript::new(&room);
    let batch = store_suite::merge([
        script.create(at(&factory, 0, 0), &alice),        // 1, 2
        script.send(at(&factory, 0, 1), &alice, "a", 0),  // 3
        script.edit(at(&factory, 1, 0), &alice, 3, "a2"), // 4
        script.send(at(&factory, 2, 0), &alice, "b", 0),  // 5
        script.edit(at(&factory, 4, 0), &alice, 5, "b2"), // 6
        script.edit(at(&factory, 4, 1), &alice, 3, "a3"), // 7
        script.send(at(&factory, 4, 2), &alice, "c", 0),  // 8
    ]);
    {
        let store = EmbeddedStore::open(factory.dir.path(), options(WIDTH_MS)).expect("open");
        apply(&store, &room, &batch).await;
        let outcome = store
            .apply_retention(&room, at(&factory, 3, 0))
            .await
            .expect("retention");
        assert_eq!(
            (outcome.dropped_buckets, outcome.first_retained_seq),
            (3, 6)
        );
    }

    let db = redb::Database::open(
        factory
            .dir
            .path()
            .join(chatwire_server::backend::embedded::FILE_NAME),
    )
    .expect("open database");
    let txn = db.begin_read().expect("read");
    let room = room.as_str();
    let seqs = |table: TableDefinition<'_, (&str, i64, u64), &[u8]>| -> Vec<u64> {
        txn.open_table(table)
            .expect("table")
            .range((room, i64::MIN, 0)..=(room, i64::MAX, u64::MAX))
            .expect("range")
            .map(|row| row.expect("row").0.value().2)
            .collect()
    };
    assert_eq!(seqs(EVENTS), vec![6, 7, 8]);
    assert_eq!(seqs(MESSAGES), vec![8]);
    let buckets = txn.open_table(BUCKETS).expect("table");
    let firsts: Vec<u64> = buckets
        .range((room, i64::MIN)..=(room, i64::MAX))
        .expect("range")
        .map(|row| row.expect("row").1.value())
        .collect();
    assert_eq!(firsts, vec![6]);
    let starts = txn.open_table(STARTS).expect("table");
    let starts: Vec<u64> = starts
        .range((room, 0)..=(room, u64::MAX))
        .expect("range")
        .map(|row| row.expect("row").0.value().1)
        .collect();
    assert_eq!(starts, vec![6]);
    // The dropped edit (4) lost its row; the kept edits of dropped messages (6, 7) kept theirs.
    let edits = txn.open_table(EDITS).expect("table");
    let edits: Vec<(u64, u64)> = edits
        .range((room, 0, 0)..=(room, u64::MAX, u64::MAX))
        .expect("range")
        .map(|row| {
            let (key, _) = row.expect("row");
            let (_, target, edit) = key.value();
            (target, edit)
        })
        .collect();
    assert_eq!(edits, vec![(3, 7), (5, 6)]);
}

mod outbox {
    use super::embedded;
    crate::support::outbox_suite::outbox_suite_tests!(embedded);
}

mod reviews {
    use super::embedded;
    crate::support::reviews_suite::reviews_suite_tests!(embedded);
}
