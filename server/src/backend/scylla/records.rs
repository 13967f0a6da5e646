//! The `pending` blob of a head row: one writer batch, encoded with prost so that anyone can
//! roll it forward after the writer crashed. Prost messages evolve by the protocol's additive
//! rules (new fields take new tags).

use chatwire_protocol::v1;

use super::cql::corrupt;
use crate::backend::store::{Batch, DedupeEntry, Head, StoreError, Write};
use crate::chat::ids::UserId;

/// A [`Batch`] as stored in `heads.pending`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PendingBatch {
    #[prost(uint64, tag = "1")]
    head_seq: u64,
    #[prost(uint64, tag = "2")]
    head_ordinal: u64,
    #[prost(int64, tag = "3")]
    head_ts_ms: i64,
    #[prost(message, repeated, tag = "4")]
    events: Vec<v1::RoomEvent>,
    #[prost(message, repeated, tag = "5")]
    writes: Vec<WriteRecord>,
}

/// One [`Write`].
#[derive(Clone, PartialEq, prost::Message)]
struct WriteRecord {
    #[prost(oneof = "WriteKind", tags = "1, 2, 3, 4, 5, 6, 7, 8")]
    kind: Option<WriteKind>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum WriteKind {
    #[prost(message, tag = "1")]
    Room(v1::Room),
    #[prost(message, tag = "2")]
    Member(v1::Member),
    #[prost(string, tag = "3")]
    RemoveMember(String),
    #[prost(message, tag = "4")]
    Message(v1::Message),
    #[prost(uint64, tag = "5")]
    Redact(u64),
    #[prost(message, tag = "6")]
    Dedupe(DedupeWrite),
    #[prost(message, tag = "7")]
    ReadUpTo(ReadUpToWrite),
    #[prost(message, tag = "8")]
    Reaction(ReactionWrite),
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReactionWrite {
    #[prost(string, tag = "1")]
    user: String,
    #[prost(uint64, tag = "2")]
    target_seq: u64,
    #[prost(string, tag = "3")]
    emoji: String,
    #[prost(bool, tag = "4")]
    added: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct DedupeWrite {
    #[prost(string, tag = "1")]
    sender: String,
    #[prost(string, tag = "2")]
    client_msg_id: String,
    #[prost(uint64, tag = "3")]
    seq: u64,
    #[prost(uint64, tag = "4")]
    ordinal: u64,
    #[prost(int64, tag = "5")]
    ts_ms: i64,
    #[prost(bytes = "vec", tag = "6")]
    content_hash: Vec<u8>,
    #[prost(int64, tag = "7")]
    expires_at_ms: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ReadUpToWrite {
    #[prost(string, tag = "1")]
    user: String,
    #[prost(uint64, tag = "2")]
    seq: u64,
    #[prost(uint64, tag = "3")]
    ordinal: u64,
}

/// Encodes a batch for the head row.
pub(super) fn encode_batch(batch: &Batch) -> Vec<u8> {
    let writes = batch
        .writes
        .iter()
        .map(|write| WriteRecord {
            kind: Some(match write {
                Write::Room(room) => WriteKind::Room(room.clone()),
                Write::Member(member) => WriteKind::Member(member.clone()),
                Write::RemoveMember(user) => WriteKind::RemoveMember(user.as_str().to_owned()),
                Write::Message(message) => WriteKind::Message(message.clone()),
                Write::Redact { target_seq } => WriteKind::Redact(*target_seq),
                Write::Dedupe {
                    sender,
                    client_msg_id,
                    entry,
                } => WriteKind::Dedupe(DedupeWrite {
                    sender: sender.as_str().to_owned(),
                    client_msg_id: client_msg_id.clone(),
                    seq: entry.seq,
                    ordinal: entry.ordinal,
                    ts_ms: entry.ts_ms,
                    content_hash: entry.content_hash.to_vec(),
                    expires_at_ms: entry.expires_at_ms,
                }),
                Write::ReadUpTo { user, seq, ordinal } => WriteKind::ReadUpTo(ReadUpToWrite {
                    user: user.as_str().to_owned(),
                    seq: *seq,
                    ordinal: *ordinal,
                }),
                Write::Reaction {
                    user,
                    target_seq,
                    emoji,
                    added,
                } => WriteKind::Reaction(ReactionWrite {
                    user: user.as_str().to_owned(),
                    target_seq: *target_seq,
                    emoji: emoji.clone(),
                    added: *added,
                }),
            }),
        })
        .collect();
    prost::Message::encode_to_vec(&PendingBatch {
        head_seq: batch.head.seq,
        head_ordinal: batch.head.ordinal,
        head_ts_ms: batch.head.ts_ms,
        events: batch.events.clone(),
        writes,
    })
}

fn user(raw: &str) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(|e| corrupt(format!("pending batch user {raw:?}: {e}")))
}

/// Decodes a pending batch.
pub(super) fn decode_batch(bytes: &[u8]) -> Result<Batch, StoreError> {
    let pending: PendingBatch = prost::Message::decode(bytes).map_err(corrupt)?;
    let mut writes = Vec::with_capacity(pending.writes.len());
    for record in pending.writes {
        let kind = record
            .kind
            .ok_or_else(|| corrupt("pending batch write without a kind"))?;
        writes.push(match kind {
            WriteKind::Room(room) => Write::Room(room),
            WriteKind::Member(member) => Write::Member(member),
            WriteKind::RemoveMember(raw) => Write::RemoveMember(user(&raw)?),
            WriteKind::Message(message) => Write::Message(message),
            WriteKind::Redact(target_seq) => Write::Redact { target_seq },
            WriteKind::Dedupe(d) => Write::Dedupe {
                sender: user(&d.sender)?,
                client_msg_id: d.client_msg_id,
                entry: DedupeEntry {
                    seq: d.seq,
                    ordinal: d.ordinal,
                    ts_ms: d.ts_ms,
                    content_hash: d
                        .content_hash
                        .as_slice()
                        .try_into()
                        .map_err(|_| corrupt("pending dedupe hash is not 32 bytes"))?,
                    expires_at_ms: d.expires_at_ms,
                },
            },
            WriteKind::ReadUpTo(r) => Write::ReadUpTo {
                user: user(&r.user)?,
                seq: r.seq,
                ordinal: r.ordinal,
            },
            WriteKind::Reaction(r) => Write::Reaction {
                user: user(&r.user)?,
                target_seq: r.target_seq,
                emoji: r.emoji,
                added: r.added,
            },
        });
    }
    Ok(Batch {
        head: Head {
            seq: pending.head_seq,
            ordinal: pending.head_ordinal,
            ts_ms: pending.head_ts_ms,
        },
        events: pending.events,
        writes,
        // The mark is written before the transaction; a pending batch never needs it again.
        mark_outbox: false,
    })
}

/// Decodes a stored prost value.
pub(super) fn decode<M: prost::Message + Default>(bytes: &[u8]) -> Result<M, StoreError> {
    M::decode(bytes).map_err(|e| corrupt(format!("undecodable stored value: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let alice = UserId::parse("alice").expect("id");
        let batch = Batch {
            head: Head {
                seq: 3,
                ordinal: 1,
                ts_ms: 7,
            },
            events: vec![v1::RoomEvent {
                seq: 3,
                ..Default::default()
            }],
            writes: vec![
                Write::Redact { target_seq: 2 },
                Write::RemoveMember(alice.clone()),
                Write::Dedupe {
                    sender: alice.clone(),
                    client_msg_id: "c".to_owned(),
                    entry: DedupeEntry {
                        seq: 3,
                        ordinal: 1,
                        ts_ms: 7,
                        content_hash: [9; 32],
                        expires_at_ms: 8,
                    },
                },
                Write::ReadUpTo {
                    user: alice.clone(),
                    seq: 3,
                    ordinal: 1,
                },
                Write::Reaction {
                    user: alice,
                    target_seq: 2,
                    emoji: "👍".to_owned(),
                    added: true,
                },
            ],
            mark_outbox: false,
        };
        assert_eq!(decode_batch(&encode_batch(&batch)).expect("decodes"), batch);
        assert!(decode_batch(&[0xff, 0xff]).is_err());
    }
}
