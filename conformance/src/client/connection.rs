//! [`Client`]: one Chatwire connection over any [`Transport`]. It assigns request ids from 1,
//! encodes one frame per transport unit, correlates replies with their calls, queues events and
//! replies nobody waits for, and reports how the connection ended.
//!
//! Ordering guarantee: frames are dispatched in arrival order, so when a call returns, every
//! event that arrived before its reply is already queued ([`Client::try_next_event`] sees it).
//! Nothing here has a timeout; tests wrap awaits in `tokio::time::timeout` only as hang guards.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};
use chatwire_protocol::limits::DEFAULT_MAX_SERVER_FRAME_BYTES;
use chatwire_protocol::v1::{self, ClientFrame, ErrorCode, Event, Reply, client_frame, reply};
use chatwire_protocol::{ServerFrameDecoder, encode_frame};
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

use super::reader::{Reader, RegisterError, Shared, SharedTx};
use super::transport::{CloseInfo, Transport, TransportError, TransportFactory};

/// Why a call or a read failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an error reply (typed helpers only; [`Client::call`] returns it
    /// as `Ok(reply::Result::Error(_))`).
    #[error("server error {:?}: {}", .0.code(), .0.message)]
    Server(v1::Error),
    /// The connection ended before the reply or event came.
    #[error("connection closed: {0}")]
    Closed(CloseInfo),
    /// The transport failed to open.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The reply carried a result of another request type.
    #[error("unexpected reply result: {0:?}")]
    UnexpectedReply(Box<reply::Result>),
    /// The reply carried no result this client knows.
    #[error("reply to request {0} has no known result")]
    EmptyReply(u64),
    /// A call with this id is already waiting for its reply.
    #[error("request id {0} is already in flight")]
    DuplicateId(u64),
}

impl ClientError {
    /// Maps a reply result that is not the expected one: an error reply is [`ClientError::Server`].
    pub fn from_result(result: reply::Result) -> Self {
        match result {
            reply::Result::Error(err) => Self::Server(err),
            other => Self::UnexpectedReply(Box::new(other)),
        }
    }

    /// The error code of a [`ClientError::Server`].
    pub fn server_code(&self) -> Option<ErrorCode> {
        match self {
            Self::Server(err) => Some(err.code()),
            _ => None,
        }
    }

    /// The close of a [`ClientError::Closed`].
    pub fn close_info(&self) -> Option<&CloseInfo> {
        match self {
            Self::Closed(info) => Some(info),
            _ => None,
        }
    }
}

/// Client settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// The largest server frame accepted; larger ones close the connection as a protocol
    /// violation.
    pub max_server_frame_bytes: usize,
    /// How many events may wait unread. When full, the client stops reading the transport (so a
    /// small value lets tests provoke a slow-consumer close); replies wait behind it too.
    pub event_buffer: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            max_server_frame_bytes: DEFAULT_MAX_SERVER_FRAME_BYTES,
            event_buffer: 65_536,
        }
    }
}

/// One Chatwire connection. All methods take `&self`, so calls and event reads can run
/// concurrently (`tokio::join!`). Must be created inside a tokio runtime; dropping it aborts the
/// reader and drops the connection without a close.
#[derive(Debug)]
pub struct Client {
    tx: SharedTx,
    shared: Arc<Shared>,
    events: Mutex<mpsc::Receiver<Event>>,
    unclaimed: Mutex<mpsc::UnboundedReceiver<Reply>>,
    next_id: AtomicU64,
    reader: JoinHandle<()>,
}

impl Drop for Client {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Client {
    /// Opens a connection with the factory (no Chatwire frame is sent yet).
    pub async fn open(factory: &dyn TransportFactory) -> Result<Self, ClientError> {
        Self::open_with(factory, ClientOptions::default()).await
    }

    /// Opens a connection with the factory and these options.
    pub async fn open_with(
        factory: &dyn TransportFactory,
        options: ClientOptions,
    ) -> Result<Self, ClientError> {
        Ok(Self::new(factory.open().await?, options))
    }

    /// Runs a client on an open transport.
    pub fn new(transport: Transport, options: ClientOptions) -> Self {
        let tx: SharedTx = Arc::new(Mutex::new(transport.tx));
        let shared = Arc::new(Shared::new());
        let (events_tx, events) = mpsc::channel(options.event_buffer.max(1));
        let (unclaimed_tx, unclaimed) = mpsc::unbounded_channel();
        let reader = Reader {
            rx: transport.rx,
            tx: Arc::clone(&tx),
            framing: transport.framing,
            decoder: ServerFrameDecoder::new(options.max_server_frame_bytes),
            shared: Arc::clone(&shared),
            events: events_tx,
            unclaimed: unclaimed_tx,
        };
        Self {
            tx,
            shared,
            events: Mutex::new(events),
            unclaimed: Mutex::new(unclaimed),
            next_id: AtomicU64::new(1),
            reader: tokio::spawn(reader.run()),
        }
    }

    /// Takes the next request id (1, 2, ...), for frames built by hand.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `request` with the next id and returns the reply's result; an error reply is
    /// `Ok(reply::Result::Error(_))`.
    pub async fn call(&self, request: client_frame::Request) -> Result<reply::Result, ClientError> {
        self.call_traced(request, "").await
    }

    /// [`Client::call`] with a trace id.
    pub async fn call_traced(
        &self,
        request: client_frame::Request,
        trace_id: &str,
    ) -> Result<reply::Result, ClientError> {
        let frame = ClientFrame {
            id: self.next_id(),
            trace_id: trace_id.to_owned(),
            request: Some(request),
        };
        self.call_frame(&frame).await
    }

    /// Sends a frame built by hand (any id) and waits for the reply carrying its id.
    pub async fn call_frame(&self, frame: &ClientFrame) -> Result<reply::Result, ClientError> {
        let waiter = self.shared.register(frame.id).map_err(|err| match err {
            RegisterError::Closed(info) => ClientError::Closed(info),
            RegisterError::DuplicateId => ClientError::DuplicateId(frame.id),
        })?;
        if let Err(err) = self.send_frame(frame).await {
            self.shared.unregister(frame.id);
            return Err(err);
        }
        match waiter.await {
            Ok(reply) => reply.result.ok_or(ClientError::EmptyReply(frame.id)),
            Err(_) => Err(ClientError::Closed(self.wait_closed().await)),
        }
    }

    /// Sends one frame as one unit without waiting for a reply; its reply, if any, comes from
    /// [`Client::next_reply`]. No size limit is applied.
    pub async fn send_frame(&self, frame: &ClientFrame) -> Result<(), ClientError> {
        self.send_batch(std::slice::from_ref(frame)).await
    }

    /// Sends several frames in one unit (one WebSocket message).
    pub async fn send_batch(&self, frames: &[ClientFrame]) -> Result<(), ClientError> {
        let mut buf = BytesMut::new();
        for frame in frames {
            // Infallible: no limit.
            let _ = encode_frame(frame, usize::MAX, &mut buf);
        }
        self.send_raw(buf.freeze()).await
    }

    /// Sends bytes as one unit, as they are (garbage, truncated or oversized frames).
    pub async fn send_raw(&self, data: Bytes) -> Result<(), ClientError> {
        let sent = self.tx.lock().await.send(data).await;
        match sent {
            Ok(()) => Ok(()),
            // A failed write means the connection is going: report how it ended.
            Err(_) => Err(ClientError::Closed(self.wait_closed().await)),
        }
    }

    /// The next event, waiting as long as it takes; after the connection ended and the queue
    /// is empty, [`ClientError::Closed`].
    pub async fn next_event(&self) -> Result<Event, ClientError> {
        match self.events.lock().await.recv().await {
            Some(event) => Ok(event),
            None => Err(ClientError::Closed(self.wait_closed().await)),
        }
    }

    /// The next event if one is already queued.
    pub fn try_next_event(&self) -> Option<Event> {
        self.events.try_lock().ok()?.try_recv().ok()
    }

    /// Events up to and including the first one `done` accepts.
    pub async fn events_until(
        &self,
        mut done: impl FnMut(&Event) -> bool,
    ) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        loop {
            let event = self.next_event().await?;
            let stop = done(&event);
            events.push(event);
            if stop {
                return Ok(events);
            }
        }
    }

    /// The next reply no call was waiting for (frames sent with [`Client::send_frame`], or a
    /// reply with an unknown id), in arrival order.
    pub async fn next_reply(&self) -> Result<Reply, ClientError> {
        match self.unclaimed.lock().await.recv().await {
            Some(reply) => Ok(reply),
            None => Err(ClientError::Closed(self.wait_closed().await)),
        }
    }

    /// How the connection ended, or `None` while it is open.
    pub fn closed(&self) -> Option<CloseInfo> {
        self.shared.closed.borrow().clone()
    }

    /// Waits until the connection has ended and says how.
    pub async fn wait_closed(&self) -> CloseInfo {
        let mut closed = self.shared.closed.subscribe();
        let info = closed.wait_for(Option::is_some).await;
        // The sender lives in `self.shared`, so `wait_for` cannot fail while `self` exists.
        info.ok()
            .and_then(|info| info.clone())
            .unwrap_or_else(|| CloseInfo::abnormal("reader stopped"))
    }

    /// Sends a close with this code and reason, then waits for the connection to end.
    pub async fn close(&self, code: u16, reason: &str) -> CloseInfo {
        self.shared.set_local_close(code, reason);
        let _ = self.tx.lock().await.close(code, reason).await;
        self.wait_closed().await
    }
}
