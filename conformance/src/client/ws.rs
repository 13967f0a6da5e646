//! The WebSocket transport (tokio-tungstenite, plain `ws://`): [`WsTarget`] says where and how to
//! connect and opens [`Transport`]s made of a [`WsTx`] and a [`WsRx`].
//!
//! The handshake offers the subprotocols of the target (`chatwire.v1` by default) and fails with
//! [`TransportError::Subprotocol`] unless the server selects one of them. Each Chatwire unit is
//! one binary message; a text message from the server is a transport protocol error. The close
//! frame's code and reason are kept as the peer's [`CloseInfo`].

use std::net::SocketAddr;

use async_trait::async_trait;
use bytes::Bytes;
use chatwire_protocol::WS_SUBPROTOCOL;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::transport::{CloseInfo, Framing, Transport, TransportError, TransportFactory};
use super::transport::{TransportRx, TransportTx};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Where and how to open a WebSocket connection. It is a [`TransportFactory`]: every
/// [`TransportFactory::open`] makes a new connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsTarget {
    /// The endpoint, for example `ws://127.0.0.1:8080/v1/ws`.
    pub url: String,
    /// The `Origin` header to send, if any.
    pub origin: Option<String>,
    /// The subprotocols to offer, in order of preference; `[chatwire.v1]` by default. When not
    /// empty, the server must select one of them. Empty sends no `Sec-WebSocket-Protocol`.
    pub subprotocols: Vec<String>,
}

impl WsTarget {
    /// The path of the v1 WebSocket endpoint.
    pub const DEFAULT_PATH: &'static str = "/v1/ws";

    /// `ws://{addr}/v1/ws`, offering `chatwire.v1`, without an Origin.
    pub fn new(addr: SocketAddr) -> Self {
        Self::from_url(format!("ws://{addr}{}", Self::DEFAULT_PATH))
    }

    /// Any endpoint URL, offering `chatwire.v1`, without an Origin.
    pub fn from_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            origin: None,
            subprotocols: vec![WS_SUBPROTOCOL.to_owned()],
        }
    }

    /// The same target with an `Origin` header.
    pub fn with_origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }

    /// The same target offering other subprotocols (none when empty).
    pub fn with_subprotocols<S: Into<String>>(
        mut self,
        protocols: impl IntoIterator<Item = S>,
    ) -> Self {
        self.subprotocols = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// Opens a connection and checks the subprotocol the server selected.
    pub async fn connect(&self) -> Result<Transport, TransportError> {
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|err| TransportError::Connect(err.to_string()))?;
        let headers = request.headers_mut();
        if !self.subprotocols.is_empty() {
            headers.insert(
                "Sec-WebSocket-Protocol",
                header(&self.subprotocols.join(", "))?,
            );
        }
        if let Some(origin) = &self.origin {
            headers.insert("Origin", header(origin)?);
        }
        let (ws, response) = tokio_tungstenite::connect_async_with_config(request, None, true)
            .await
            .map_err(handshake_error)?;
        let selected = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .and_then(|value| value.to_str().ok());
        if !self.subprotocols.is_empty()
            && !selected.is_some_and(|s| self.subprotocols.iter().any(|p| p == s))
        {
            return Err(TransportError::Subprotocol(format!(
                "offered {:?}, server selected {selected:?}",
                self.subprotocols
            )));
        }
        let (sink, stream) = ws.split();
        Ok(Transport {
            tx: Box::new(WsTx { sink }),
            rx: Box::new(WsRx {
                stream,
                peer_close: None,
                done: false,
            }),
            framing: Framing::Messages,
        })
    }
}

#[async_trait]
impl TransportFactory for WsTarget {
    async fn open(&self) -> Result<Transport, TransportError> {
        self.connect().await
    }
}

fn header(value: &str) -> Result<HeaderValue, TransportError> {
    HeaderValue::from_str(value).map_err(|err| TransportError::Connect(err.to_string()))
}

fn handshake_error(err: tungstenite::Error) -> TransportError {
    use tungstenite::error::ProtocolError;
    match err {
        tungstenite::Error::Http(response) => TransportError::Refused {
            status: response.status().as_u16(),
        },
        tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(err)) => {
            TransportError::Subprotocol(err.to_string())
        }
        tungstenite::Error::Io(err) => TransportError::Connect(err.to_string()),
        tungstenite::Error::Url(err) => TransportError::Connect(err.to_string()),
        other => TransportError::Handshake(other.to_string()),
    }
}

/// The sending half of a WebSocket connection: one binary message per unit.
#[derive(Debug)]
pub struct WsTx {
    sink: SplitSink<Ws, Message>,
}

#[async_trait]
impl TransportTx for WsTx {
    async fn send(&mut self, data: Bytes) -> Result<(), TransportError> {
        self.sink
            .send(Message::Binary(data))
            .await
            .map_err(|err| TransportError::Io(err.to_string()))
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        let frame = CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        self.sink
            .send(Message::Close(Some(frame)))
            .await
            .map_err(|err| TransportError::Io(err.to_string()))
    }
}

/// The receiving half of a WebSocket connection. Pings are answered by tungstenite itself.
#[derive(Debug)]
pub struct WsRx {
    stream: SplitStream<Ws>,
    peer_close: Option<CloseInfo>,
    done: bool,
}

#[async_trait]
impl TransportRx for WsRx {
    async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        while !self.done {
            match self.stream.next().await {
                Some(Ok(Message::Binary(data))) => return Some(Ok(data)),
                Some(Ok(Message::Text(_))) => {
                    self.done = true;
                    let err = "text message on the binary subprotocol".to_owned();
                    return Some(Err(TransportError::Protocol(err)));
                }
                Some(Ok(Message::Close(frame))) => {
                    // Keep reading: tungstenite sends the close reply while the stream drains.
                    self.peer_close = Some(match frame {
                        Some(frame) => CloseInfo::peer(frame.code.into(), frame.reason.as_str()),
                        None => CloseInfo::peer(CloseInfo::NO_STATUS, ""),
                    });
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                None
                | Some(Err(
                    tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed,
                )) => self.done = true,
                Some(Err(err)) => {
                    self.done = true;
                    if self.peer_close.is_none() {
                        return Some(Err(TransportError::Io(err.to_string())));
                    }
                }
            }
        }
        None
    }

    fn peer_close(&self) -> Option<CloseInfo> {
        self.peer_close.clone()
    }
}
