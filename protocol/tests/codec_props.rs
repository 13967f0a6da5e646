//! Property tests of the frame codec: round trips, arbitrary splits of the input, limits, and
//! arbitrary bytes that must never panic. They run on stable in CI; `fuzz/` runs the same
//! decoder for longer under libFuzzer.

use bytes::{Bytes, BytesMut};
use chatwire_protocol::v1::{
    self, ClientFrame, Content, PingRequest, SendRequest, ServerFrame, TypingRequest,
    client_frame::Request,
};
use chatwire_protocol::{
    ClientFrameDecoder, DecodeError, EncodeError, FrameDecoder, ServerFrameDecoder, encode_frame,
    encoded_frame_len,
};
use proptest::prelude::*;

const MAX: usize = 64 * 1024;

fn request() -> impl Strategy<Value = Option<Request>> {
    prop_oneof![
        Just(None),
        any::<i64>().prop_map(|t| Some(Request::Ping(PingRequest { client_time_ms: t }))),
        (".{0,20}", any::<bool>()).prop_map(|(room_id, active)| {
            Some(Request::Typing(TypingRequest { room_id, active }))
        }),
        (
            ".{0,20}",
            "[a-f0-9-]{0,36}",
            ".{0,300}",
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<u64>()
        )
            .prop_map(|(room_id, client_msg_id, text, payload, reply_to_seq)| {
                Some(Request::Send(SendRequest {
                    room_id,
                    client_msg_id,
                    content: Some(Content {
                        text,
                        app_payload: Bytes::from(payload),
                        ..Content::default()
                    }),
                    reply_to_seq,
                    thread_root_seq: 0,
                }))
            }),
    ]
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    (any::<u64>(), "[0-9a-f]{0,32}", request()).prop_map(|(id, trace_id, request)| ClientFrame {
        id,
        trace_id,
        request,
    })
}

fn encode_all(frames: &[ClientFrame]) -> BytesMut {
    let mut buf = BytesMut::new();
    for frame in frames {
        encode_frame(frame, MAX, &mut buf).expect("sample frames are under the limit");
    }
    buf
}

/// Feeds `input` to a decoder in chunks cut at `cuts`, collecting frames until more input is
/// needed or an error stops decoding.
fn decode_in_chunks<M: prost::Message + Default>(
    decoder: &mut FrameDecoder<M>,
    input: &[u8],
    cuts: &[usize],
) -> Result<Vec<M>, DecodeError> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    points.dedup();
    let mut frames = Vec::new();
    for window in points.windows(2) {
        let [start, end] = [window[0], window[1]];
        decoder.push(&input[start..end]);
        while let Some(frame) = decoder.next_frame()? {
            frames.push(frame);
        }
    }
    Ok(frames)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn frames_round_trip_through_one_buffer(frames in proptest::collection::vec(client_frame(), 0..16)) {
        let buf = encode_all(&frames);
        let expected_len: usize = frames.iter().map(encoded_frame_len).sum();
        prop_assert_eq!(buf.len(), expected_len);
        let mut decoder = ClientFrameDecoder::new(MAX);
        let decoded = decode_in_chunks(&mut decoder, &buf, &[]).expect("valid input decodes");
        prop_assert_eq!(decoded, frames);
        prop_assert!(decoder.finish().is_ok());
    }

    #[test]
    fn arbitrary_splits_of_the_input_decode_the_same_frames(
        frames in proptest::collection::vec(client_frame(), 1..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..40),
    ) {
        let buf = encode_all(&frames);
        let mut decoder = ClientFrameDecoder::new(MAX);
        let decoded = decode_in_chunks(&mut decoder, &buf, &cuts).expect("valid input decodes");
        prop_assert_eq!(decoded, frames);
        prop_assert_eq!(decoder.buffered_len(), 0);
    }

    #[test]
    fn a_truncated_tail_is_reported_by_finish(frames in proptest::collection::vec(client_frame(), 1..6), cut in any::<usize>()) {
        let buf = encode_all(&frames);
        let keep = cut % buf.len();
        prop_assume!(keep > 0);
        let mut decoder = ClientFrameDecoder::new(MAX);
        decoder.push(&buf[..keep]);
        while decoder.next_frame().expect("a prefix of valid input is valid").is_some() {}
        // The cut may fall exactly between two frames; then nothing is left over.
        let whole: usize = frames.iter().map(encoded_frame_len)
            .scan(0, |acc, len| { *acc += len; Some(*acc) })
            .take_while(|end| *end <= keep).last().unwrap_or(0);
        let result = decoder.finish();
        if whole == keep {
            prop_assert!(result.is_ok());
        } else {
            prop_assert_eq!(result, Err(DecodeError::Truncated { buffered: keep - whole - prefix_len_at(&buf, whole, keep) }));
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        input in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
        max in 0usize..2048,
    ) {
        let mut client = ClientFrameDecoder::new(max);
        let _ = decode_in_chunks(&mut client, &input, &cuts);
        prop_assert!(client.buffered_len() <= input.len());
        let mut server = ServerFrameDecoder::new(max);
        let _ = decode_in_chunks(&mut server, &input, &cuts);
        let _ = server.finish();
    }

    #[test]
    fn a_length_over_the_limit_fails_on_the_prefix_alone(len in 1u64..u64::MAX / 2, max in 0usize..1024) {
        prop_assume!(len > max as u64);
        let mut prefix = BytesMut::new();
        prost::encoding::encode_varint(len, &mut prefix);
        let mut decoder = ClientFrameDecoder::new(max);
        decoder.push(&prefix);
        prop_assert_eq!(decoder.next_frame(), Err(DecodeError::FrameTooLarge { len, max }));
        // Fatal: the decoder stays failed and buffers nothing more.
        decoder.push(&[0; 64]);
        prop_assert_eq!(decoder.buffered_len(), 0);
        prop_assert!(decoder.next_frame().expect_err("stays failed").is_fatal());
    }
}

/// The length of the varint prefix that starts at `start` when it is complete before `end`
/// (the decoder has then consumed it), else 0 (the partial prefix is still buffered).
fn prefix_len_at(buf: &[u8], start: usize, end: usize) -> usize {
    buf[start..end]
        .iter()
        .position(|b| b & 0x80 == 0)
        .map_or(0, |i| i + 1)
}

#[test]
fn an_invalid_message_is_skipped_and_decoding_goes_on() {
    let mut input = BytesMut::new();
    // A frame of 3 bytes holding field 1 with wire type 7, which does not exist.
    input.extend_from_slice(&[3, 0x0f, 0x01, 0x02]);
    let ping = ClientFrame {
        id: 7,
        trace_id: String::new(),
        request: Some(Request::Ping(PingRequest { client_time_ms: 1 })),
    };
    encode_frame(&ping, MAX, &mut input).expect("encodes");
    let mut decoder = ClientFrameDecoder::new(MAX);
    decoder.push(&input);
    let err = decoder.next_frame().expect_err("garbage frame is refused");
    assert!(matches!(err, DecodeError::InvalidMessage { len: 3, .. }));
    assert!(!err.is_fatal());
    assert_eq!(decoder.next_frame(), Ok(Some(ping)));
    assert_eq!(decoder.next_frame(), Ok(None));
}

#[test]
fn a_malformed_prefix_is_fatal() {
    let mut decoder = ClientFrameDecoder::new(MAX);
    decoder.push(&[0xff; 11]);
    let err = decoder.next_frame().expect_err("eleven continuation bytes");
    assert_eq!(err, DecodeError::MalformedLength);
    assert!(err.is_fatal());
}

#[test]
fn an_empty_frame_is_an_empty_message() {
    let mut decoder = ClientFrameDecoder::new(MAX);
    decoder.push(&[0]);
    assert_eq!(decoder.next_frame(), Ok(Some(ClientFrame::default())));
}

#[test]
fn encoding_refuses_a_frame_over_the_limit_and_writes_nothing() {
    let event = ServerFrame {
        frame: Some(v1::server_frame::Frame::Event(v1::Event {
            kind: Some(v1::event::Kind::Heartbeat(v1::Heartbeat {
                server_time_ms: 1_767_225_600_000,
            })),
        })),
    };
    let len = prost::Message::encoded_len(&event);
    let mut buf = BytesMut::new();
    assert_eq!(
        encode_frame(&event, len - 1, &mut buf),
        Err(EncodeError::FrameTooLarge { len, max: len - 1 })
    );
    assert!(buf.is_empty());
    encode_frame(&event, len, &mut buf).expect("fits exactly");
    assert_eq!(buf.len(), encoded_frame_len(&event));
}
