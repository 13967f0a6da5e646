//! Rebuilding the index from the room log (`chatwire reindex`, and at start when the index is
//! new: a first start with search, a restored backup, a deleted index folder).

use std::sync::Arc;

use super::consumer::{apply, indexed};
use super::index::{Change, SearchIndex};
use crate::backend::store::{HistoryAnchor, HistoryQuery, Store};
use crate::chat::ids::RoomId;

/// Messages read per store call.
const PAGE: usize = 500;
/// Messages staged per commit (a commit makes a segment: fewer, larger ones index faster).
const COMMIT_EVERY: usize = 20_000;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Rooms read.
    pub rooms: usize,
    /// Messages indexed (deleted ones are not).
    pub messages: usize,
}

/// Empties the index, then indexes every retained, undeleted message of `rooms` in its
/// current state, committing every [`COMMIT_EVERY`] messages and at the end.
pub async fn rebuild(
    store: &dyn Store,
    index: &Arc<SearchIndex>,
    rooms: &[RoomId],
) -> Result<Rebuilt, String> {
    let clear = Arc::clone(index);
    tokio::task::spawn_blocking(move || clear.clear())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let mut done = Rebuilt::default();
    let mut pending: Vec<Change> = Vec::new();
    for room in rooms {
        done.rooms += 1;
        let mut after = 0;
        loop {
            let query = HistoryQuery {
                anchor: HistoryAnchor::After(after),
                min_seq: 1,
                limit: PAGE,
                max_bytes: usize::MAX,
                thread_root_seq: 0,
            };
            let page = store
                .read_messages(room, query)
                .await
                .map_err(|e| e.to_string())?;
            let Some(last) = page.messages.last().map(|m| m.seq) else {
                break;
            };
            after = last;
            let before = pending.len();
            pending.extend(
                page.messages
                    .into_iter()
                    .filter(|m| !m.deleted)
                    .map(|m| Change::Upsert(indexed(m))),
            );
            done.messages += pending.len() - before;
            if pending.len() >= COMMIT_EVERY {
                apply(index, std::mem::take(&mut pending)).await?;
            }
            if !page.has_more {
                break;
            }
        }
    }
    apply(index, pending).await?;
    Ok(done)
}

/// Lists every room of a store, for rebuilds.
#[async_trait::async_trait]
pub trait AllRooms: Send + Sync + std::fmt::Debug {
    /// Every room id.
    async fn room_ids(&self) -> Result<Vec<RoomId>, crate::backend::store::StoreError>;
}

#[async_trait::async_trait]
impl AllRooms for crate::backend::embedded::EmbeddedStore {
    async fn room_ids(&self) -> Result<Vec<RoomId>, crate::backend::store::StoreError> {
        crate::backend::embedded::EmbeddedStore::room_ids(self).await
    }
}

#[async_trait::async_trait]
impl AllRooms for crate::backend::scylla::ScyllaStore {
    async fn room_ids(&self) -> Result<Vec<RoomId>, crate::backend::store::StoreError> {
        crate::backend::scylla::ScyllaStore::room_ids(self).await
    }
}
