//! Framing and limits: length prefixes, the frame size limit, undecodable frames, WebSocket
//! message boundaries, id 0.

use bytes::{BufMut, Bytes, BytesMut};
use chatwire_protocol::v1::{self, ClientFrame, CloseCode, ErrorCode, client_frame::Request};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::case;
use crate::client::{Client, ClientError, ClosedBy};
use crate::suite::check::{Check, Failure, ensure, ensure_closed, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx, TransportKind};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "FR-01",
            "framing",
            Must,
            ["R-2.2.1", "R-2.2.2"],
            [],
            None,
            false,
            "a prefix announcing more than max_client_frame_bytes closes with 4007",
            oversized_prefix
        ),
        case!(
            "FR-02",
            "framing",
            Must,
            ["R-2.2.3", "R-2.1.2"],
            [],
            None,
            false,
            "a malformed (11-byte / over 64-bit) prefix closes with 4000",
            malformed_prefix
        ),
        case!(
            "FR-03",
            "framing",
            Must,
            ["R-2.2.4", "R-2.2.6"],
            ["Ping"],
            None,
            false,
            "a complete undecodable frame gets request_id 0 INVALID_ARGUMENT, connection kept",
            undecodable_frame
        ),
        case!(
            "FR-04",
            "framing",
            Must,
            ["R-2.1.2", "R-2.1.1"],
            ["Ping"],
            None,
            false,
            "a non-shortest length prefix is accepted",
            non_shortest_prefix
        ),
        case!(
            "FR-05",
            "framing",
            Must,
            ["R-2.3.6", "R-2.2.5"],
            ["Ping"],
            None,
            false,
            "a frame of exactly max_client_frame_bytes is accepted",
            max_size_frame
        ),
        case!(
            "FR-06",
            "framing",
            Must,
            ["R-2.3.3"],
            ["Ping"],
            Some(TransportKind::Ws),
            false,
            "a zero-byte binary message is ignored",
            empty_message
        ),
        case!(
            "FR-07",
            "framing",
            Must,
            ["R-2.3.4"],
            ["Ping"],
            Some(TransportKind::Ws),
            false,
            "a message ending inside a frame: whole frames before it answered, then close 4000",
            partial_frame
        ),
        case!(
            "FR-08",
            "framing",
            Must,
            ["R-5.1.3", "R-5.1.1"],
            ["Ping"],
            None,
            false,
            "a frame with id 0 after Connect gets request_id 0 INVALID_ARGUMENT (field id)",
            id_zero
        ),
        case!(
            "FR-09",
            "framing",
            Must,
            ["R-2.3.5", "R-2.3.10"],
            [],
            Some(TransportKind::Ws),
            false,
            "a text message on chatwire.v1 closes with 4000",
            text_message
        ),
        case!(
            "FR-10",
            "framing",
            Must,
            ["R-2.3.10", "R-4.7.4"],
            [],
            Some(TransportKind::Ws),
            false,
            "a client's close frame (4012) is answered with a close frame, not a reset",
            client_close
        ),
        case!(
            "FR-11",
            "framing",
            Must,
            ["R-2.3.6", "R-2.3.10", "R-2.2.2"],
            [],
            Some(TransportKind::Ws),
            false,
            "a binary message over max_client_frame_bytes + 10 gets a close frame 4007, not a reset",
            oversized_message
        ),
    ]
}

async fn session(ctx: &Ctx) -> Check<(Client, v1::Limits)> {
    let (client, response) = ctx.session(&ctx.user("alice")).await?;
    let limits = response.limits.unwrap_or_default();
    Ok((client, limits))
}

fn varint(value: u64) -> BytesMut {
    let mut buf = BytesMut::new();
    prost::encoding::encode_varint(value, &mut buf);
    buf
}

async fn oversized_prefix(ctx: Ctx) -> Check {
    let (client, limits) = session(&ctx).await?;
    let mut bytes = varint(u64::from(limits.max_client_frame_bytes) + 1);
    bytes.put_slice(&[0x08, 0x01]);
    client.send_raw(bytes.freeze()).await.ok();
    ensure_closed(&client, CloseCode::FrameTooLarge).await
}

async fn malformed_prefix(ctx: Ctx) -> Check {
    let (client, _) = session(&ctx).await?;
    let bytes = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    client.send_raw(bytes).await.ok();
    ensure_closed(&client, CloseCode::ProtocolViolation).await
}

fn error_of(reply: &v1::Reply) -> Result<v1::reply::Result, ClientError> {
    match reply.result.clone() {
        Some(v1::reply::Result::Error(err)) => Err(ClientError::Server(err)),
        Some(other) => Ok(other),
        None => Err(ClientError::EmptyReply(reply.request_id)),
    }
}

async fn undecodable_frame(ctx: Ctx) -> Check {
    let (client, _) = session(&ctx).await?;
    client
        .send_raw(Bytes::from_static(&[0x03, 0xff, 0xff, 0xff]))
        .await?;
    let reply = within("the request_id 0 reply", client.next_reply()).await??;
    ensure_eq("reply.request_id", 0, reply.request_id)?;
    ensure_error(error_of(&reply), ErrorCode::InvalidArgument, None)?;
    super::barrier(&client).await
}

async fn non_shortest_prefix(ctx: Ctx) -> Check {
    let (client, _) = session(&ctx).await?;
    // `84 00` is 4 in two bytes; the frame is `ClientFrame { id: 9, ping {} }`.
    client
        .send_raw(Bytes::from_static(&[0x84, 0x00, 0x08, 0x09, 0x62, 0x00]))
        .await?;
    let reply = within("the reply to id 9", client.next_reply()).await??;
    ensure_eq("reply.request_id", 9, reply.request_id)?;
    ensure(
        matches!(reply.result, Some(v1::reply::Result::Ping(_))),
        "a PingResponse",
        &reply.result,
    )
}

/// `ClientFrame { id, ping: PingRequest { <unknown field 1000: padding> } }` whose message is
/// exactly `size` bytes, framed.
fn padded_ping(id: u64, size: usize) -> Bytes {
    let mut inner_fixed = BytesMut::new();
    prost::encoding::uint64::encode(1, &id, &mut inner_fixed);
    let total = |pad: usize| {
        let ping_len = 2 + prost::encoding::encoded_len_varint(pad as u64) + pad;
        inner_fixed.len() + 1 + prost::encoding::encoded_len_varint(ping_len as u64) + ping_len
    };
    let estimate = size.saturating_sub(inner_fixed.len() + 12);
    let pad = (estimate.saturating_sub(16)..=estimate + 16)
        .rev()
        .find(|pad| total(*pad) == size)
        .unwrap_or(estimate);
    let mut ping = BytesMut::new();
    prost::encoding::encode_key(1000, prost::encoding::WireType::LengthDelimited, &mut ping);
    prost::encoding::encode_varint(pad as u64, &mut ping);
    ping.extend(std::iter::repeat_n(b'p', pad));
    let mut frame = inner_fixed;
    prost::encoding::encode_key(12, prost::encoding::WireType::LengthDelimited, &mut frame);
    prost::encoding::encode_varint(ping.len() as u64, &mut frame);
    frame.put_slice(&ping);
    let mut out = varint(frame.len() as u64);
    out.put_slice(&frame);
    out.freeze()
}

async fn max_size_frame(ctx: Ctx) -> Check {
    let (client, limits) = session(&ctx).await?;
    let size = limits.max_client_frame_bytes as usize;
    let bytes = padded_ping(77, size);
    let prefix = prost::encoding::encoded_len_varint(size as u64);
    ensure_eq("frame message length", size, bytes.len() - prefix)?;
    client.send_raw(bytes).await?;
    let reply = within("the reply to id 77", client.next_reply()).await??;
    ensure_eq("reply.request_id", 77, reply.request_id)?;
    ensure(
        matches!(reply.result, Some(v1::reply::Result::Ping(_))),
        "a PingResponse",
        &reply.result,
    )
}

async fn empty_message(ctx: Ctx) -> Check {
    let (client, _) = session(&ctx).await?;
    client.send_raw(Bytes::new()).await?;
    super::barrier(&client).await?;
    ensure(
        client.closed().is_none(),
        "the connection stays open",
        client.closed(),
    )
}

async fn partial_frame(ctx: Ctx) -> Check {
    let (client, _) = session(&ctx).await?;
    // A whole Ping (id 5), then the first 3 bytes of another.
    let bytes = Bytes::from_static(&[0x04, 0x08, 0x05, 0x62, 0x00, 0x04, 0x08, 0x06]);
    client.send_raw(bytes).await.ok();
    let reply = within("the reply to the whole frame", client.next_reply()).await?;
    let reply = reply.map_err(|err| {
        Failure::new(
            "the whole frame before the cut is answered",
            err.to_string(),
        )
    })?;
    ensure_eq("reply.request_id", 5, reply.request_id)?;
    ensure_closed(&client, CloseCode::ProtocolViolation).await
}

async fn id_zero(ctx: Ctx) -> Check {
    let (client, _) = session(&ctx).await?;
    let frame = ClientFrame {
        id: 0,
        trace_id: String::new(),
        request: Some(Request::Ping(v1::PingRequest::default())),
    };
    client.send_frame(&frame).await?;
    let reply = within("the request_id 0 reply", client.next_reply()).await??;
    ensure_eq("reply.request_id", 0, reply.request_id)?;
    ensure_error(error_of(&reply), ErrorCode::InvalidArgument, Some("id"))?;
    super::barrier(&client).await
}

async fn text_message(ctx: Ctx) -> Check {
    let ws = ctx
        .ws()
        .ok_or_else(|| Failure::Skip("websocket only".into()))?;
    let mut request = ws
        .url
        .as_str()
        .into_client_request()
        .map_err(|err| Failure::new("a valid URL", err.to_string()))?;
    let protocol = chatwire_protocol::WS_SUBPROTOCOL
        .parse()
        .map_err(|_| Failure::new("a header value", "invalid"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol);
    let (mut socket, _) = within("the upgrade", tokio_tungstenite::connect_async(request))
        .await?
        .map_err(|err| Failure::new("the upgrade completes", err.to_string()))?;
    socket
        .send(Message::Text("{\"id\":\"1\",\"ping\":{}}".into()))
        .await
        .map_err(|err| Failure::new("the text message is sent", err.to_string()))?;
    loop {
        match within("a close frame", socket.next()).await? {
            Some(Ok(Message::Close(frame))) => {
                let code = frame.map(|f| u16::from(f.code));
                return ensure(
                    code == Some(CloseCode::ProtocolViolation as u16),
                    "a close frame with 4000",
                    code,
                );
            }
            Some(Ok(_)) => continue,
            other => {
                return Err(Failure::new(
                    "a close frame with 4000",
                    format!("{other:?}"),
                ));
            }
        }
    }
}

async fn client_close(ctx: Ctx) -> Check {
    let (client, _) = session(&ctx).await?;
    let info = within("the close handshake", client.close(4012, "signing out")).await?;
    ensure(
        info.by == ClosedBy::Local && info.code == 4012,
        "the server answers the client's close frame with a close frame (RFC 6455 5.5.1)",
        &info,
    )
}

async fn oversized_message(ctx: Ctx) -> Check {
    let (_first, limits) = session(&ctx).await?;
    let client = ctx.open().await?;
    // One frame whose prefix announces far more than the limit, with all its bytes: the server
    // may refuse the message from its WebSocket header on, but it must say so with a close
    // frame, as for any oversized frame. At 32 MiB the message outgrows the socket
    // buffers, so this client is still writing when the server closes: a server that then drops
    // the connection with unread input resets it, and the reset discards the close frame
    // (the client would see 1006).
    let size = (2 * limits.max_client_frame_bytes as usize + 20).max(32 << 20);
    let mut bytes = varint(size as u64);
    bytes.extend(std::iter::repeat_n(0u8, size));
    client.send_raw(bytes.freeze()).await.ok();
    ensure_closed(&client, CloseCode::FrameTooLarge).await
}
