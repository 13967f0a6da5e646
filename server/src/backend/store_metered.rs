//! A store that times every call made to another one and counts its failures, by backend
//! and operation (`chatwire_store_operation_seconds`, `chatwire_store_errors_total`).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chatwire_protocol::v1;

use super::reviews::{ReviewChange, ReviewItem, ReviewKey, ReviewScope, ReviewUpdate, Reviews};
use super::store::{
    Accounts, AppendOutcome, Batch, Contacts, DedupeEntry, Directory, Head, HistoryQuery,
    MessagePage, PushToken, RetentionOutcome, RoomLog, RoomSnapshot, Store, StoreError, UserRoom,
};
use crate::chat::contacts::{ContactOp, ContactRow, ContactUpdate};
use crate::chat::ids::{RoomId, UserId};

/// Every operation, by the name it has in the metrics' `op` label.
const OPERATIONS: [&str; 33] = [
    "load_room",
    "head",
    "append",
    "read_events",
    "read_messages",
    "message",
    "ordinal_at",
    "dedupe",
    "apply_retention",
    "retained_from",
    "room",
    "member",
    "members",
    "user_rooms",
    "user_room",
    "advance_watermarks",
    "set_mute",
    "block",
    "unblock",
    "blocked",
    "either_blocked",
    "register_push_token",
    "unregister_push_token",
    "push_tokens",
    "revoke_tokens_before",
    "tokens_revoked_before",
    "update_contact",
    "contact",
    "list_contacts",
    "accepted_contacts",
    "review",
    "update_review",
    "reviews",
];

/// Forwards every call to `inner`, timed, labelled with `backend`.
#[derive(Debug)]
pub struct MeteredStore {
    inner: Arc<dyn Store>,
    backend: &'static str,
}

impl MeteredStore {
    /// Times the calls made to `inner`, a store of `backend` (`embedded`, `scylla`).
    pub fn new(inner: Arc<dyn Store>, backend: &'static str) -> Self {
        // Every error series exists from the start, at zero.
        for op in OPERATIONS {
            crate::telemetry::store_errors_known(backend, op);
        }
        Self { inner, backend }
    }

    async fn timed<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call.await;
        let seconds = started.elapsed().as_secs_f64();
        crate::telemetry::store_op(self.backend, op, seconds, result.is_err());
        result
    }
}

#[async_trait]
impl RoomLog for MeteredStore {
    async fn load_room(&self, room: &RoomId) -> Result<Option<RoomSnapshot>, StoreError> {
        self.timed("load_room", self.inner.load_room(room)).await
    }
    async fn head(&self, room: &RoomId) -> Result<Option<Head>, StoreError> {
        self.timed("head", self.inner.head(room)).await
    }
    async fn append(
        &self,
        room: &RoomId,
        expected_seq: u64,
        batch: &Batch,
    ) -> Result<AppendOutcome, StoreError> {
        self.timed("append", self.inner.append(room, expected_seq, batch))
            .await
    }
    async fn read_events(
        &self,
        room: &RoomId,
        after_seq: u64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<v1::RoomEvent>, StoreError> {
        self.timed(
            "read_events",
            self.inner.read_events(room, after_seq, limit, max_bytes),
        )
        .await
    }
    async fn read_messages(
        &self,
        room: &RoomId,
        query: HistoryQuery,
    ) -> Result<MessagePage, StoreError> {
        self.timed("read_messages", self.inner.read_messages(room, query))
            .await
    }
    async fn message(&self, room: &RoomId, seq: u64) -> Result<Option<v1::Message>, StoreError> {
        self.timed("message", self.inner.message(room, seq)).await
    }
    async fn ordinal_at(&self, room: &RoomId, seq: u64) -> Result<u64, StoreError> {
        self.timed("ordinal_at", self.inner.ordinal_at(room, seq))
            .await
    }
    async fn dedupe(
        &self,
        room: &RoomId,
        sender: &UserId,
        client_msg_id: &str,
        now_ms: i64,
    ) -> Result<Option<DedupeEntry>, StoreError> {
        self.timed(
            "dedupe",
            self.inner.dedupe(room, sender, client_msg_id, now_ms),
        )
        .await
    }
    async fn apply_retention(
        &self,
        room: &RoomId,
        keep_from_ms: i64,
    ) -> Result<RetentionOutcome, StoreError> {
        self.timed(
            "apply_retention",
            self.inner.apply_retention(room, keep_from_ms),
        )
        .await
    }
    async fn retained_from(&self, room: &RoomId) -> Result<u64, StoreError> {
        self.timed("retained_from", self.inner.retained_from(room))
            .await
    }
    async fn reactions_of(
        &self,
        room: &RoomId,
        user: &UserId,
        from_seq: u64,
        to_seq: u64,
    ) -> Result<Vec<(u64, String)>, StoreError> {
        self.timed(
            "reactions_of",
            self.inner.reactions_of(room, user, from_seq, to_seq),
        )
        .await
    }
    async fn outbox_marks(
        &self,
        shard: usize,
        shards: usize,
    ) -> Result<Vec<(RoomId, u64)>, StoreError> {
        self.timed("outbox_marks", self.inner.outbox_marks(shard, shards))
            .await
    }
    async fn update_outbox(&self, marks: &[(RoomId, Option<u64>)]) -> Result<(), StoreError> {
        self.timed("update_outbox", self.inner.update_outbox(marks))
            .await
    }
}

#[async_trait]
impl Directory for MeteredStore {
    async fn room(&self, room: &RoomId) -> Result<Option<v1::Room>, StoreError> {
        self.timed("room", self.inner.room(room)).await
    }
    async fn member(&self, room: &RoomId, user: &UserId) -> Result<Option<v1::Member>, StoreError> {
        self.timed("member", self.inner.member(room, user)).await
    }
    async fn members(
        &self,
        room: &RoomId,
        after_user: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<v1::Member>, StoreError> {
        self.timed("members", self.inner.members(room, after_user, limit))
            .await
    }
    async fn user_rooms(
        &self,
        user: &UserId,
        after_room: Option<&RoomId>,
        limit: usize,
    ) -> Result<Vec<UserRoom>, StoreError> {
        self.timed("user_rooms", self.inner.user_rooms(user, after_room, limit))
            .await
    }
    async fn user_room(
        &self,
        user: &UserId,
        room: &RoomId,
    ) -> Result<Option<UserRoom>, StoreError> {
        self.timed("user_room", self.inner.user_room(user, room))
            .await
    }
    async fn advance_watermarks(
        &self,
        user: &UserId,
        room: &RoomId,
        delivered_seq: u64,
        read: Option<(u64, u64)>,
    ) -> Result<Option<UserRoom>, StoreError> {
        self.timed(
            "advance_watermarks",
            self.inner
                .advance_watermarks(user, room, delivered_seq, read),
        )
        .await
    }
    async fn set_mute(
        &self,
        user: &UserId,
        room: &RoomId,
        until_ms: i64,
    ) -> Result<Option<UserRoom>, StoreError> {
        self.timed("set_mute", self.inner.set_mute(user, room, until_ms))
            .await
    }
}

#[async_trait]
impl Accounts for MeteredStore {
    async fn block(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        self.timed("block", self.inner.block(user, other)).await
    }
    async fn unblock(&self, user: &UserId, other: &UserId) -> Result<(), StoreError> {
        self.timed("unblock", self.inner.unblock(user, other)).await
    }
    async fn blocked(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        self.timed("blocked", self.inner.blocked(user)).await
    }
    async fn either_blocked(&self, a: &UserId, b: &UserId) -> Result<bool, StoreError> {
        self.timed("either_blocked", self.inner.either_blocked(a, b))
            .await
    }
    async fn register_push_token(&self, user: &UserId, token: PushToken) -> Result<(), StoreError> {
        self.timed(
            "register_push_token",
            self.inner.register_push_token(user, token),
        )
        .await
    }
    async fn unregister_push_token(&self, user: &UserId, token: &str) -> Result<(), StoreError> {
        self.timed(
            "unregister_push_token",
            self.inner.unregister_push_token(user, token),
        )
        .await
    }
    async fn push_tokens(&self, user: &UserId) -> Result<Vec<PushToken>, StoreError> {
        self.timed("push_tokens", self.inner.push_tokens(user))
            .await
    }
    async fn revoke_tokens_before(&self, user: &UserId, before_ms: i64) -> Result<(), StoreError> {
        self.timed(
            "revoke_tokens_before",
            self.inner.revoke_tokens_before(user, before_ms),
        )
        .await
    }
    async fn tokens_revoked_before(&self, user: &UserId) -> Result<Option<i64>, StoreError> {
        self.timed(
            "tokens_revoked_before",
            self.inner.tokens_revoked_before(user),
        )
        .await
    }
}

#[async_trait]
impl Reviews for MeteredStore {
    async fn review(&self, key: &ReviewKey) -> Result<Option<ReviewItem>, StoreError> {
        self.timed("review", self.inner.review(key)).await
    }
    async fn update_review(
        &self,
        key: &ReviewKey,
        change: ReviewChange<'_>,
    ) -> Result<ReviewUpdate, StoreError> {
        self.timed("update_review", self.inner.update_review(key, change))
            .await
    }
    async fn reviews(
        &self,
        scope: &ReviewScope,
        after: Option<&ReviewKey>,
        limit: usize,
    ) -> Result<Vec<ReviewItem>, StoreError> {
        self.timed("reviews", self.inner.reviews(scope, after, limit))
            .await
    }
}

// Issue 22: contacts.
#[async_trait]
impl Contacts for MeteredStore {
    async fn update_contact(
        &self,
        actor: &UserId,
        other: &UserId,
        op: ContactOp,
        now_ms: i64,
    ) -> Result<ContactUpdate, StoreError> {
        self.timed(
            "update_contact",
            self.inner.update_contact(actor, other, op, now_ms),
        )
        .await
    }
    async fn contact(
        &self,
        user: &UserId,
        other: &UserId,
    ) -> Result<Option<ContactRow>, StoreError> {
        self.timed("contact", self.inner.contact(user, other)).await
    }
    async fn list_contacts(
        &self,
        user: &UserId,
        state: Option<v1::ContactState>,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<(UserId, ContactRow)>, StoreError> {
        self.timed(
            "list_contacts",
            self.inner.list_contacts(user, state, after, limit),
        )
        .await
    }
    async fn accepted_contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        self.timed("accepted_contacts", self.inner.accepted_contacts(user))
            .await
    }
}
