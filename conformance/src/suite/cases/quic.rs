//! QUIC extras: typing datagrams, bad datagrams, connection migration.

use bytes::Bytes;
use chatwire_protocol::v1::{self, event};

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
