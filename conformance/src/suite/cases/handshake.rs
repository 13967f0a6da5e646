//! Handshake and versions: subprotocol and origin checks, `Connect` first, the
//! `ConnectResponse` and its limits, capabilities.

use bytes::{BufMut, BytesMut};
use chatwire_protocol::v1::{self, ClientFrame, CloseCode, ErrorCode, client_frame::Request};
use prost::Message as _;

use super::case;
use crate::client::{Client, TransportError, client_info};
use crate::suite::check::{
    Check, Failure, ensure, ensure_closed, ensure_disconnect, ensure_eq, ensure_error, within,
};
use crate::suite::token::expiry_s;
use crate::suite::{Case, Ctx, TransportKind};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "HS-01",
            "handshake",
            Must,
            ["R-4.3.1", "R-4.2.5", "R-4.1.7", "R-21.1.1", "R-2.3.1"],
            ["Connect"],
            None,
            false,
            "ConnectResponse carries the session, the token's user, every limit and the expiry",
            connect_response
        ),
        case!(
            "HS-02",
            "handshake",
            Must,
            ["R-4.1.5", "R-4.1.4", "R-4.7.1"],
            ["Ping"],
            None,
            false,
            "a request before Connect gets FAILED_PRECONDITION, Disconnect and close 4000",
            request_before_connect
        ),
        case!(
            "HS-03",
            "handshake",
            Must,
            ["R-4.1.6"],
            ["Connect"],
            None,
            false,
            "a second Connect gets FAILED_PRECONDITION and the session goes on",
            second_connect
        ),
        case!(
            "HS-04",
            "handshake",
            Must,
            ["R-4.3.2", "R-22.1.1"],
            ["Connect"],
            None,
            false,
            "capabilities are the intersection; unknown offered names are ignored",
            capabilities
        ),
        case!(
            "HS-05",
            "handshake",
            Must,
            ["R-2.3.2"],
            [],
            Some(TransportKind::Ws),
            false,
            "no served subprotocol offered: no session (close 4009 or HTTP 400)",
            no_subprotocol
        ),
        case!(
            "HS-06",
            "handshake",
            Must,
            ["R-2.3.8"],
            [],
            Some(TransportKind::Ws),
            false,
            "an upgrade with a foreign Origin is refused with HTTP 403",
            foreign_origin
        ),
        case!(
            "HS-07",
            "handshake",
            Must,
            ["R-2.3.9"],
            ["Ping"],
            Some(TransportKind::Ws),
            false,
            "a token in the upgrade URL is ignored: requests still need Connect",
            token_in_url
        ),
        case!(
            "HS-08",
            "handshake",
            Must,
            ["R-4.1.7", "R-3.3.1"],
            ["Connect"],
            None,
            false,
            "a 16 KiB Connect (padded with an unknown field) is accepted",
            large_connect
        ),
        case!(
            "HS-09",
            "handshake",
            Must,
            ["R-4.1.3"],
            ["Connect", "Ping"],
            None,
            false,
            "frames after Connect in the same write belong to the new session",
            in_order_after_connect
        ),
        case!(
            "HS-10",
            "handshake",
            Must,
            ["R-4.1.1"],
            ["Connect"],
            None,
            false,
            "a Connect with id 0 opens no session: an error reply, then close 4000",
            connect_with_id_zero
        ),
        case!(
            "HS-11",
            "handshake",
            Must,
            ["R-22.1.1", "R-2.4.2"],
            ["Connect"],
            Some(TransportKind::Ws),
            false,
            "a session on chatwire.v1.json lists json-frames (skipped if the mapping is not served)",
            json_frames
        ),
    ]
}

async fn connect_response(ctx: Ctx) -> Check {
    let user = ctx.user("alice");
    let client = ctx.open().await?;
    let token = ctx.token(&user).await?;
    let response = within("ConnectResponse", client.connect(&token)).await??;
    ensure(
        !response.session_id.is_empty(),
        "a non-empty session_id",
        &response.session_id,
    )?;
    ensure_eq("user_id", user.as_str(), response.user_id.as_str())?;
    ensure(
        response.heartbeat_interval_ms > 0,
        "heartbeat_interval_ms > 0",
        response.heartbeat_interval_ms,
    )?;
    ensure(
        response.server_time_ms > 0,
        "server_time_ms set",
        response.server_time_ms,
    )?;
    ensure(
        response.server.is_some(),
        "server info set",
        &response.server,
    )?;
    if let Some(exp) = expiry_s(&token) {
        ensure_eq(
            "token_expires_at_ms",
            exp * 1000,
            response.token_expires_at_ms,
        )?;
    }
    let limits = response
        .limits
        .ok_or_else(|| Failure::new("limits set", "no limits"))?;
    let fields = [
        limits.max_client_frame_bytes,
        limits.max_server_frame_bytes,
        limits.max_content_bytes,
        limits.max_text_chars,
        limits.max_app_payload_bytes,
        limits.max_attachments,
        limits.max_mentions,
        limits.max_in_flight_requests,
        limits.max_page_size,
        limits.max_presence_watch,
        limits.max_group_members,
        limits.send_rate_per_second,
        limits.send_burst,
        limits.idempotency_window_s,
        limits.typing_throttle_ms,
        limits.typing_ttl_ms,
    ];
    ensure(
        fields.iter().all(|v| *v > 0),
        "every limit set (no zero placeholders)",
        limits,
    )?;
    ensure(
        limits.max_client_frame_bytes >= 16_384,
        "max_client_frame_bytes >= 16384",
        limits,
    )?;
    ensure(limits.max_page_size <= 100, "max_page_size <= 100", limits)?;
    ensure(
        limits.idempotency_window_s >= 86_400,
        "idempotency_window_s >= 86400",
        limits,
    )?;
    let second = ctx.session(&user).await?.1;
    ensure(
        second.session_id != response.session_id,
        "a session_id unique per session",
        &second.session_id,
    )
}

async fn request_before_connect(ctx: Ctx) -> Check {
    let client = ctx.open().await?;
    let frame = ClientFrame {
        id: 7,
        trace_id: String::new(),
        request: Some(Request::Ping(v1::PingRequest::default())),
    };
    client.send_frame(&frame).await?;
    let reply = within("the error reply", client.next_reply()).await??;
    ensure_eq("reply.request_id", 7, reply.request_id)?;
    let result = reply
        .result
        .clone()
        .ok_or_else(|| Failure::new("a result", "none"))?;
    let as_error = match result {
        v1::reply::Result::Error(err) => Err(crate::client::ClientError::Server(err)),
        other => Ok(other),
    };
    ensure_error(as_error, ErrorCode::FailedPrecondition, None)?;
    ensure_disconnect(&client, CloseCode::ProtocolViolation).await?;
    ensure_closed(&client, CloseCode::ProtocolViolation).await
}

async fn second_connect(ctx: Ctx) -> Check {
    let user = ctx.user("alice");
    let client = ctx.client(&user).await?;
    let token = ctx.token(&user).await?;
    ensure_error(
        within("the reply", client.connect(&token)).await?,
        ErrorCode::FailedPrecondition,
        None,
    )?;
    super::barrier(&client).await
}

async fn capabilities(ctx: Ctx) -> Check {
    let user = ctx.user("alice");
    let client = ctx.open().await?;
    let token = ctx.token(&user).await?;
    let offered = vec![
        "x-conformance-unknown".to_owned(),
        "typing-datagrams".to_owned(),
    ];
    let response = within(
        "ConnectResponse",
        client.connect_with(v1::ConnectRequest {
            token,
            client: Some(client_info()),
            capabilities: offered,
            ..Default::default()
        }),
    )
    .await??;
    let caps = &response.capabilities;
    ensure(
        !caps.iter().any(|c| c == "x-conformance-unknown"),
        "unknown offered names ignored",
        caps,
    )?;
    ensure(
        !caps.iter().any(|c| c == "json-frames"),
        "no json-frames on the binary mapping",
        caps,
    )?;
    if ctx.kind() == TransportKind::Ws {
        ensure(
            !caps.iter().any(|c| c == "typing-datagrams"),
            "no typing-datagrams on WebSocket",
            caps,
        )?;
    }
    let server_only = [
        "json-frames",
        "member-invites",
        "presence-room-watch",
        "moderation",
        "edit-history",
        "message-reports",
        "search",
        "contacts",
        "typing-datagrams",
    ];
    ensure(
        caps.iter()
            .all(|c| server_only.contains(&c.as_str()) || c.starts_with("x-")),
        "only offered or server-only registered names",
        caps,
    )
}

async fn no_subprotocol(ctx: Ctx) -> Check {
    let ws = ctx
        .ws()
        .ok_or_else(|| Failure::Skip("websocket only".into()))?;
    let target = ws.clone().with_subprotocols(Vec::<String>::new());
    match target.connect().await {
        Err(TransportError::Refused { status: 400 }) => Ok(()),
        Err(other) => Err(Failure::new(
            "HTTP 400 or an upgrade closed with 4009",
            other.to_string(),
        )),
        Ok(transport) => {
            let client = Client::new(transport, Default::default());
            ensure_closed(&client, CloseCode::UnsupportedVersion).await
        }
    }
}

async fn foreign_origin(ctx: Ctx) -> Check {
    let ws = ctx
        .ws()
        .ok_or_else(|| Failure::Skip("websocket only".into()))?;
    let target = ws.clone().with_origin("https://evil.conformance.invalid");
    match target.connect().await {
        Err(TransportError::Refused { status: 403 }) => Ok(()),
        Err(other) => Err(Failure::new("HTTP 403", other.to_string())),
        Ok(_) => Err(Failure::new("HTTP 403", "the upgrade succeeded")),
    }
}

async fn token_in_url(ctx: Ctx) -> Check {
    let ws = ctx
        .ws()
        .ok_or_else(|| Failure::Skip("websocket only".into()))?;
    let token = ctx.token(&ctx.user("alice")).await?;
    let mut target = ws.clone();
    target.url = format!("{}?token={token}&access_token={token}", target.url);
    let client = match target.connect().await {
        Ok(transport) => Client::new(transport, Default::default()),
        // Refusing a URL with a query string is also "not using it to authenticate".
        Err(TransportError::Refused { .. }) => return Ok(()),
        Err(other) => return Err(Failure::new("the upgrade completes", other.to_string())),
    };
    let ping = within("the reply", client.ping(v1::PingRequest::default())).await?;
    ensure_error(ping, ErrorCode::FailedPrecondition, None)
}

async fn large_connect(ctx: Ctx) -> Check {
    let client = ctx.open().await?;
    let token = ctx.token(&ctx.user("alice")).await?;
    let mut connect = v1::ConnectRequest {
        token,
        client: Some(client_info()),
        ..Default::default()
    }
    .encode_to_vec();
    // Field 1000, length-delimited: unknown to every v1 peer, so it must be ignored.
    let padding = 16_400usize.saturating_sub(connect.len());
    prost::encoding::encode_key(
        1000,
        prost::encoding::WireType::LengthDelimited,
        &mut connect,
    );
    prost::encoding::encode_varint(padding as u64, &mut connect);
    connect.extend(std::iter::repeat_n(b'p', padding));
    let mut frame = BytesMut::new();
    prost::encoding::uint64::encode(1, &1_000_000u64, &mut frame);
    prost::encoding::encode_key(10, prost::encoding::WireType::LengthDelimited, &mut frame);
    prost::encoding::encode_varint(connect.len() as u64, &mut frame);
    frame.put_slice(&connect);
    ensure(
        frame.len() >= 16_384,
        "a Connect frame of at least 16 KiB",
        frame.len(),
    )?;
    let mut bytes = BytesMut::new();
    prost::encoding::encode_varint(frame.len() as u64, &mut bytes);
    bytes.put_slice(&frame);
    client.send_raw(bytes.freeze()).await?;
    let reply = within("the reply to Connect", client.next_reply()).await??;
    ensure_eq("reply.request_id", 1_000_000, reply.request_id)?;
    ensure(
        matches!(reply.result, Some(v1::reply::Result::Connect(_))),
        "a ConnectResponse",
        &reply.result,
    )
}

async fn in_order_after_connect(ctx: Ctx) -> Check {
    let client = ctx.open().await?;
    let token = ctx.token(&ctx.user("alice")).await?;
    let frames = [
        ClientFrame {
            id: 1_000,
            trace_id: String::new(),
            request: Some(Request::Connect(v1::ConnectRequest {
                token,
                client: Some(client_info()),
                ..Default::default()
            })),
        },
        ClientFrame {
            id: 1_001,
            trace_id: String::new(),
            request: Some(Request::Ping(v1::PingRequest { client_time_ms: 42 })),
        },
    ];
    client.send_batch(&frames).await?;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let reply = within("the replies", client.next_reply()).await??;
        seen.push((reply.request_id, reply.result));
    }
    seen.sort_by_key(|(id, _)| *id);
    ensure(
        matches!(seen[0].1, Some(v1::reply::Result::Connect(_))),
        "Connect answered with ConnectResponse",
        &seen[0],
    )?;
    ensure(
        matches!(seen[1].1, Some(v1::reply::Result::Ping(_))),
        "Ping answered in the new session",
        &seen[1],
    )
}

async fn connect_with_id_zero(ctx: Ctx) -> Check {
    let client = ctx.open().await?;
    let frame = ClientFrame {
        id: 0,
        trace_id: String::new(),
        request: Some(Request::Connect(v1::ConnectRequest {
            token: ctx.token(&ctx.user("alice")).await?,
            client: Some(client_info()),
            ..Default::default()
        })),
    };
    client.send_frame(&frame).await?;
    let reply = within("the error reply", client.next_reply()).await??;
    ensure(
        matches!(reply.result, Some(v1::reply::Result::Error(_))),
        "an error reply, not a session",
        &reply,
    )?;
    ensure_closed(&client, CloseCode::ProtocolViolation).await
}

async fn json_frames(ctx: Ctx) -> Check {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let ws = ctx
        .ws()
        .ok_or_else(|| Failure::Skip("websocket only".into()))?;
    let token = ctx.token(&ctx.user("alice")).await?;
    let mut request = ws
        .url
        .as_str()
        .into_client_request()
        .map_err(|err| Failure::new("a valid URL", err.to_string()))?;
    let protocol = "chatwire.v1.json"
        .parse()
        .map_err(|_| Failure::new("a header value", "invalid"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol);
    let (mut socket, response) =
        match within("the upgrade", tokio_tungstenite::connect_async(request)).await? {
            Ok(done) => done,
            Err(_) => {
                return Err(Failure::Skip(
                    "chatwire.v1.json is not served (R-2.4.1)".into(),
                ));
            }
        };
    let selected = response
        .headers()
        .get("Sec-WebSocket-Protocol")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if selected.as_deref() != Some("chatwire.v1.json") {
        return Err(Failure::Skip(format!(
            "chatwire.v1.json is not served (R-2.4.1): selected {selected:?}"
        )));
    }
    let connect = serde_json::json!({"id": "1", "connect": {"token": token}});
    socket
        .send(Message::Text(connect.to_string().into()))
        .await
        .map_err(|err| Failure::new("the Connect is sent", err.to_string()))?;
    let reply = loop {
        match within("the reply to Connect", socket.next()).await? {
            Some(Ok(Message::Text(text))) => {
                let frame: serde_json::Value = serde_json::from_str(&text)
                    .map_err(|err| Failure::new("a JSON ServerFrame", err.to_string()))?;
                if frame.get("reply").is_some() {
                    break frame;
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            other => return Err(Failure::new("a JSON reply", format!("{other:?}"))),
        }
    };
    let caps: Vec<String> = reply
        .pointer("/reply/connect/capabilities")
        .and_then(|c| c.as_array())
        .map(|c| {
            c.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ensure(
        caps.iter().any(|c| c == "json-frames"),
        "ConnectResponse.capabilities lists json-frames on chatwire.v1.json (R-22.1.1)",
        &reply,
    )
}
