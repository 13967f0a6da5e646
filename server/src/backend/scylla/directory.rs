//! [`Directory`]: rooms, members and per-user room state, plus the member writes of a batch.
//!
//! `user_rooms` is partitioned by user and clustered by room id, so a user's rooms page in id
//! order from one partition. Watermark moves are read-modify-write (each field only up): two
//! racing moves of one user in one room may lose the lower one's effect, never move a mark
//! back below a value already read by both; the next move repairs it.

use async_trait::async_trait;
use chatwire_protocol::v1;

use super::append::stored_user;
use super::cql::{big, corrupt, unsigned};
use super::records::decode;
use super::retention::Cut;
use super::{Inner, ScyllaStore};
use crate::backend::store::{Directory, StoreError, UserRoom};
use crate::chat::ids::{RoomId, UserId};

/// The `user_rooms` columns read back.
type UserRoomColumns = (
    String,
    Option<i32>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

/// A row of `user_rooms`; `None` for a row without a role (a membership deleted while a
/// watermark move raced it).
fn to_user_room(row: UserRoomColumns) -> Result<Option<UserRoom>, StoreError> {
    let (room, role, joined, read, read_ordinal, delivered, muted) = row;
    let Some(role) = role else {
        return Ok(None);
    };
    let num = |v: Option<i64>| unsigned(v.unwrap_or(0));
    Ok(Some(UserRoom {
        room_id: RoomId::parse(&room).map_err(|e| corrupt(format!("stored room id: {e}")))?,
        role: v1::Role::try_from(role).map_err(|_| corrupt(format!("stored role {role}")))?,
        joined_seq: num(joined)?,
        read_seq: num(read)?,
        read_ordinal: num(read_ordinal)?,
        delivered_seq: num(delivered)?,
        muted_until_ms: muted.unwrap_or(0),
    }))
}

impl Inner {
    async fn read_user_room(&self, user: &str, room: &str) -> Result<Option<UserRoom>, StoreError> {
        let row: Option<UserRoomColumns> =
            self.row(&self.st.user_room_select, (user, room)).await?;
        Ok(row.map(to_user_room).transpose()?.flatten())
    }

    /// Stores a membership; creates the user's room state when missing (watermarks just
    /// before the join, with the ordinal there) and keeps the watermarks and mute of an
    /// existing one (a role change).
    pub(super) async fn put_member(
        &self,
        room: &str,
        cut: Cut,
        member: &v1::Member,
    ) -> Result<(), StoreError> {
        let user = stored_user(&member.user_id)?;
        let user = user.as_str();
        let bytes = prost::Message::encode_to_vec(member);
        self.write(&self.st.member_insert, (room, user, bytes))
            .await?;
        let joined = big(member.joined_seq);
        if self.read_user_room(user, room).await?.is_some() {
            let values = (member.role, joined, user, room);
            self.write(&self.st.user_room_membership, values).await?;
            return Ok(());
        }
        let watermark = member.joined_seq.saturating_sub(1);
        let ordinal = self.ordinal_at(room, cut, watermark).await?;
        let values = (
            user,
            room,
            member.role,
            joined,
            big(watermark),
            big(ordinal),
            big(watermark),
            0_i64,
        );
        self.write(&self.st.user_room_insert, values).await?;
        Ok(())
    }

    /// Moves watermarks forward (each field only up); reading moves delivery too. Returns
    /// the state after, `None` when the user is not a member.
    pub(super) async fn raise_watermarks(
        &self,
        user: &str,
        room: &str,
        delivered_seq: u64,
        read: Option<(u64, u64)>,
    ) -> Result<Option<UserRoom>, StoreError> {
        let Some(mut state) = self.read_user_room(user, room).await? else {
            return Ok(None);
        };
        let before = state.clone();
        state.delivered_seq = state.delivered_seq.max(delivered_seq);
        if let Some((read_seq, read_ordinal)) = read {
            state.read_seq = state.read_seq.max(read_seq);
            state.read_ordinal = state.read_ordinal.max(read_ordinal);
            state.delivered_seq = state.delivered_seq.max(read_seq);
        }
        if state != before {
            let values = (
                big(state.delivered_seq),
                big(state.read_seq),
                big(state.read_ordinal),
                user,
                room,
            );
            self.write(&self.st.user_room_marks, values).await?;
        }
        Ok(Some(state))
    }
}

#[async_trait]
impl Directory for ScyllaStore {
    async fn room(&self, room: &RoomId) -> Result<Option<v1::Room>, StoreError> {
        let row: Option<(Vec<u8>,)> = self
            .inner
            .row(&self.inner.st.room_select, (room.as_str(),))
            .await?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }

    async fn member(&self, room: &RoomId, user: &UserId) -> Result<Option<v1::Member>, StoreError> {
        let row: Option<(Vec<u8>,)> = self
            .inner
            .row(&self.inner.st.member_select, (room.as_str(), user.as_str()))
            .await?;
        row.map(|(bytes,)| decode(&bytes)).transpose()
    }

    async fn members(
        &self,
        room: &RoomId,
        after_user: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<v1::Member>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let st = &self.inner.st;
        let rows: Vec<(Vec<u8>,)> = match after_user {
            Some(after) => {
                let values = (room.as_str(), after.as_str(), limit);
                self.inner.rows(&st.members_after, values).await?
            }
            None => {
                let values = (room.as_str(), limit);
                self.inner.rows(&st.members_first, values).await?
            }
        };
        rows.iter().map(|(bytes,)| decode(bytes)).collect()
    }

    async fn user_rooms(
        &self,
        user: &UserId,
        after_room: Option<&RoomId>,
        limit: usize,
    ) -> Result<Vec<UserRoom>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let cql_limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let st = &self.inner.st;
        let rows: Vec<UserRoomColumns> = match after_room {
            Some(after) => {
                let values = (user.as_str(), after.as_str(), cql_limit);
                self.inner.rows(&st.user_rooms_after, values).await?
            }
            None => {
                let values = (user.as_str(), cql_limit);
                self.inner.rows(&st.user_rooms_first, values).await?
            }
        };
        let mut page = Vec::with_capacity(rows.len());
        for row in rows {
            page.extend(to_user_room(row)?);
        }
        Ok(page)
    }

    async fn user_room(
        &self,
        user: &UserId,
        room: &RoomId,
    ) -> Result<Option<UserRoom>, StoreError> {
        self.inner
            .read_user_room(user.as_str(), room.as_str())
            .await
    }

    async fn advance_watermarks(
        &self,
        user: &UserId,
        room: &RoomId,
        delivered_seq: u64,
        read: Option<(u64, u64)>,
    ) -> Result<Option<UserRoom>, StoreError> {
        self.inner
            .raise_watermarks(user.as_str(), room.as_str(), delivered_seq, read)
            .await
    }

    async fn set_mute(
        &self,
        user: &UserId,
        room: &RoomId,
        until_ms: i64,
    ) -> Result<Option<UserRoom>, StoreError> {
        let (user, room) = (user.as_str(), room.as_str());
        let Some(mut state) = self.inner.read_user_room(user, room).await? else {
            return Ok(None);
        };
        self.inner
            .write(&self.inner.st.user_room_mute, (until_ms, user, room))
            .await?;
        state.muted_until_ms = until_ms;
        Ok(Some(state))
    }
}
