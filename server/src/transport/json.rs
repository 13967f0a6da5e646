//! The proto3 JSON mapping of frames (`chatwire.v1.json`, docs/protocol.md §2.4), for debugging
//! and for pages without a protobuf runtime: JSON text in, binary frames out to the session,
//! and back.

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use chatwire_protocol::FILE_DESCRIPTOR_SET;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DeserializeOptions, DynamicMessage, MessageDescriptor};

fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).ok())
        .as_ref()
}

fn descriptor(name: &str) -> Option<MessageDescriptor> {
    pool()?.get_message_by_name(name)
}

/// A `ClientFrame` in proto3 JSON as one binary frame (length prefix + message); `None` when
/// the text is not a valid `ClientFrame`.
pub fn client_frame_from_json(text: &str) -> Option<Bytes> {
    let descriptor = descriptor("chatwire.v1.ClientFrame")?;
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let options = DeserializeOptions::new().deny_unknown_fields(false);
    let message =
        DynamicMessage::deserialize_with_options(descriptor, &mut deserializer, &options).ok()?;
    deserializer.end().ok()?;
    let mut out = BytesMut::new();
    message.encode_length_delimited(&mut out).ok()?;
    Some(out.freeze())
}

/// Binary `ServerFrame`s (length-prefixed, as the session writes them) as JSON texts, one per
/// frame.
pub fn server_frames_to_json(mut bytes: &[u8]) -> Vec<String> {
    let Some(descriptor) = descriptor("chatwire.v1.ServerFrame") else {
        return Vec::new();
    };
    let mut texts = Vec::new();
    while !bytes.is_empty() {
        let Ok(len) = prost::decode_length_delimiter(&mut bytes) else {
            break;
        };
        let Some((frame, rest)) = bytes.split_at_checked(len) else {
            break;
        };
        bytes = rest;
        if let Ok(message) = DynamicMessage::decode(descriptor.clone(), frame)
            && let Ok(text) = serde_json::to_string(&message)
        {
            texts.push(text);
        }
    }
    texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatwire_protocol::{ClientFrameDecoder, encode_frame, v1};

    #[test]
    fn client_json_becomes_the_same_binary_frame() {
        let bytes =
            client_frame_from_json(r#"{"id":"7","ping":{"clientTimeMs":"12"},"unknownField":1}"#)
                .expect("valid");
        let mut decoder = ClientFrameDecoder::new(1024);
        decoder.push(&bytes);
        let frame = decoder.next_frame().expect("decodes").expect("one frame");
        assert_eq!(frame.id, 7);
        assert_eq!(
            frame.request,
            Some(v1::client_frame::Request::Ping(v1::PingRequest {
                client_time_ms: 12
            }))
        );
        assert!(client_frame_from_json("{not json").is_none());
        assert!(client_frame_from_json(r#"{"id":"x"}"#).is_none());
    }

    #[test]
    fn server_frames_become_one_json_text_each() {
        let heartbeat = v1::ServerFrame {
            frame: Some(v1::server_frame::Frame::Event(v1::Event {
                kind: Some(v1::event::Kind::Heartbeat(v1::Heartbeat {
                    server_time_ms: 5,
                })),
            })),
        };
        let mut bytes = BytesMut::new();
        encode_frame(&heartbeat, 1024, &mut bytes).expect("encodes");
        encode_frame(&heartbeat, 1024, &mut bytes).expect("encodes");
        let texts = server_frames_to_json(&bytes);
        assert_eq!(
            texts,
            vec![r#"{"event":{"heartbeat":{"serverTimeMs":"5"}}}"#.to_owned(); 2]
        );
    }
}
