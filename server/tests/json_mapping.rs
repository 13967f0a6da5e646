//! The proto3 JSON mapping (`chatwire.v1.json`, docs/protocol.md §2.4) over a raw WebSocket:
//! one JSON frame per text message, bad JSON answered with a request_id 0 error.

mod support;

use futures_util::{SinkExt, StreamExt};
use support::server::{TestServer, within};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(socket: &mut Socket) -> serde_json::Value {
    loop {
        match within(socket.next()).await.expect("open").expect("message") {
            Message::Text(text) => return serde_json::from_str(&text).expect("server sends JSON"),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

async fn open_json(server: &TestServer) -> Socket {
    let mut request = format!("ws://{}/v1/ws", server.addr)
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "chatwire.v1.json".parse().expect("header"),
    );
    let (socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    assert_eq!(
        response
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("chatwire.v1.json")
    );
    socket
}

#[tokio::test]
async fn a_json_session_connects_sends_and_gets_errors_as_json() {
    let server = TestServer::start().await;
    let mut socket = open_json(&server).await;
    let connect = serde_json::json!({"id": "1", "connect": {"token": server.token("alice")}});
    socket
        .send(Message::Text(connect.to_string().into()))
        .await
        .expect("send");
    let reply = next_json(&mut socket).await;
    assert_eq!(reply["reply"]["requestId"], "1");
    assert_eq!(reply["reply"]["connect"]["userId"], "alice");

    socket
        .send(Message::Text("{not json".into()))
        .await
        .expect("send");
    let error = next_json(&mut socket).await;
    assert_eq!(
        error["reply"]["error"]["code"],
        "ERROR_CODE_INVALID_ARGUMENT"
    );
    assert!(
        error["reply"].get("requestId").is_none(),
        "request_id 0 is the default, omitted"
    );

    let create = serde_json::json!({"id": "2", "createGroup": {"name": "json room"}});
    socket
        .send(Message::Text(create.to_string().into()))
        .await
        .expect("send");
    let created = next_json(&mut socket).await;
    let room = created["reply"]["createGroup"]["room"]["id"]
        .as_str()
        .expect("room id")
        .to_owned();
    let send = serde_json::json!({"id": "3", "send": {"roomId": room, "clientMsgId": "j1", "content": {"text": "hi from JSON"}}});
    socket
        .send(Message::Text(send.to_string().into()))
        .await
        .expect("send");
    let mut sent = next_json(&mut socket).await;
    while sent.get("reply").is_none() {
        sent = next_json(&mut socket).await;
    }
    assert_eq!(sent["reply"]["requestId"], "3");
    assert_eq!(sent["reply"]["send"]["ordinal"], "1");

    // Binary messages are not part of this mapping.
    socket
        .send(Message::Binary(vec![0].into()))
        .await
        .expect("send");
    loop {
        match within(socket.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => {
                assert_eq!(u16::from(frame.code), 4000);
                break;
            }
            Some(Ok(_)) => {}
            other => panic!("expected a close, got {other:?}"),
        }
    }
    server.stop().await;
}
