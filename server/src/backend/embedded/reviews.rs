//! [`Reviews`]: the moderation review queue in `reviews` (every item) and `open_reviews` (the
//! open ones), changed by compare-and-set: the change runs outside the write transaction,
//! which applies it only if the item is still what the change saw.

use std::ops::Bound;

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};

use super::fail::Fail;
use super::records::{decode, encode};
use super::tables::{OPEN_REVIEWS, REVIEWS};
use super::{EmbeddedStore, Inner};
use crate::backend::reviews::{
    ReviewChange, ReviewItem, ReviewKey, ReviewScope, ReviewUpdate, Reviews,
};
use crate::backend::store::StoreError;

fn read(inner: &Inner, room: &str, seq: u64) -> Result<Option<ReviewItem>, Fail> {
    let txn = inner.db.begin_read()?;
    let reviews = txn.open_table(REVIEWS)?;
    reviews
        .get((room, seq))?
        .map(|bytes| decode::<ReviewItem>(bytes.value()))
        .transpose()
}

/// Writes `new` if the item of `(room, seq)` is still `seen`; tells whether it did.
fn swap(inner: &Inner, seen: Option<&ReviewItem>, new: &ReviewItem) -> Result<bool, Fail> {
    let (room, seq) = (new.room_id.as_str(), new.seq);
    let txn = inner.write()?;
    {
        let mut reviews = txn.open_table(REVIEWS)?;
        let current = reviews
            .get((room, seq))?
            .map(|bytes| decode::<ReviewItem>(bytes.value()))
            .transpose()?;
        if current.as_ref() != seen {
            return Ok(false);
        }
        reviews.insert((room, seq), encode(new).as_slice())?;
        let mut open = txn.open_table(OPEN_REVIEWS)?;
        if new.is_open() {
            open.insert((room, seq), ())?;
        } else {
            open.remove((room, seq))?;
        }
    }
    txn.commit()?;
    Ok(true)
}

fn list(
    inner: &Inner,
    scope: &ReviewScope,
    after: Option<&ReviewKey>,
    limit: usize,
) -> Result<Vec<ReviewItem>, Fail> {
    let txn = inner.db.begin_read()?;
    let reviews = txn.open_table(REVIEWS)?;
    let mut items = Vec::new();
    let item = |room: &str, seq: u64| -> Result<Option<ReviewItem>, Fail> {
        reviews
            .get((room, seq))?
            .map(|bytes| decode::<ReviewItem>(bytes.value()))
            .transpose()
    };
    match scope {
        ReviewScope::Open => {
            let open = txn.open_table(OPEN_REVIEWS)?;
            let start = match after {
                Some(key) => Bound::Excluded((key.room.as_str(), key.seq)),
                None => Bound::Unbounded,
            };
            for entry in open.range::<(&str, u64)>((start, Bound::Unbounded))? {
                if items.len() >= limit {
                    break;
                }
                let (key, _) = entry?;
                let (room, seq) = key.value();
                items.extend(item(room, seq)?);
            }
        }
        ReviewScope::Room(room) => {
            let room = room.as_str();
            let from = after.map_or(0, |key| key.seq.saturating_add(1));
            for entry in reviews.range((room, from)..=(room, u64::MAX))? {
                if items.len() >= limit {
                    break;
                }
                items.push(decode::<ReviewItem>(entry?.1.value())?);
            }
        }
    }
    Ok(items)
}

#[async_trait]
impl Reviews for EmbeddedStore {
    async fn review(&self, key: &ReviewKey) -> Result<Option<ReviewItem>, StoreError> {
        let (room, seq) = (key.room.clone(), key.seq);
        self.run(move |inner| read(inner, room.as_str(), seq)).await
    }

    async fn update_review(
        &self,
        key: &ReviewKey,
        change: ReviewChange<'_>,
    ) -> Result<ReviewUpdate, StoreError> {
        loop {
            let seen = self.review(key).await?;
            let Some(new) = change(seen.as_ref()) else {
                return Ok(ReviewUpdate {
                    item: seen,
                    changed: false,
                });
            };
            let written = new.clone();
            if self
                .run(move |inner| swap(inner, seen.as_ref(), &written))
                .await?
            {
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
        let (scope, after) = (scope.clone(), after.cloned());
        self.run(move |inner| list(inner, &scope, after.as_ref(), limit))
            .await
    }
}
