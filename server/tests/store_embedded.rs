//! The storage suite against the embedded (redb) store, each store in a fresh temporary folder,
//! plus the embedded store's own behaviours (the recorded bucket width, dedupe purging).
//!
//! ```sh
//! cargo test -p chatwire-server --test store_embedded
//! ```

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use chatwire_server::backend::embedded::{EmbeddedOptions, EmbeddedStore};
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
