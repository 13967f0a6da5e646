//! [`Contacts`] (issue 22): one row per side in `contacts`, both rows changed in one
//! transaction, so concurrent changes of a pair are serialized.

use std::ops::Bound;

use async_trait::async_trait;
use chatwire_protocol::v1;
use redb::{ReadableDatabase, ReadableTable};

use super::fail::{Fail, corrupt};
use super::tables::CONTACTS;
use super::{EmbeddedStore, Inner};
use crate::backend::store::{Contacts, StoreError};
use crate::chat::contacts::{ContactOp, ContactRow, ContactUpdate, transition};
use crate::chat::ids::UserId;

fn decode(state: i32, since_ms: i64) -> Result<ContactRow, Fail> {
    match v1::ContactState::try_from(state) {
        Ok(
            state @ (v1::ContactState::Outgoing
            | v1::ContactState::Incoming
            | v1::ContactState::Accepted),
        ) => Ok(ContactRow { state, since_ms }),
        _ => Err(corrupt(format!("stored contact state {state}"))),
    }
}

fn read_row(
    table: &impl ReadableTable<(&'static str, &'static str), (i32, i64)>,
    user: &str,
    other: &str,
) -> Result<Option<ContactRow>, Fail> {
    match table.get((user, other))? {
        Some(value) => {
            let (state, since_ms) = value.value();
            decode(state, since_ms).map(Some)
        }
        None => Ok(None),
    }
}

fn update(
    inner: &Inner,
    actor: &str,
    other: &str,
    op: ContactOp,
    now_ms: i64,
) -> Result<ContactUpdate, Fail> {
    let txn = inner.write()?;
    let update = {
        let mut table = txn.open_table(CONTACTS)?;
        let actor_before = read_row(&table, actor, other)?;
        let other_before = read_row(&table, other, actor)?;
        let (actor_after, other_after) = transition(op, actor_before, other_before, now_ms);
        for (user, peer, before, after) in [
            (actor, other, actor_before, actor_after),
            (other, actor, other_before, other_after),
        ] {
            if before == after {
                continue;
            }
            match after {
                Some(row) => {
                    table.insert((user, peer), (row.state as i32, row.since_ms))?;
                }
                None => {
                    table.remove((user, peer))?;
                }
            }
        }
        ContactUpdate {
            actor_before,
            other_before,
            actor_after,
            other_after,
        }
    };
    txn.commit()?;
    Ok(update)
}

fn one(inner: &Inner, user: &str, other: &str) -> Result<Option<ContactRow>, Fail> {
    let txn = inner.db.begin_read()?;
    let table = txn.open_table(CONTACTS)?;
    read_row(&table, user, other)
}

fn list(
    inner: &Inner,
    user: &str,
    state: Option<v1::ContactState>,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<(UserId, ContactRow)>, Fail> {
    let txn = inner.db.begin_read()?;
    let table = txn.open_table(CONTACTS)?;
    let start = match after {
        Some(after) => Bound::Excluded((user, after)),
        None => Bound::Included((user, "")),
    };
    let mut out = Vec::new();
    for entry in table.range((start, Bound::Unbounded))? {
        if out.len() >= limit {
            break;
        }
        let (key, value) = entry?;
        let (owner, other) = key.value();
        if owner != user {
            break;
        }
        let (raw_state, since_ms) = value.value();
        let row = decode(raw_state, since_ms)?;
        if state.is_some_and(|state| state != row.state) {
            continue;
        }
        let other =
            UserId::parse(other).map_err(|e| corrupt(format!("stored contact user: {e}")))?;
        out.push((other, row));
    }
    Ok(out)
}

#[async_trait]
impl Contacts for EmbeddedStore {
    async fn update_contact(
        &self,
        actor: &UserId,
        other: &UserId,
        op: ContactOp,
        now_ms: i64,
    ) -> Result<ContactUpdate, StoreError> {
        let (actor, other) = (actor.clone(), other.clone());
        self.run(move |inner| update(inner, actor.as_str(), other.as_str(), op, now_ms))
            .await
    }

    async fn contact(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<ContactRow>, StoreError> {
        let (user, other) = (user.clone(), other.clone());
        self.run(move |inner| one(inner, user.as_str(), other.as_str()))
            .await
    }

    async fn list_contacts(
        &self,
        user: &UserId,
        state: Option<v1::ContactState>,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<(UserId, ContactRow)>, StoreError> {
        let (user, after) = (user.clone(), after.cloned());
        self.run(move |inner| {
            list(
                inner,
                user.as_str(),
                state,
                after.as_ref().map(UserId::as_str),
                limit,
            )
        })
        .await
    }

    async fn accepted_contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let user = user.clone();
        self.run(move |inner| {
            list(
                inner,
                user.as_str(),
                Some(v1::ContactState::Accepted),
                None,
                usize::MAX,
            )
        })
        .await
        .map(|rows| rows.into_iter().map(|(user, _)| user).collect())
    }
}
