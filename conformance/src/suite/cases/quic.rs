//! QUIC extras: typing datagrams, bad datagrams, connection migration.

use bytes::{Bytes, BytesMut};
use chatwire_protocol::v1::{self, event};
use chatwire_protocol::{FrameDecoder, encode_frame};
use futures_util::FutureExt;

use super::case;
use crate::client::client_info;
use crate::suite::check::{Check, Failure, ensure, within};
use crate::suite::{Case, Ctx, TransportKind};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "QU-01",
            "quic",
            Must,
            ["R-2.5.6", "R-2.5.7", "R-2.5.13"],
            ["Typing"],
            Some(TransportKind::Quic),
            false,
            "a typing datagram is relayed and gets no reply",
            typing_datagram
        ),
        case!(
            "QU-02",
            "quic",
            Must,
            ["R-2.5.7"],
            ["Ping"],
            Some(TransportKind::Quic),
            false,
            "a bad datagram is discarded and the connection stays open",
            bad_datagram
        ),
        case!(
            "QU-03",
            "quic",
            Must,
            ["R-2.5.9"],
            ["Ping"],
            Some(TransportKind::Quic),
            false,
            "the session survives a client address change (migration)",
            migration
        ),
        case!(
            "QU-04",
            "quic",
            Must,
            ["R-2.5.4", "R-4.7.4"],
            ["Connect"],
            Some(TransportKind::Quic),
            false,
            "a client that finishes its control stream gets CONNECTION_CLOSE 4012, no Disconnect",
            finished_stream
        ),
        case!(
            "QU-05",
            "quic",
            Must,
            ["R-2.5.3", "R-2.5.2"],
            ["Connect", "Ping"],
            Some(TransportKind::Quic),
            false,
            "the server grants one bidirectional stream and no unidirectional one",
            one_stream
        ),
    ]
}

async fn typing_datagram(ctx: Ctx) -> Check {
    let quic = ctx
        .quic()
        .ok_or_else(|| Failure::Skip("quic only".into()))?;
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let b = ctx.client(&bob).await?;
    let a = ctx.open().await?;
    let response = within(
        "ConnectResponse",
        a.connect_with(v1::ConnectRequest {
            token: ctx.token(&alice).await?,
            client: Some(client_info()),
            capabilities: vec!["typing-datagrams".into()],
            ..Default::default()
        }),
    )
    .await??;
    if !response
        .capabilities
        .iter()
        .any(|c| c == "typing-datagrams")
    {
        return Err(Failure::Skip(
            "the server did not grant typing-datagrams".into(),
        ));
    }
    let room = super::group(&a, &[&bob]).await?;
    super::subscribe_all(&b, &room, 0).await?;
    let frame = v1::ClientFrame {
        id: 0,
        trace_id: String::new(),
        request: Some(v1::client_frame::Request::Typing(v1::TypingRequest {
            room_id: room.clone(),
            active: true,
        })),
    };
    let mut buf = bytes::BytesMut::new();
    let _ = chatwire_protocol::encode_frame(&frame, usize::MAX, &mut buf);
    // Datagrams may be lost: send a few until one is relayed (each is harmless).
    let relayed = async {
        loop {
            quic.send_datagram(buf.clone().freeze())
                .map_err(|e| Failure::new("the datagram is sent", e.to_string()))?;
            let wait =
                tokio::time::timeout(std::time::Duration::from_secs(1), b.next_event()).await;
            if let Ok(Ok(event)) = wait
                && matches!(event.kind, Some(event::Kind::TypingChanged(ref t)) if t.room_id == room)
            {
                return Ok::<_, Failure>(());
            }
        }
    };
    within("TypingChanged from the datagram", relayed).await??;
    super::barrier(&a).await?;
    let reply = tokio::time::timeout(std::time::Duration::ZERO, a.next_reply()).await;
    ensure(reply.is_err(), "no reply to a datagram", reply.ok())
}

async fn bad_datagram(ctx: Ctx) -> Check {
    let quic = ctx
        .quic()
        .ok_or_else(|| Failure::Skip("quic only".into()))?;
    let a = ctx.client(&ctx.user("alice")).await?;
    for junk in [&[0xff, 0xff, 0xff][..], &[0x04, 0x08, 0x01, 0x62, 0x00][..]] {
        let _ = quic.send_datagram(Bytes::copy_from_slice(junk));
    }
    super::barrier(&a).await?;
    ensure(
        a.closed().is_none(),
        "the connection stays open",
        a.closed(),
    )
}

async fn migration(ctx: Ctx) -> Check {
    let quic = ctx
        .quic()
        .ok_or_else(|| Failure::Skip("quic only".into()))?;
    let a = ctx.client(&ctx.user("alice")).await?;
    super::barrier(&a).await?;
    quic.rebind()
        .map_err(|e| Failure::new("the client socket moves", e.to_string()))?;
    super::barrier(&a).await?;
    ensure(
        a.closed().is_none(),
        "the same session after migration",
        a.closed(),
    )
}

/// `ClientFrame { id, connect }` framed, for the cases that drive the stream by hand.
fn connect_frame(id: u64, token: String) -> Bytes {
    let frame = v1::ClientFrame {
        id,
        trace_id: String::new(),
        request: Some(v1::client_frame::Request::Connect(v1::ConnectRequest {
            token,
            client: Some(client_info()),
            ..Default::default()
        })),
    };
    let mut buf = BytesMut::new();
    let _ = encode_frame(&frame, usize::MAX, &mut buf);
    buf.freeze()
}

/// Reads server frames from `recv` until the stream ends; every frame read.
async fn read_to_end(recv: &mut quinn::RecvStream) -> Vec<v1::ServerFrame> {
    let mut decoder = FrameDecoder::<v1::ServerFrame>::new(usize::MAX >> 1);
    let mut frames = Vec::new();
    while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
        decoder.push(&chunk.bytes);
        while let Ok(Some(frame)) = decoder.next_frame() {
            frames.push(frame);
        }
    }
    frames
}

fn is_connect_reply(frame: &v1::ServerFrame) -> bool {
    matches!(
        &frame.frame,
        Some(v1::server_frame::Frame::Reply(v1::Reply {
            result: Some(v1::reply::Result::Connect(_)),
            ..
        }))
    )
}

async fn finished_stream(ctx: Ctx) -> Check {
    let quic = ctx
        .quic()
        .ok_or_else(|| Failure::Skip("quic only".into()))?;
    let token = ctx.token(&ctx.user("alice")).await?;
    let connection = within("the QUIC handshake", quic.connect_raw())
        .await?
        .map_err(|e| Failure::new("the connection opens", e.to_string()))?;
    let (mut send, mut recv) = within("the control stream", connection.open_bi())
        .await?
        .map_err(|e| Failure::new("the control stream opens", e.to_string()))?;
    send.write_all(&connect_frame(1, token))
        .await
        .map_err(|e| Failure::new("Connect is sent", e.to_string()))?;
    // The ConnectResponse first: the session exists when the client ends it.
    let mut decoder = FrameDecoder::<v1::ServerFrame>::new(usize::MAX >> 1);
    let connected = async {
        while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
            decoder.push(&chunk.bytes);
            while let Ok(Some(frame)) = decoder.next_frame() {
                if is_connect_reply(&frame) {
                    return true;
                }
            }
        }
        false
    };
    ensure(
        within("ConnectResponse", connected).await?,
        "a ConnectResponse",
        "the stream ended first",
    )?;
    send.finish()
        .map_err(|e| Failure::new("the stream finishes", e.to_string()))?;
    let rest = within("the end of the server's stream", read_to_end(&mut recv)).await?;
    let disconnect = rest.iter().find(|f| {
        matches!(
            &f.frame,
            Some(v1::server_frame::Frame::Event(v1::Event {
                kind: Some(event::Kind::Disconnect(_))
            }))
        )
    });
    ensure(
        disconnect.is_none(),
        "no Disconnect for a session the client ended (R-2.5.4)",
        disconnect,
    )?;
    let reason = within("CONNECTION_CLOSE", connection.closed()).await?;
    let code = match &reason {
        quinn::ConnectionError::ApplicationClosed(close) => Some(close.error_code.into_inner()),
        _ => None,
    };
    ensure(
        code == Some(v1::CloseCode::ClientClosed as u64),
        "an application CONNECTION_CLOSE with 4012 CLIENT_CLOSED (R-2.5.4)",
        reason,
    )
}

async fn one_stream(ctx: Ctx) -> Check {
    let quic = ctx
        .quic()
        .ok_or_else(|| Failure::Skip("quic only".into()))?;
    let token = ctx.token(&ctx.user("alice")).await?;
    let connection = within("the QUIC handshake", quic.connect_raw())
        .await?
        .map_err(|e| Failure::new("the connection opens", e.to_string()))?;
    let (mut send, mut recv) = within("the control stream", connection.open_bi())
        .await?
        .map_err(|e| Failure::new("the control stream opens", e.to_string()))?;
    send.write_all(&connect_frame(1, token))
        .await
        .map_err(|e| Failure::new("Connect is sent", e.to_string()))?;
    let mut decoder = FrameDecoder::<v1::ServerFrame>::new(usize::MAX >> 1);
    let connected = async {
        while let Ok(Some(chunk)) = recv.read_chunk(64 * 1024, true).await {
            decoder.push(&chunk.bytes);
            while let Ok(Some(frame)) = decoder.next_frame() {
                if is_connect_reply(&frame) {
                    return true;
                }
            }
        }
        false
    };
    ensure(
        within("ConnectResponse", connected).await?,
        "a ConnectResponse",
        "the stream ended first",
    )?;
    // The handshake carried the server's stream limits: with initial_max_streams_bidi = 1 and
    // initial_max_streams_uni = 0 the client has no credit for another stream, so opening one
    // cannot complete (a client that sent one anyway would commit STREAM_LIMIT_ERROR).
    let second_bidi = connection.open_bi().now_or_never();
    ensure(
        second_bidi.is_none(),
        "no credit for a second bidirectional stream (initial_max_streams_bidi = 1)",
        second_bidi.map(|r| r.is_ok()),
    )?;
    let uni = connection.open_uni().now_or_never();
    ensure(
        uni.is_none(),
        "no credit for a unidirectional stream (initial_max_streams_uni = 0)",
        uni.map(|r| r.is_ok()),
    )?;
    connection.close(quinn::VarInt::from_u32(4012), b"done");
    Ok(())
}
