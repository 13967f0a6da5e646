//! [`Accounts`]: blocks, push tokens and token revocations.

use std::ops::Bound;

use async_trait::async_trait;
use redb::{ReadableDatabase, ReadableTable};

use super::fail::{Fail, corrupt};
use super::records::{PushTokenRecord, decode, encode};
use super::tables::{BLOCKS, PUSH_TOKENS, REVOCATIONS, USER_PUSH_TOKENS};
use super::{EmbeddedStore, Inner};
use crate::backend::store::{Accounts, PushToken, StoreError};
use crate::chat::ids::UserId;

fn set_block(inner: &Inner, user: &str, other: &str, blocked: bool) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut blocks = txn.open_table(BLOCKS)?;
        if blocked {
            blocks.insert((user, other), ())?;
        } else {
            blocks.remove((user, other))?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn blocked(inner: &Inner, user: &str) -> Result<Vec<UserId>, Fail> {
    let txn = inner.db.begin_read()?;
    let blocks = txn.open_table(BLOCKS)?;
    let mut others = Vec::new();
    for entry in blocks.range((Bound::Included((user, "")), Bound::Unbounded))? {
        let (key, _) = entry?;
        let (owner, other) = key.value();
        if owner != user {
            break;
        }
        others
            .push(UserId::parse(other).map_err(|e| corrupt(format!("stored blocked user: {e}")))?);
    }
    Ok(others)
}

fn either_blocked(inner: &Inner, a: &str, b: &str) -> Result<bool, Fail> {
    let txn = inner.db.begin_read()?;
    let blocks = txn.open_table(BLOCKS)?;
    Ok(blocks.get((a, b))?.is_some() || blocks.get((b, a))?.is_some())
}

/// Registers a token for `user`, taking it from its previous owner if any.
fn register(inner: &Inner, user: &str, token: &PushToken) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut owners = txn.open_table(PUSH_TOKENS)?;
        let mut per_user = txn.open_table(USER_PUSH_TOKENS)?;
        let previous = owners
            .insert(token.token.as_str(), user)?
            .map(|owner| owner.value().to_owned());
        if let Some(previous) = previous.filter(|owner| owner != user) {
            per_user.remove((previous.as_str(), token.token.as_str()))?;
        }
        let record = encode(&PushTokenRecord::from(token));
        per_user.insert((user, token.token.as_str()), record.as_slice())?;
    }
    txn.commit()?;
    Ok(())
}

/// Removes a token of `user`; a token owned by someone else is left alone.
fn unregister(inner: &Inner, user: &str, token: &str) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut owners = txn.open_table(PUSH_TOKENS)?;
        let owned = owners
            .get(token)?
            .is_some_and(|owner| owner.value() == user);
        if owned {
            owners.remove(token)?;
        }
        let mut per_user = txn.open_table(USER_PUSH_TOKENS)?;
        per_user.remove((user, token))?;
    }
    txn.commit()?;
    Ok(())
}

fn push_tokens(inner: &Inner, user: &str) -> Result<Vec<PushToken>, Fail> {
    let txn = inner.db.begin_read()?;
    let per_user = txn.open_table(USER_PUSH_TOKENS)?;
    let mut tokens = Vec::new();
    for entry in per_user.range((Bound::Included((user, "")), Bound::Unbounded))? {
        let (key, value) = entry?;
        if key.value().0 != user {
            break;
        }
        tokens.push(PushToken::try_from(decode::<PushTokenRecord>(
            value.value(),
        )?)?);
    }
    Ok(tokens)
}

/// Raises the user's revocation time to `before_ms` (never lowers it).
fn revoke(inner: &Inner, user: &str, before_ms: i64) -> Result<(), Fail> {
    let txn = inner.write()?;
    {
        let mut revocations = txn.open_table(REVOCATIONS)?;
        let current = revocations.get(user)?.map(|t| t.value());
        if current.is_none_or(|current| current < before_ms) {
            revocations.insert(user, before_ms)?;
        }
    }
    txn.commit()?;
    Ok(())
}

fn revoked_before(inner: &Inner, user: &str) -> Result<Option<i64>, Fail> {
    let txn = inner.db.begin_read()?;
    let revocations = txn.open_table(REVOCATIONS)?;
    Ok(revocations.get(user)?.map(|t| t.value()))
}

#[async_trait]
impl Accounts for EmbeddedStore {
    async fn block(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        let (user, other) = (user.clone(), other.clone());
        self.run(move |inner| set_block(inner, user.as_str(), other.as_str(), true))
            .await
    }

    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        let (user, other) = (user.clone(), other.clone());
        self.run(move |inner| set_block(inner, user.as_str(), other.as_str(), false))
            .await
    }

    async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let user = user.clone();
        self.run(move |inner| blocked(inner, user.as_str())).await
    }

    async fn either_blocked(&self, a: &UserId, b: &UserId) -> Result<bool, StoreError> {
        let (a, b) = (a.clone(), b.clone());
        self.run(move |inner| either_blocked(inner, a.as_str(), b.as_str()))
            .await
    }

    async fn register_push_token(&self, user: &UserId, token: PushToken) -> Result<(), StoreError> {
        let user = user.clone();
        self.run(move |inner| register(inner, user.as_str(), &token))
            .await
    }

    async fn unregister_push_token(&self, user: &UserId, token: &str) -> Result<(), StoreError> {
        let (user, token) = (user.clone(), token.to_owned());
        self.run(move |inner| unregister(inner, user.as_str(), &token))
            .await
    }

    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>, StoreError> {
        let user = user.clone();
        self.run(move |inner| push_tokens(inner, user.as_str()))
            .await
    }

    async fn revoke_tokens_before(&self, user: &UserId, before_ms: i64) -> Result<(), StoreError> {
        let user = user.clone();
        self.run(move |inner| revoke(inner, user.as_str(), before_ms))
            .await
    }

    async fn tokens_revoked_before(&self, user: &UserId) -> Result<Option<i64>, StoreError> {
        let user = user.clone();
        self.run(move |inner| revoked_before(inner, user.as_str()))
            .await
    }
}
