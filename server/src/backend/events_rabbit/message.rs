//! One event as an AMQP message: the payload is the body, everything else travels in headers,
//! so the broker (and an operator's `rabbitmqadmin get`) can read attempts, the last failure
//! and the time of death without decoding the body.
//!
//! | header | type | meaning |
//! | --- | --- | --- |
//! | `x-cw-id` | long string | [`DownstreamEvent::id`], the consumers' dedupe key |
//! | `x-cw-lane`, `x-cw-kind`, `x-cw-room` | long string | the event's lane, kind and room |
//! | `x-cw-seq`, `x-cw-occurred-ms` | long long | room log seq, time it happened |
//! | `x-cw-attempts` | long long | deliveries made before the message entered its queue |
//! | `x-cw-due-ms` | long long | not leased before this (injected clock); absent: due now |
//! | `x-cw-reason` | long string | the last failure a consumer reported |
//! | `x-cw-dead-at-ms` | long long | when it was dead-lettered |
//!
//! `x-delivery-count` is the quorum queue's own count of returns (a consumer whose connection
//! dropped before its ack); it adds to `x-cw-attempts`.

use bytes::Bytes;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};

use crate::backend::events::{DownstreamEvent, Lane, QueueError};

const ID: &str = "x-cw-id";
const LANE: &str = "x-cw-lane";
const KIND: &str = "x-cw-kind";
const ROOM: &str = "x-cw-room";
const SEQ: &str = "x-cw-seq";
const OCCURRED: &str = "x-cw-occurred-ms";
const ATTEMPTS: &str = "x-cw-attempts";
const DUE: &str = "x-cw-due-ms";
const REASON: &str = "x-cw-reason";
const DEAD_AT: &str = "x-cw-dead-at-ms";
const DELIVERY_COUNT: &str = "x-delivery-count";

/// An event with its queue bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Envelope {
    /// The event.
    pub(super) event: DownstreamEvent,
    /// Deliveries made before the message entered its current queue.
    pub(super) attempts: u32,
    /// Not to be leased before this time (injected clock); `None`: due at once.
    pub(super) due_ms: Option<i64>,
    /// The last failure reported by a consumer; empty when none.
    pub(super) reason: String,
    /// When it was dead-lettered.
    pub(super) dead_at_ms: Option<i64>,
}

impl Envelope {
    /// A freshly published event.
    pub(super) fn new(event: DownstreamEvent) -> Self {
        Self {
            event,
            attempts: 0,
            due_ms: None,
            reason: String::new(),
            dead_at_ms: None,
        }
    }

    /// The message properties: persistent, JSON, every field in headers.
    pub(super) fn properties(&self) -> Result<BasicProperties, QueueError> {
        let event = &self.event;
        let mut headers = FieldTable::default();
        put_str(&mut headers, ID, &event.id);
        put_str(&mut headers, LANE, event.lane.as_str());
        put_str(&mut headers, KIND, &event.kind);
        if let Some(room) = &event.room_id {
            put_str(&mut headers, ROOM, room);
        }
        if let Some(seq) = event.seq {
            let seq = i64::try_from(seq)
                .map_err(|_| QueueError::Corrupt(format!("seq {seq} does not fit a header")))?;
            put_int(&mut headers, SEQ, seq);
        }
        put_int(&mut headers, OCCURRED, event.occurred_at_ms);
        put_int(&mut headers, ATTEMPTS, i64::from(self.attempts));
        if let Some(due) = self.due_ms {
            put_int(&mut headers, DUE, due);
        }
        if !self.reason.is_empty() {
            put_str(&mut headers, REASON, &self.reason);
        }
        if let Some(dead_at) = self.dead_at_ms {
            put_int(&mut headers, DEAD_AT, dead_at);
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_headers(headers);
        // The id also as message-id where it fits, for tooling; the header is what counts.
        if let Ok(id) = ShortString::try_new(event.id.clone()) {
            properties = properties.with_message_id(id);
        }
        Ok(properties)
    }

    /// Decodes a delivered message. `returns` is added to the attempts: the quorum queue's
    /// count of deliveries that ended without a settlement (a consumer that went away).
    pub(super) fn decode(properties: &BasicProperties, body: &[u8]) -> Result<Self, QueueError> {
        let empty = FieldTable::default();
        let headers = properties.headers().as_ref().unwrap_or(&empty);
        let lane = match get_str(headers, LANE)?.as_str() {
            "high" => Lane::High,
            "medium" => Lane::Medium,
            "low" => Lane::Low,
            other => return Err(corrupt(format!("unknown lane {other:?}"))),
        };
        let seq = match opt_int(headers, SEQ)? {
            Some(seq) => Some(u64::try_from(seq).map_err(|_| corrupt("negative seq"))?),
            None => None,
        };
        let attempts = u32::try_from(opt_int(headers, ATTEMPTS)?.unwrap_or(0))
            .map_err(|_| corrupt("attempts out of range"))?;
        let event = DownstreamEvent {
            id: get_str(headers, ID)?,
            lane,
            kind: get_str(headers, KIND)?,
            room_id: opt_str(headers, ROOM)?,
            seq,
            occurred_at_ms: opt_int(headers, OCCURRED)?.ok_or_else(|| missing(OCCURRED))?,
            payload: Bytes::copy_from_slice(body),
        };
        Ok(Self {
            event,
            attempts,
            due_ms: opt_int(headers, DUE)?,
            reason: opt_str(headers, REASON)?.unwrap_or_default(),
            dead_at_ms: opt_int(headers, DEAD_AT)?,
        })
    }
}

/// The broker's count of unsettled returns of this message (0 when absent).
pub(super) fn returns(properties: &BasicProperties) -> u32 {
    properties
        .headers()
        .as_ref()
        .and_then(|h| opt_int(h, DELIVERY_COUNT).ok().flatten())
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0)
}

fn put_str(headers: &mut FieldTable, key: &'static str, value: &str) {
    headers.insert(key.into(), AMQPValue::LongString(value.into()));
}

fn put_int(headers: &mut FieldTable, key: &'static str, value: i64) {
    headers.insert(key.into(), AMQPValue::LongLongInt(value));
}

fn corrupt(what: impl Into<String>) -> QueueError {
    QueueError::Corrupt(format!("event message: {}", what.into()))
}

fn missing(key: &str) -> QueueError {
    corrupt(format!("header {key} missing"))
}

fn get_str(headers: &FieldTable, key: &str) -> Result<String, QueueError> {
    opt_str(headers, key)?.ok_or_else(|| missing(key))
}

fn opt_str(headers: &FieldTable, key: &str) -> Result<Option<String>, QueueError> {
    match headers.inner().get(key) {
        None => Ok(None),
        Some(AMQPValue::LongString(s)) => String::from_utf8(s.as_bytes().to_vec())
            .map(Some)
            .map_err(|_| corrupt(format!("header {key} is not UTF-8"))),
        Some(AMQPValue::ShortString(s)) => Ok(Some(s.as_str().to_owned())),
        Some(other) => Err(corrupt(format!("header {key} is not a string: {other:?}"))),
    }
}

fn opt_int(headers: &FieldTable, key: &str) -> Result<Option<i64>, QueueError> {
    Ok(Some(match headers.inner().get(key) {
        None => return Ok(None),
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::LongUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortUInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortShortInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortShortUInt(n)) => i64::from(*n),
        Some(other) => {
            return Err(corrupt(format!(
                "header {key} is not an integer: {other:?}"
            )));
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Envelope {
        Envelope {
            event: DownstreamEvent {
                id: "g:a:b:7:message.created".to_owned(),
                lane: Lane::Medium,
                kind: "message.created".to_owned(),
                room_id: Some("g:a:b".to_owned()),
                seq: Some(7),
                occurred_at_ms: 1_700_000_000_123,
                payload: Bytes::from_static(br#"{"x":1}"#),
            },
            attempts: 3,
            due_ms: Some(42),
            reason: "receiver answered 500".to_owned(),
            dead_at_ms: Some(99),
        }
    }

    #[test]
    fn every_field_round_trips() {
        for envelope in [
            sample(),
            Envelope::new(DownstreamEvent {
                room_id: None,
                seq: None,
                ..sample().event
            }),
        ] {
            let properties = envelope.properties().expect("encode");
            let decoded = Envelope::decode(&properties, &envelope.event.payload).expect("decode");
            assert_eq!(decoded, envelope);
        }
    }

    #[test]
    fn broker_returns_are_read_from_the_delivery_count() {
        let mut headers = FieldTable::default();
        headers.insert(DELIVERY_COUNT.into(), AMQPValue::LongLongInt(2));
        assert_eq!(
            returns(&BasicProperties::default().with_headers(headers)),
            2
        );
        assert_eq!(returns(&BasicProperties::default()), 0);
    }

    #[test]
    fn foreign_messages_are_corrupt() {
        let err = Envelope::decode(&BasicProperties::default(), b"{}");
        assert!(matches!(err, Err(QueueError::Corrupt(_))));
    }
}
