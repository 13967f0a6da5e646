//! [`Reviews`] on ScyllaDB: every item in `reviews` (one partition per room, the item a prost
//! blob), changed by lightweight transactions (`IF NOT EXISTS`, `IF item = <what the change
//! saw>`); the open items in `open_reviews`, one partition (`part` 0: the queue is small, a
//! moderator's worklist, not a message stream).
//!
//! The index is not in the transaction. An item being opened is indexed before its
//! transaction, and a reviewed one unindexed after it; a listing reads each indexed item and
//! skips (and unindexes) reviewed ones. So a crash between the two leaves an extra index entry
//! that the next listing drops, never an open item missing from the queue.

use async_trait::async_trait;
use prost::Message as _;

use super::ScyllaStore;
use super::cql::{big, corrupt, unsigned};
use crate::backend::reviews::{
    ReviewChange, ReviewItem, ReviewKey, ReviewScope, ReviewUpdate, Reviews,
};
use crate::backend::store::StoreError;
use crate::chat::ids::RoomId;

fn decode(blob: &[u8]) -> Result<ReviewItem, StoreError> {
    ReviewItem::decode(blob).map_err(|e| corrupt(format!("review item: {e}")))
}

fn limit_of(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

impl ScyllaStore {
    /// The item and its stored bytes (what a compare-and-set compares).
    async fn review_row(&self, key: &ReviewKey) -> Result<Option<Vec<u8>>, StoreError> {
        let row: Option<(Vec<u8>,)> = self
            .inner
            .row(
                &self.inner.st.review_select,
                (key.room.as_str(), big(key.seq)),
            )
            .await?;
        Ok(row.map(|(blob,)| blob))
    }
}

#[async_trait]
impl Reviews for ScyllaStore {
    async fn review(&self, key: &ReviewKey) -> Result<Option<ReviewItem>, StoreError> {
        self.review_row(key)
            .await?
            .map(|blob| decode(&blob))
            .transpose()
    }

    async fn update_review(
        &self,
        key: &ReviewKey,
        change: ReviewChange<'_>,
    ) -> Result<ReviewUpdate, StoreError> {
        let (inner, st) = (&self.inner, &self.inner.st);
        let (room, seq) = (key.room.as_str(), big(key.seq));
        loop {
            let blob = self.review_row(key).await?;
            let seen = blob.as_deref().map(decode).transpose()?;
            let Some(new) = change(seen.as_ref()) else {
                return Ok(ReviewUpdate {
                    item: seen,
                    changed: false,
                });
            };
            if new.is_open() {
                inner.write(&st.open_review_insert, (room, seq)).await?;
            }
            let bytes = new.encode_to_vec();
            let applied = match &blob {
                None => inner.lwt(&st.review_create, (room, seq, &bytes)).await?,
                Some(old) => inner.lwt(&st.review_swap, (&bytes, room, seq, old)).await?,
            };
            if applied {
                if !new.is_open() {
                    inner.write(&st.open_review_delete, (room, seq)).await?;
                }
                return Ok(ReviewUpdate {
                    item: Some(new),
                    changed: true,
                });
            }
        }
    }

    async fn reviews(
        &self,
        scope: &ReviewScope,
        after: Option<&ReviewKey>,
        limit: usize,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        let (inner, st) = (&self.inner, &self.inner.st);
        if limit == 0 {
            return Ok(Vec::new());
        }
        match scope {
            ReviewScope::Room(room) => {
                let from = after.map_or(0, |key| big(key.seq));
                let rows: Vec<(Vec<u8>,)> = inner
                    .rows(&st.reviews_of_room, (room.as_str(), from, limit_of(limit)))
                    .await?;
                rows.iter().map(|(blob,)| decode(blob)).collect()
            }
            ReviewScope::Open => {
                let mut items = Vec::new();
                let mut cursor = after.cloned();
                // Reviewed items still indexed (see the module doc) are dropped and the next
                // rows read, so a page is full whenever enough items are open.
                loop {
                    let want = limit_of(limit.saturating_sub(items.len()));
                    let rows: Vec<(String, i64)> = match &cursor {
                        None => inner.rows(&st.open_reviews_first, (want,)).await?,
                        Some(key) => {
                            let values = (key.room.as_str(), big(key.seq), want);
                            inner.rows(&st.open_reviews_after, values).await?
                        }
                    };
                    let exhausted = rows.len() < usize::try_from(want).unwrap_or(usize::MAX);
                    for (room, seq) in rows {
                        let key = ReviewKey {
                            room: RoomId::parse(&room)
                                .map_err(|e| corrupt(format!("review room {room}: {e}")))?,
                            seq: unsigned(seq)?,
                        };
                        match self.review(&key).await? {
                            Some(item) if item.is_open() => items.push(item),
                            _ => {
                                inner
                                    .write(&st.open_review_delete, (room.as_str(), seq))
                                    .await?;
                            }
                        }
                        cursor = Some(key);
                    }
                    if exhausted || items.len() >= limit {
                        return Ok(items);
                    }
                }
            }
        }
    }
}
