//! The client's background reader: reads the transport, decodes server frames and dispatches
//! them in arrival order (replies to the caller waiting on their id, other replies and events to
//! their queues), then records how the connection ended and fails the calls still waiting.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chatwire_protocol::v1::{CloseCode, Event, Reply, ServerFrame, server_frame};
use chatwire_protocol::{DecodeError, ServerFrameDecoder};
use tokio::sync::{mpsc, oneshot, watch};

use super::transport::{CloseInfo, ClosedBy, Framing, TransportRx, TransportTx};

/// The transport's sending half, shared by callers and the reader (which closes on bad input).
pub(super) type SharedTx = Arc<tokio::sync::Mutex<Box<dyn TransportTx>>>;

/// State shared by the [`Client`](super::Client) handle and its reader task.
#[derive(Debug)]
pub(super) struct Shared {
    /// Callers waiting for a reply, by request id; `None` once the connection has ended.
    pending: Mutex<Option<HashMap<u64, oneshot::Sender<Reply>>>>,
    /// The close this side sent, if it closed first.
    local_close: Mutex<Option<(u16, String)>>,
    /// How the connection ended, once it has.
    pub(super) closed: watch::Sender<Option<CloseInfo>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Why a caller could not wait for a reply.
pub(super) enum RegisterError {
    Closed(CloseInfo),
    DuplicateId,
}

impl Shared {
    pub(super) fn new() -> Self {
        Self {
            pending: Mutex::new(Some(HashMap::new())),
            local_close: Mutex::new(None),
            closed: watch::Sender::new(None),
        }
    }

    /// Registers a caller for the reply to `id`, before its frame is sent.
    pub(super) fn register(&self, id: u64) -> Result<oneshot::Receiver<Reply>, RegisterError> {
        let mut pending = lock(&self.pending);
        let Some(pending) = pending.as_mut() else {
            let info = self.closed.borrow().clone();
            return Err(RegisterError::Closed(
                info.unwrap_or_else(|| CloseInfo::abnormal("closed")),
            ));
        };
        if pending.contains_key(&id) {
            return Err(RegisterError::DuplicateId);
        }
        let (tx, rx) = oneshot::channel();
        pending.insert(id, tx);
        Ok(rx)
    }

    pub(super) fn unregister(&self, id: u64) {
        if let Some(pending) = lock(&self.pending).as_mut() {
            pending.remove(&id);
        }
    }

    pub(super) fn set_local_close(&self, code: u16, reason: &str) {
        lock(&self.local_close).get_or_insert_with(|| (code, reason.to_owned()));
    }

    /// Records the end, then fails every waiting caller (in that order, so a failed caller
    /// always finds the close info).
    fn finish(&self, info: CloseInfo) {
        self.closed.send_replace(Some(info));
        lock(&self.pending).take();
    }

    fn take_pending(&self, id: u64) -> Option<oneshot::Sender<Reply>> {
        lock(&self.pending).as_mut()?.remove(&id)
    }
}

/// Where the reader delivers what it decodes.
pub(super) struct Reader {
    pub(super) rx: Box<dyn TransportRx>,
    pub(super) tx: SharedTx,
    pub(super) framing: Framing,
    pub(super) decoder: ServerFrameDecoder,
    pub(super) shared: Arc<Shared>,
    pub(super) events: mpsc::Sender<Event>,
    pub(super) unclaimed: mpsc::UnboundedSender<Reply>,
}

impl Reader {
    /// Runs until the connection ends.
    pub(super) async fn run(mut self) {
        let info = loop {
            match self.rx.recv().await {
                Some(Ok(data)) => {
                    self.decoder.push(&data);
                    if let Err(err) = self.dispatch().await {
                        break self.give_up(err).await;
                    }
                }
                Some(Err(err)) => break CloseInfo::abnormal(err.to_string()),
                None => break self.ended(),
            }
        };
        self.shared.finish(info);
    }

    /// Delivers every whole frame buffered; on a message transport the message must end on a
    /// frame boundary.
    async fn dispatch(&mut self) -> Result<(), DecodeError> {
        while let Some(frame) = self.decoder.next_frame()? {
            self.deliver(frame).await;
        }
        if self.framing == Framing::Messages {
            self.decoder.finish()?;
        }
        Ok(())
    }

    async fn deliver(&mut self, frame: ServerFrame) {
        match frame.frame {
            Some(server_frame::Frame::Reply(reply)) => {
                let reply = match self.shared.take_pending(reply.request_id) {
                    Some(waiter) => match waiter.send(reply) {
                        Ok(()) => return,
                        // The caller gave up: keep the reply for `next_reply`.
                        Err(reply) => reply,
                    },
                    None => reply,
                };
                let _ = self.unclaimed.send(reply);
            }
            // A full queue stops reading (back-pressure); a dropped client drops events.
            Some(server_frame::Frame::Event(event)) => {
                let _ = self.events.send(event).await;
            }
            // A frame kind newer than this client: ignored, as v1 allows additions.
            None => {}
        }
    }

    /// The server sent bytes that are not valid frames: close as a protocol violation.
    async fn give_up(&mut self, err: DecodeError) -> CloseInfo {
        let code = CloseCode::ProtocolViolation as u16;
        let reason = format!("client: undecodable server input: {err}");
        let _ = self.tx.lock().await.close(code, &reason).await;
        CloseInfo {
            code,
            reason,
            by: ClosedBy::Local,
        }
    }

    fn ended(&self) -> CloseInfo {
        if let Some((code, reason)) = lock(&self.shared.local_close).clone() {
            return CloseInfo {
                code,
                reason,
                by: ClosedBy::Local,
            };
        }
        self.rx
            .peer_close()
            .unwrap_or_else(|| CloseInfo::abnormal("connection ended without a close"))
    }
}
