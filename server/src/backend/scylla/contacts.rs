//! [`Contacts`] (issue 22): `contacts`, one partition per user with a row per other user. An
//! update reads both rows and writes those that changed (no transaction: of two concurrent
//! changes of one pair, the last write of each row wins; docs/architecture.md "Contacts").

use async_trait::async_trait;
use chatwire_protocol::v1;

use super::ScyllaStore;
use super::append::stored_user;
use super::cql::corrupt;
use crate::backend::store::{Contacts, StoreError};
use crate::chat::contacts::{ContactOp, ContactRow, ContactUpdate, transition};
use crate::chat::ids::UserId;

fn decode(state: i32, since_ms: i64) -> Result<ContactRow, StoreError> {
    match v1::ContactState::try_from(state) {
        Ok(
            state @ (v1::ContactState::Outgoing
            | v1::ContactState::Incoming
            | v1::ContactState::Accepted),
        ) => Ok(ContactRow { state, since_ms }),
        _ => Err(corrupt(format!("stored contact state {state}"))),
    }
}

impl ScyllaStore {
    async fn write_contact(
        &self,
        user: &UserId,
        other: &UserId,
        row: Option<ContactRow>,
    ) -> Result<(), StoreError> {
        let (inner, st) = (&self.inner, &self.inner.st);
        match row {
            Some(row) => {
                let values = (
                    user.as_str(),
                    other.as_str(),
                    row.state as i32,
                    row.since_ms,
                );
                inner.write(&st.contact_upsert, values).await?;
            }
            None => {
                inner
                    .write(&st.contact_delete, (user.as_str(), other.as_str()))
                    .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Contacts for ScyllaStore {
    async fn update_contact(
        &self,
        actor: &UserId,
        other: &UserId,
        op: ContactOp,
        now_ms: i64,
    ) -> Result<ContactUpdate, StoreError> {
        let actor_before = self.contact(actor, other).await?;
        let other_before = self.contact(other, actor).await?;
        let (actor_after, other_after) = transition(op, actor_before, other_before, now_ms);
        // The other side first: a failure between the two writes leaves the actor's row as it
        // was, and the actor's retry (every operation is idempotent) completes the change.
        if other_before != other_after {
            self.write_contact(other, actor, other_after).await?;
        }
        if actor_before != actor_after {
            self.write_contact(actor, other, actor_after).await?;
        }
        Ok(ContactUpdate {
            actor_before,
            other_before,
            actor_after,
            other_after,
        })
    }

    async fn contact(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<ContactRow>, StoreError> {
        let row: Option<(i32, i64)> = self
            .inner
            .row(
                &self.inner.st.contact_select,
                (user.as_str(), other.as_str()),
            )
            .await?;
        row.map(|(state, since_ms)| decode(state, since_ms))
            .transpose()
    }

    async fn list_contacts(
        &self,
        user: &UserId,
        state: Option<v1::ContactState>,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<(UserId, ContactRow)>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        let after = after.map_or("", UserId::as_str);
        self.inner
            .scan(
                &self.inner.st.contacts_after,
                (user.as_str(), after),
                |(other, raw_state, since_ms): (String, i32, i64)| {
                    let row = decode(raw_state, since_ms)?;
                    if state.is_none_or(|state| state == row.state) {
                        out.push((stored_user(&other)?, row));
                    }
                    Ok(out.len() < limit)
                },
            )
            .await?;
        Ok(out)
    }

    async fn accepted_contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let rows = self
            .list_contacts(user, Some(v1::ContactState::Accepted), None, usize::MAX)
            .await?;
        Ok(rows.into_iter().map(|(user, _)| user).collect())
    }
}
