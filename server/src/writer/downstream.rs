//! Room log events as downstream events (docs/architecture.md "Downstream events"): the kind and
//! lane of each log event, its id `room:seq:kind`, and its payload, the proto3 JSON of the
//! `v1::RoomEvent` (the same JSON the conformance vectors use: lowerCamelCase names, 64-bit
//! integers as strings).
//!
//! ```text
//!  writer batch (v1::RoomEvent, seq order) ──events_of_batch──▶ DownstreamEvent (same order)
//!  DownstreamEvent.payload ──room_event_of──▶ v1::RoomEvent (for consumers that need fields)
//! ```
//!
//! Pure functions: no I/O, no clock.

use std::sync::LazyLock;

use bytes::Bytes;
use chatwire_protocol::v1::room_event::Kind;
use chatwire_protocol::{FILE_DESCRIPTOR_SET, v1};
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

use crate::backend::events::{DownstreamEvent, Lane, log_event_id};

/// The kind of a new message, the one the offline push consumer forwards.
pub const MESSAGE_CREATED: &str = "message.created";

/// The descriptor of `chatwire.v1.RoomEvent`, decoded once.
static ROOM_EVENT: LazyLock<Option<MessageDescriptor>> = LazyLock::new(|| {
    DescriptorPool::decode(FILE_DESCRIPTOR_SET)
        .ok()?
        .get_message_by_name("chatwire.v1.RoomEvent")
});

/// The downstream kind and lane of a log event; `None` for an event of a kind this build does
/// not know (it is not forwarded).
pub fn kind_of(event: &v1::RoomEvent) -> Option<(&'static str, Lane)> {
    let kind = match event.kind.as_ref()? {
        Kind::MessageCreated(_) => return Some((MESSAGE_CREATED, Lane::High)),
        Kind::RoomCreated(_) => "room.created",
        Kind::MessageEdited(_) => "message.edited",
        Kind::MessageDeleted(_) => "message.deleted",
        Kind::ReactionChanged(_) => "reaction.changed",
        Kind::MemberJoined(_) => "member.joined",
        Kind::MemberLeft(_) => "member.left",
        Kind::MemberRoleChanged(_) => "member.role_changed",
        Kind::RoomUpdated(_) => "room.updated",
        Kind::MemberRestricted(_) => "member.restricted",
    };
    Some((kind, Lane::Medium))
}

/// The downstream events of a writer batch, in the batch's (seq) order.
pub fn events_of_batch(room_events: &[v1::RoomEvent]) -> Vec<DownstreamEvent> {
    room_events.iter().filter_map(downstream_event).collect()
}

/// The downstream event of one log event.
pub fn downstream_event(event: &v1::RoomEvent) -> Option<DownstreamEvent> {
    let (kind, lane) = kind_of(event)?;
    Some(DownstreamEvent {
        id: log_event_id(&event.room_id, event.seq, kind),
        lane,
        kind: kind.to_owned(),
        room_id: Some(event.room_id.clone()),
        seq: Some(event.seq),
        occurred_at_ms: event.ts_ms,
        payload: Bytes::from(to_json(event)),
    })
}

/// The proto3 JSON of a log event.
pub fn to_json(event: &v1::RoomEvent) -> Vec<u8> {
    let Some(descriptor) = ROOM_EVENT.as_ref() else {
        // The descriptor set is compiled in; this cannot happen in a working build.
        return b"{}".to_vec();
    };
    let encoded = event.encode_to_vec();
    let Ok(message) = DynamicMessage::decode(descriptor.clone(), encoded.as_slice()) else {
        return b"{}".to_vec();
    };
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::new(&mut out);
    match message.serialize_with_options(&mut serializer, &SerializeOptions::new()) {
        Ok(()) => out,
        Err(_) => b"{}".to_vec(),
    }
}

/// The log event in a downstream payload; `None` when it is not the proto3 JSON of one.
pub fn room_event_of(payload: &[u8]) -> Option<v1::RoomEvent> {
    let descriptor = ROOM_EVENT.as_ref()?.clone();
    let mut deserializer = serde_json::Deserializer::from_slice(payload);
    let message = DynamicMessage::deserialize(descriptor, &mut deserializer).ok()?;
    message.transcode_to::<v1::RoomEvent>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: &str, seq: u64, text: &str, mentions: &[&str]) -> v1::RoomEvent {
        v1::RoomEvent {
            room_id: room.to_owned(),
            seq,
            ts_ms: 1_700_000_000_000 + seq as i64,
            sender: "alice".to_owned(),
            kind: Some(Kind::MessageCreated(v1::MessageCreated {
                ordinal: seq,
                client_msg_id: format!("c{seq}"),
                content: Some(v1::Content {
                    text: text.to_owned(),
                    mentions: mentions.iter().map(|m| (*m).to_owned()).collect(),
                    ..v1::Content::default()
                }),
                ..v1::MessageCreated::default()
            })),
        }
    }

    #[test]
    fn batch_maps_to_ids_lanes_and_json_in_order() {
        let joined = v1::RoomEvent {
            room_id: "g:team".to_owned(),
            seq: 2,
            ts_ms: 5,
            sender: "bob".to_owned(),
            kind: Some(Kind::MemberJoined(v1::MemberJoined {
                user_id: "bob".to_owned(),
                role: v1::Role::Member as i32,
            })),
        };
        let unknown = v1::RoomEvent {
            kind: None,
            ..joined.clone()
        };
        let batch = [joined, unknown, message("g:team", 3, "hi @bob", &["bob"])];
        let events = events_of_batch(&batch);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].id, "g:team:2:member.joined");
        assert_eq!(events[0].lane, Lane::Medium);
        assert_eq!(events[1].id, "g:team:3:message.created");
        assert_eq!(events[1].lane, Lane::High);
        assert_eq!(events[1].seq, Some(3));
        assert_eq!(events[1].room_id.as_deref(), Some("g:team"));
        assert_eq!(events[1].occurred_at_ms, 1_700_000_000_003);

        let json: serde_json::Value = serde_json::from_slice(&events[1].payload).expect("json");
        assert_eq!(json["roomId"], "g:team");
        assert_eq!(
            json["seq"], "3",
            "64-bit integers are strings in proto3 JSON"
        );
        assert_eq!(json["messageCreated"]["content"]["text"], "hi @bob");
        assert_eq!(json["messageCreated"]["content"]["mentions"][0], "bob");
    }

    #[test]
    fn payload_decodes_back_to_the_event() {
        let event = message("d:alice:bob", 9, "hello", &["bob"]);
        let downstream = downstream_event(&event).expect("known kind");
        assert_eq!(room_event_of(&downstream.payload), Some(event));
        assert_eq!(room_event_of(b"not json"), None);
    }
}
