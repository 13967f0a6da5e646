//! A store that counts the calls made to another one, for tests that assert the cost of a
//! path by the number of store operations it makes (never by timing). It can also hold a
//! room's appends until the test lets them go (a write that is slow at the store), and apply
//! a room's next append but report it failed (a write whose acknowledgement was lost).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chatwire_protocol::v1;

use super::reviews::{ReviewChange, ReviewItem, ReviewKey, ReviewScope, ReviewUpdate, Reviews};
use super::store::{
    Accounts, AppendOutcome, Batch, Contacts, DedupeEntry, Directory, Head, HistoryQuery,
    MessagePage, PushToken, RetentionOutcome, RoomLog, RoomSnapshot, Store, StoreError, UserRoom,
};
use crate::chat::contacts::{ContactOp, ContactRow, ContactUpdate};
use crate::chat::ids::{RoomId, UserId};

/// Forwards every call to `inner` and counts it by operation name.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn Store>,
    calls: Mutex<HashMap<&'static str, usize>>,
    held: Mutex<HashMap<RoomId, Arc<tokio::sync::Semaphore>>>,
    lose_reply: Mutex<std::collections::HashSet<RoomId>>,
}

impl CountingStore {
    /// Counts the calls made to `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            calls: Mutex::default(),
            held: Mutex::default(),
            lose_reply: Mutex::default(),
        }
    }

    /// The next append to `room` is applied, then reported as [`StoreError::Unknown`] (the
    /// store's answer lost after the write, as when a ScyllaDB transaction applied but the
    /// materialization failed).
    pub fn lose_next_append_reply(&self, room: &RoomId) {
        self.lose_reply
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(room.clone());
    }

    /// Holds every append to `room` until the returned semaphore gets permits (one each).
    pub fn hold_appends(&self, room: &RoomId) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(room.clone(), Arc::clone(&gate));
        gate
    }

    /// How many times `operation` (a method name) was called.
    pub fn calls(&self, operation: &str) -> usize {
        self.lock().get(operation).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<&'static str, usize>> {
        self.calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn count(&self, operation: &'static str) -> &dyn Store {
        *self.lock().entry(operation).or_default() += 1;
        self.inner.as_ref()
    }
}

#[async_trait]
impl RoomLog for CountingStore {
    async fn load_room(&self, room: &RoomId) -> Result<Option<RoomSnapshot>, StoreError> {
        self.count("load_room").load_room(room).await
    }
    async fn head(&self, room: &RoomId) -> Result<Option<Head>, StoreError> {
        self.count("head").head(room).await
    }
    async fn append(
        &self,
        room: &RoomId,
        expected_seq: u64,
        batch: &Batch,
    ) -> Result<AppendOutcome, StoreError> {
        let gate = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(room)
            .cloned();
        if let Some(gate) = gate
            && let Ok(permit) = gate.acquire().await
        {
            permit.forget();
        }
        if batch.mark_outbox {
            self.count("append_marking_outbox");
        }
        let outcome = self.count("append").append(room, expected_seq, batch).await;
        let lose = self
            .lose_reply
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(room);
        match outcome {
            Ok(AppendOutcome::Applied) if lose => Err(StoreError::Unknown(
                "applied; the reply was lost (test)".into(),
            )),
            other => other,
        }
    }
    async fn read_events(
        &self,
        room: &RoomId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<v1::RoomEvent>, StoreError> {
        let store = self.count("read_events");
        store.read_events(room, after_seq, limit, max_bytes).await
    }
    async fn read_messages(
        &self,
        room: &RoomId,
        query: HistoryQuery,
    ) -> Result<MessagePage, StoreError> {
        self.count("read_messages").read_messages(room, query).await
    }
    async fn message(&self, room: &RoomId, seq: u64) -> Result<Option<v1::Message>, StoreError> {
        self.count("message").message(room, seq).await
    }
    async fn ordinal_at(&self, room: &RoomId, seq: u64) -> Result<u64, StoreError> {
        self.count("ordinal_at").ordinal_at(room, seq).await
    }
    async fn dedupe(
        &self,
        room: &RoomId,
        sender: &UserId,
        client_msg_id: &str,
        now_ms: i64,
    ) -> Result<Option<DedupeEntry>, StoreError> {
        let store = self.count("dedupe");
        store.dedupe(room, sender, client_msg_id, now_ms).await
    }
    async fn apply_retention(
        &self,
        room: &RoomId,
        keep_from_ms: i64,
    ) -> Result<RetentionOutcome, StoreError> {
        let store = self.count("apply_retention");
        store.apply_retention(room, keep_from_ms).await
    }
    async fn retained_from(&self, room: &RoomId) -> Result<u64, StoreError> {
        self.count("retained_from").retained_from(room).await
    }
    async fn reactions_of(
        &self,
        room: &RoomId,
        user: &UserId,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        let store = self.count("reactions_of");
        store.reactions_of(room, user, from_seq, to_seq).await
    }
    async fn outbox_marks(
        &self,
        shard: usize,
        shards: usize,
    ) -> Result<Vec<(RoomId, u64)>, StoreError> {
        self.count("outbox_marks").outbox_marks(shard, shards).await
    }
    async fn update_outbox(&self, marks: &[(RoomId, Option<u64>)]) -> Result<(), StoreError> {
        self.count("update_outbox").update_outbox(marks).await
    }
}

#[async_trait]
impl Directory for CountingStore {
    async fn room(&self, room: &RoomId) -> Result<Option<v1::Room>, StoreError> {
        self.count("room").room(room).await
    }
    async fn member(&self, room: &RoomId, user: &UserId) -> Result<Option<v1::Member>, StoreError> {
        self.count("member").member(room, user).await
    }
    async fn members(
        &self,
        room: &RoomId,
        after_user: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<v1::Member>, StoreError> {
        self.count("members").members(room, after_user, limit).await
    }
    async fn user_rooms(
        &self,
        user: &UserId,
        after_room: Option<&RoomId>,
        limit: usize,
    ) -> Result<Vec<UserRoom>, StoreError> {
        self.count("user_rooms")
            .user_rooms(user, after_room, limit)
            .await
    }
    async fn user_room(
        &self,
        user: &UserId,
        room: &RoomId,
    ) -> Result<Option<UserRoom>, StoreError> {
        self.count("user_room").user_room(user, room).await
    }
    async fn advance_watermarks(
        &self,
        user: &UserId,
        room: &RoomId,
        delivered_seq: u64,
        read: Option<(u64, u64)>,
    ) -> Result<Option<UserRoom>, StoreError> {
        let store = self.count("advance_watermarks");
        store
            .advance_watermarks(user, room, delivered_seq, read)
            .await
    }
    async fn set_mute(
        &self,
        user: &UserId,
        room: &RoomId,
        until_ms: i64,
    ) -> Result<Option<UserRoom>, StoreError> {
        self.count("set_mute").set_mute(user, room, until_ms).await
    }
}

#[async_trait]
impl Accounts for CountingStore {
    async fn block(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        self.count("block").block(user, other).await
    }
    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        self.count("unblock").unblock(user, other).await
    }
    async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        self.count("blocked").blocked(user).await
    }
    async fn either_blocked(&self, a: &UserId, b: &UserId) -> Result<bool, StoreError> {
        self.count("either_blocked").either_blocked(a, b).await
    }
    async fn register_push_token(&self, user: &UserId, token: PushToken) -> Result<(), StoreError> {
        let store = self.count("register_push_token");
        store.register_push_token(user, token).await
    }
    async fn unregister_push_token(&self, user: &UserId, token: &str) -> Result<(), StoreError> {
        let store = self.count("unregister_push_token");
        store.unregister_push_token(user, token).await
    }
    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>, StoreError> {
        self.count("push_tokens").push_tokens(user).await
    }
    async fn revoke_tokens_before(&self, user: &UserId, before_ms: i64) -> Result<(), StoreError> {
        let store = self.count("revoke_tokens_before");
        store.revoke_tokens_before(user, before_ms).await
    }
    async fn tokens_revoked_before(&self, user: &UserId) -> Result<Option<i64>, StoreError> {
        self.count("tokens_revoked_before")
            .tokens_revoked_before(user)
            .await
    }
}

#[async_trait]
impl Reviews for CountingStore {
    async fn review(&self, key: &ReviewKey) -> Result<Option<ReviewItem>, StoreError> {
        self.count("review").review(key).await
    }
    async fn update_review(
        &self,
        key: &ReviewKey,
        change: ReviewChange<'_>,
    ) -> Result<ReviewUpdate, StoreError> {
        self.count("update_review").update_review(key, change).await
    }
    async fn reviews(
        &self,
        scope: &ReviewScope,
        after: Option<&ReviewKey>,
        limit: usize,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        self.count("reviews").reviews(scope, after, limit).await
    }
}

// Issue 22: contacts.
#[async_trait]
impl Contacts for CountingStore {
    async fn update_contact(
        &self,
        actor: &UserId,
        other: &UserId,
        op: ContactOp,
        now_ms: i64,
    ) -> Result<ContactUpdate, StoreError> {
        self.count("update_contact")
            .update_contact(actor, other, op, now_ms)
            .await
    }
    async fn contact(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<ContactRow>, StoreError> {
        self.count("contact").contact(user, other).await
    }
    async fn list_contacts(
        &self,
        user: &UserId,
        state: Option<v1::ContactState>,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<(UserId, ContactRow)>, StoreError> {
        self.count("list_contacts")
            .list_contacts(user, state, after, limit)
            .await
    }
    async fn accepted_contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        self.count("accepted_contacts")
            .accepted_contacts(user)
            .await
    }
}
