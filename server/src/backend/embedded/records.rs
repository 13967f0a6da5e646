//! Stored values that have no protocol message of their own. They are prost messages too, so
//! they evolve by the same additive rules as the protocol's (new fields take new tags).

use chatwire_protocol::v1;

use super::fail::{Fail, corrupt};
use crate::backend::store::{DedupeEntry, PushToken, UserRoom};
use crate::chat::ids::RoomId;

/// A user's state in one room (`user_rooms`).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct UserRoomRecord {
    /// `v1::Role` as its wire number.
    #[prost(int32, tag = "1")]
    pub(super) role: i32,
    #[prost(uint64, tag = "2")]
    pub(super) joined_seq: u64,
    #[prost(uint64, tag = "3")]
    pub(super) read_seq: u64,
    #[prost(uint64, tag = "4")]
    pub(super) read_ordinal: u64,
    #[prost(uint64, tag = "5")]
    pub(super) delivered_seq: u64,
    #[prost(int64, tag = "6")]
    pub(super) muted_until_ms: i64,
}

impl UserRoomRecord {
    /// The public view, for `room`.
    pub(super) fn to_user_room(&self, room: &str) -> Result<UserRoom, Fail> {
        Ok(UserRoom {
            room_id: RoomId::parse(room).map_err(|e| corrupt(format!("stored room id: {e}")))?,
            role: v1::Role::try_from(self.role)
                .map_err(|_| corrupt(format!("stored role {}", self.role)))?,
            joined_seq: self.joined_seq,
            read_seq: self.read_seq,
            read_ordinal: self.read_ordinal,
            delivered_seq: self.delivered_seq,
            muted_until_ms: self.muted_until_ms,
        })
    }
}

/// A dedupe entry (`dedupe`).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct DedupeRecord {
    #[prost(uint64, tag = "1")]
    pub(super) seq: u64,
    #[prost(uint64, tag = "2")]
    pub(super) ordinal: u64,
    #[prost(int64, tag = "3")]
    pub(super) ts_ms: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub(super) content_hash: Vec<u8>,
    #[prost(int64, tag = "5")]
    pub(super) expires_at_ms: i64,
}

impl From<&DedupeEntry> for DedupeRecord {
    fn from(entry: &DedupeEntry) -> Self {
        Self {
            seq: entry.seq,
            ordinal: entry.ordinal,
            ts_ms: entry.ts_ms,
            content_hash: entry.content_hash.to_vec(),
            expires_at_ms: entry.expires_at_ms,
        }
    }
}

impl TryFrom<DedupeRecord> for DedupeEntry {
    type Error = Fail;

    fn try_from(record: DedupeRecord) -> Result<Self, Fail> {
        Ok(Self {
            seq: record.seq,
            ordinal: record.ordinal,
            ts_ms: record.ts_ms,
            content_hash: record
                .content_hash
                .as_slice()
                .try_into()
                .map_err(|_| corrupt("stored dedupe hash is not 32 bytes"))?,
            expires_at_ms: record.expires_at_ms,
        })
    }
}

/// A push token of a user (`user_push_tokens`).
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PushTokenRecord {
    /// `v1::PushPlatform` as its wire number.
    #[prost(int32, tag = "1")]
    pub(super) platform: i32,
    #[prost(string, tag = "2")]
    pub(super) token: String,
    #[prost(string, tag = "3")]
    pub(super) device_id: String,
}

impl From<&PushToken> for PushTokenRecord {
    fn from(token: &PushToken) -> Self {
        Self {
            platform: token.platform as i32,
            token: token.token.clone(),
            device_id: token.device_id.clone(),
        }
    }
}

impl TryFrom<PushTokenRecord> for PushToken {
    type Error = Fail;

    fn try_from(record: PushTokenRecord) -> Result<Self, Fail> {
        Ok(Self {
            platform: v1::PushPlatform::try_from(record.platform)
                .map_err(|_| corrupt(format!("stored push platform {}", record.platform)))?,
            token: record.token,
            device_id: record.device_id,
        })
    }
}

/// Decodes a stored prost value; a failure is [`StoreError::Corrupt`](crate::backend::store::StoreError::Corrupt).
pub(super) fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, Fail> {
    Ok(M::decode(bytes)?)
}

/// Encodes a value for storage.
pub(super) fn encode<M: prost::Message>(message: &M) -> Vec<u8> {
    message.encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_hash_is_corrupt() {
        let record = DedupeRecord {
            content_hash: vec![1, 2, 3],
            ..Default::default()
        };
        assert!(DedupeEntry::try_from(record).is_err());
    }

    #[test]
    fn unknown_role_is_corrupt() {
        let record = UserRoomRecord {
            role: 99,
            ..Default::default()
        };
        assert!(record.to_user_room("g:1").is_err());
        let decoded: UserRoomRecord = decode(&encode(&UserRoomRecord {
            role: 3,
            joined_seq: 4,
            ..Default::default()
        }))
        .expect("decodes");
        assert_eq!(decoded.joined_seq, 4);
    }
}
