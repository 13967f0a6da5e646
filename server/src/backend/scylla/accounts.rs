//! [`Accounts`]: blocks (`blocks`, one partition per user), push tokens (`push_tokens`: owner
//! of each token; `user_push_tokens`: each user's tokens in token order) and token
//! revocations (`revocations`, only moved forward).

use async_trait::async_trait;
use chatwire_protocol::v1;

use super::ScyllaStore;
use super::append::stored_user;
use super::cql::corrupt;
use crate::backend::store::{Accounts, PushToken, StoreError};
use crate::chat::ids::UserId;

#[async_trait]
impl Accounts for ScyllaStore {
    async fn block(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        let values = (user.as_str(), other.as_str());
        self.inner
            .write(&self.inner.st.block_insert, values)
            .await?;
        Ok(())
    }

    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        let values = (user.as_str(), other.as_str());
        self.inner
            .write(&self.inner.st.block_delete, values)
            .await?;
        Ok(())
    }

    async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        let rows: Vec<(String,)> = self
            .inner
            .rows(&self.inner.st.blocks_of, (user.as_str(),))
            .await?;
        rows.iter().map(|(other,)| stored_user(other)).collect()
    }

    async fn either_blocked(&self, a: &UserId, b: &UserId) -> Result<bool, StoreError> {
        let st = &self.inner.st.block_select;
        for (user, other) in [(a, b), (b, a)] {
            let row: Option<(String,)> =
                self.inner.row(st, (user.as_str(), other.as_str())).await?;
            if row.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn register_push_token(&self, user: &UserId, token: PushToken) -> Result<(), StoreError> {
        let (inner, st) = (&self.inner, &self.inner.st);
        let owner: Option<(String,)> = inner
            .row(&st.push_owner_select, (token.token.as_str(),))
            .await?;
        inner
            .write(&st.push_owner_insert, (token.token.as_str(), user.as_str()))
            .await?;
        if let Some((previous,)) = owner.filter(|(owner,)| owner != user.as_str()) {
            inner
                .write(
                    &st.user_push_delete,
                    (previous.as_str(), token.token.as_str()),
                )
                .await?;
        }
        let values = (
            user.as_str(),
            token.token.as_str(),
            token.platform as i32,
            token.device_id.as_str(),
        );
        inner.write(&st.user_push_insert, values).await?;
        Ok(())
    }

    async fn unregister_push_token(&self, user: &UserId, token: &str) -> Result<(), StoreError> {
        let (inner, st) = (&self.inner, &self.inner.st);
        let owner: Option<(String,)> = inner.row(&st.push_owner_select, (token,)).await?;
        if owner.is_some_and(|(owner,)| owner == user.as_str()) {
            inner.write(&st.push_owner_delete, (token,)).await?;
        }
        inner
            .write(&st.user_push_delete, (user.as_str(), token))
            .await?;
        Ok(())
    }

    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>, StoreError> {
        let rows: Vec<(String, Option<i32>, Option<String>)> = self
            .inner
            .rows(&self.inner.st.user_push_all, (user.as_str(),))
            .await?;
        rows.into_iter()
            .map(|(token, platform, device_id)| {
                let platform = platform.unwrap_or(0);
                Ok(PushToken {
                    platform: v1::PushPlatform::try_from(platform)
                        .map_err(|_| corrupt(format!("stored push platform {platform}")))?,
                    token,
                    device_id: device_id.unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn revoke_tokens_before(&self, user: &UserId, before_ms: i64) -> Result<(), StoreError> {
        let current = self.tokens_revoked_before(user).await?;
        if current.is_none_or(|current| current < before_ms) {
            let values = (user.as_str(), before_ms);
            self.inner
                .write(&self.inner.st.revocation_insert, values)
                .await?;
        }
        Ok(())
    }

    async fn tokens_revoked_before(&self, user: &UserId) -> Result<Option<i64>, StoreError> {
        let row: Option<(Option<i64>,)> = self
            .inner
            .row(&self.inner.st.revocation_select, (user.as_str(),))
            .await?;
        Ok(row.and_then(|(before,)| before))
    }
}
