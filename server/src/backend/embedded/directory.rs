//! [`Directory`]: rooms, members and per-user room state, plus the member writes of a batch.

use std::ops::Bound;

use async_trait::async_trait;
use chatwire_protocol::v1;
use redb::{ReadableDatabase, ReadableTable, Table};

use super::append::LogTables;
use super::fail::{Fail, corrupt};
use super::log::ordinal_at_in;
use super::records::{UserRoomRecord, decode, encode};
use super::tables::{MEMBERS, ROOMS, USER_ROOMS};
use super::{EmbeddedStore, Inner};
use crate::backend::store::{Directory, StoreError, UserRoom};
use crate::chat::ids::{RoomId, UserId};

type UserRoomTable<'txn> = Table<'txn, (&'static str, &'static str), &'static [u8]>;

/// Stores a membership; creates the user's room state when missing (watermarks just before the
/// join), and keeps the watermarks and mute of an existing one (a role change).
pub(super) fn put_member(
    tables: &mut LogTables<'_>,
    room: &str,
    member: &v1::Member,
) -> Result<(), Fail> {
    let user = UserId::parse(&member.user_id)
        .map_err(|e| corrupt(format!("member user id {:?}: {e}", member.user_id)))?;
    let user = user.as_str();
    tables
        .members
        .insert((room, user), encode(member).as_slice())?;
    let existing = read_record(&tables.user_rooms, user, room)?;
    let record = match existing {
        Some(record) => UserRoomRecord {
            role: member.role,
            joined_seq: member.joined_seq,
            ..record
        },
        None => {
            let watermark = member.joined_seq.saturating_sub(1);
            UserRoomRecord {
                role: member.role,
                joined_seq: member.joined_seq,
                read_seq: watermark,
                read_ordinal: ordinal_at_in(
                    &tables.messages,
                    &tables.starts,
                    tables.cut,
                    room,
                    watermark,
                )?,
                delivered_seq: watermark,
                muted_until_ms: 0,
            }
        }
    };
    tables
        .user_rooms
        .insert((user, room), encode(&record).as_slice())?;
    Ok(())
}

/// Moves watermarks forward (each field only up); reading moves delivery too. Returns the
/// state after, `None` when the user is not a member.
pub(super) fn raise_watermarks(
    user_rooms: &mut UserRoomTable<'_>,
    user: &str,
    room: &str,
    delivered_seq: u64,
    read: Option<(u64, u64)>,
) -> Result<Option<UserRoomRecord>, Fail> {
    let Some(mut record) = read_record(user_rooms, user, room)? else {
        return Ok(None);
    };
    let before = record.clone();
    record.delivered_seq = record.delivered_seq.max(delivered_seq);
    if let Some((read_seq, read_ordinal)) = read {
        record.read_seq = record.read_seq.max(read_seq);
        record.read_ordinal = record.read_ordinal.max(read_ordinal);
        record.delivered_seq = record.delivered_seq.max(read_seq);
    }
    if record != before {
        user_rooms.insert((user, room), encode(&record).as_slice())?;
    }
    Ok(Some(record))
}

fn read_record<T>(user_rooms: &T, user: &str, room: &str) -> Result<Option<UserRoomRecord>, Fail>
where
    T: ReadableTable<(&'static str, &'static str), &'static [u8]>,
{
    user_rooms
        .get((user, room))?
        .map(|row| decode::<UserRoomRecord>(row.value()))
        .transpose()
}

/// Runs `change` on a user's room state in a write transaction; `None` when not a member.
fn update_user_room<F>(inner: &Inner, room: &str, change: F) -> Result<Option<UserRoom>, Fail>
where
    F: FnOnce(&mut UserRoomTable<'_>) -> Result<Option<UserRoomRecord>, Fail>,
{
    let txn = inner.write()?;
    let record = {
        let mut user_rooms = txn.open_table(USER_ROOMS)?;
        change(&mut user_rooms)?
    };
    txn.commit()?;
    record.map(|r| r.to_user_room(room)).transpose()
}

fn members_page(
    inner: &Inner,
    room: &str,
    after_user: Option<&str>,
    limit: usize,
) -> Result<Vec<v1::Member>, Fail> {
    let txn = inner.db.begin_read()?;
    let members = txn.open_table(MEMBERS)?;
    let start = match after_user {
        Some(user) => Bound::Excluded((room, user)),
        None => Bound::Included((room, "")),
    };
    let mut page = Vec::new();
    for entry in members.range((start, Bound::Unbounded))? {
        if page.len() >= limit {
            break;
        }
        let (key, value) = entry?;
        if key.value().0 != room {
            break;
        }
        page.push(decode(value.value())?);
    }
    Ok(page)
}

fn user_rooms_page(
    inner: &Inner,
    user: &str,
    after_room: Option<&str>,
    limit: usize,
) -> Result<Vec<UserRoom>, Fail> {
    let txn = inner.db.begin_read()?;
    let user_rooms = txn.open_table(USER_ROOMS)?;
    let start = match after_room {
        Some(room) => Bound::Excluded((user, room)),
        None => Bound::Included((user, "")),
    };
    let mut page = Vec::new();
    for entry in user_rooms.range((start, Bound::Unbounded))? {
        if page.len() >= limit {
            break;
        }
        let (key, value) = entry?;
        let (owner, room) = key.value();
        if owner != user {
            break;
        }
        page.push(decode::<UserRoomRecord>(value.value())?.to_user_room(room)?);
    }
    Ok(page)
}

#[async_trait]
impl Directory for EmbeddedStore {
    async fn room(&self, room: &RoomId) -> Result<Option<v1::Room>, StoreError> {
        let room = room.clone();
        self.run(move |inner| {
            let txn = inner.db.begin_read()?;
            let rooms = txn.open_table(ROOMS)?;
            let row = rooms.get(room.as_str())?;
            row.map(|row| decode(row.value())).transpose()
        })
        .await
    }

    async fn member(&self, room: &RoomId, user: &UserId) -> Result<Option<v1::Member>, StoreError> {
        let (room, user) = (room.clone(), user.clone());
        self.run(move |inner| {
            let txn = inner.db.begin_read()?;
            let members = txn.open_table(MEMBERS)?;
            let row = members.get((room.as_str(), user.as_str()))?;
            row.map(|row| decode(row.value())).transpose()
        })
        .await
    }

    async fn members(
        &self,
        room: &RoomId,
        after_user: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<v1::Member>, StoreError> {
        let (room, after) = (room.clone(), after_user.cloned());
        self.run(move |inner| {
            members_page(
                inner,
                room.as_str(),
                after.as_ref().map(UserId::as_str),
                limit,
            )
        })
        .await
    }

    async fn user_rooms(
        &self,
        user: &UserId,
        after_room: Option<&RoomId>,
        limit: usize,
    ) -> Result<Vec<UserRoom>, StoreError> {
        let (user, after) = (user.clone(), after_room.cloned());
        self.run(move |inner| {
            user_rooms_page(
                inner,
                user.as_str(),
                after.as_ref().map(RoomId::as_str),
                limit,
            )
        })
        .await
    }

    async fn user_room(
        &self,
        user: &UserId,
        room: &RoomId,
    ) -> Result<Option<UserRoom>, StoreError> {
        let (user, room) = (user.clone(), room.clone());
        self.run(move |inner| {
            let txn = inner.db.begin_read()?;
            let user_rooms = txn.open_table(USER_ROOMS)?;
            read_record(&user_rooms, user.as_str(), room.as_str())?
                .map(|r| r.to_user_room(room.as_str()))
                .transpose()
        })
        .await
    }

    async fn advance_watermarks(
        &self,
        user: &UserId,
        room: &RoomId,
        delivered_seq: u64,
        read: Option<(u64, u64)>,
    ) -> Result<Option<UserRoom>, StoreError> {
        let (user, room) = (user.clone(), room.clone());
        self.run(move |inner| {
            update_user_room(inner, room.as_str(), |table| {
                raise_watermarks(table, user.as_str(), room.as_str(), delivered_seq, read)
            })
        })
        .await
    }

    async fn set_mute(
        &self,
        user: &UserId,
        room: &RoomId,
        until_ms: i64,
    ) -> Result<Option<UserRoom>, StoreError> {
        let (user, room) = (user.clone(), room.clone());
        self.run(move |inner| {
            update_user_room(inner, room.as_str(), |table| {
                let key = (user.as_str(), room.as_str());
                let Some(mut record) = read_record(table, key.0, key.1)? else {
                    return Ok(None);
                };
                record.muted_until_ms = until_ms;
                table.insert(key, encode(&record).as_slice())?;
                Ok(Some(record))
            })
        })
        .await
    }
}
