//! The gateway side: sends each command to its shard queue and waits for the writer's answer.
//!
//! ```text
//!  execute ─(in-flight cap per shard, else RATE_LIMITED)─▶ publisher task ─▶ shard queue
//!     ▲                                                     (confirm + mandatory;
//!     └──── oneshot by correlation id ◀── reply reader ◀──── nack: RATE_LIMITED,
//!                                         (amq.rabbitmq.reply-to)   returned: UNAVAILABLE)
//! ```
//!
//! One task publishes everything, in the order `execute` was first polled, on one channel: the
//! broker keeps a channel's order into a queue, so commands a caller starts back to back reach
//! the writer in that order. A command with no answer within the request timeout fails with a
//! retryable UNAVAILABLE; the client retries with the same client_msg_id and the writer
//! dedupes. While the broker is unreachable every command fails fast with UNAVAILABLE.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::BasicConsumeOptions;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection};
use tokio::sync::{mpsc, oneshot, watch};

use super::codec::{decode_reply, encode_command};
use super::{RabbitConfig, topology};
use crate::backend::amqp::{self, AmqpError};
use crate::backend::pipeline::shard_of;
use crate::chat::command::{Outcome, RoomCommand};
use crate::chat::error::ChatError;

/// The pseudo-queue of RabbitMQ's direct reply-to.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Pause between reconnect attempts.
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

type Answer = Result<Outcome, ChatError>;
type Pending = Arc<Mutex<HashMap<String, oneshot::Sender<Answer>>>>;

struct Request {
    shard: usize,
    body: Vec<u8>,
    reply: oneshot::Sender<Answer>,
}

/// Sends commands and waits for answers.
#[derive(Debug)]
pub(crate) struct Gateway {
    config: Arc<RabbitConfig>,
    requests: mpsc::UnboundedSender<Request>,
    in_flight: Vec<AtomicUsize>,
}

/// Gives back a shard's in-flight slot when the command finishes (or is dropped).
struct Slot<'a>(&'a AtomicUsize);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Gateway {
    /// Connects (failing if the broker cannot be reached now), declares the shard queues and
    /// starts the publisher task, which reconnects on its own after a failure.
    pub(crate) async fn start(
        config: Arc<RabbitConfig>,
        stop: watch::Receiver<bool>,
    ) -> Result<(Self, tokio::task::JoinHandle<()>), AmqpError> {
        let link = Link::open(&config).await?;
        let (requests, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(Arc::clone(&config), rx, link, stop));
        let in_flight = (0..config.shards).map(|_| AtomicUsize::new(0)).collect();
        Ok((
            Self {
                config,
                requests,
                in_flight,
            },
            task,
        ))
    }

    /// Runs one command on its room's writer. Everything up to the hand-over to the
    /// publisher happens on the first poll, so the order of first polls is the order of
    /// publishing.
    pub(crate) async fn execute(&self, command: RoomCommand) -> Answer {
        let shard = shard_of(command.room.as_str(), self.config.shards);
        let counter = self.in_flight.get(shard).ok_or(ChatError::Internal)?;
        let cap = self.config.max_in_flight_per_shard.max(1);
        if counter.fetch_add(1, Ordering::AcqRel) >= cap {
            counter.fetch_sub(1, Ordering::AcqRel);
            return Err(ChatError::RateLimited {
                retry_after_ms: self.config.rate_limit_retry_ms,
            });
        }
        let _slot = Slot(counter);
        let (reply, answer) = oneshot::channel();
        let body = encode_command(&command);
        self.requests
            .send(Request { shard, body, reply })
            .map_err(|_| ChatError::Unavailable("pipeline stopped".into()))?;
        match tokio::time::timeout(self.config.request_timeout, answer).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(_)) => Err(ChatError::Unavailable("pipeline stopped".into())),
            Err(_) => Err(ChatError::Unavailable(
                "no answer from the room writer in time".into(),
            )),
        }
    }
}

/// One connection's worth of publishing state.
struct Link {
    conn: Connection,
    channel: Channel,
    pending: Pending,
    replies: tokio::task::JoinHandle<()>,
}

impl Link {
    async fn open(config: &RabbitConfig) -> Result<Self, AmqpError> {
        let name = format!("chatwire gateway {}", config.node_id);
        let conn = amqp::connect(&config.amqp_url, &name, config.amqp_heartbeat_s).await?;
        let channel = amqp::confirm_channel(&conn).await?;
        topology::declare(&channel, config).await?;
        let consumer = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let pending = Pending::default();
        let replies = tokio::spawn(read_replies(consumer, Arc::clone(&pending)));
        Ok(Self {
            conn,
            channel,
            pending,
            replies,
        })
    }

    async fn close(self) {
        self.replies.abort();
        let _ = self.conn.close(200, "shutting down".into()).await;
        fail_all(&self.pending, "pipeline stopped");
    }
}

async fn read_replies(mut consumer: lapin::Consumer, pending: Pending) {
    while let Some(Ok(delivery)) = consumer.next().await {
        let Some(id) = delivery.properties.correlation_id() else {
            continue;
        };
        let answer = decode_reply(&delivery.data).unwrap_or_else(|err| {
            tracing::error!(error = %err, "undecodable reply from a room writer");
            Err(ChatError::Internal)
        });
        answer_request(&pending, id.as_str(), answer);
    }
    fail_all(&pending, "broker connection lost");
}

/// Waiters kept before those whose caller gave up (timed out, went away) are forgotten.
const PRUNE_PENDING_AT: usize = 1024;

/// Adds a waiter. A caller that times out drops its receiver, but its reply may never come
/// (the command was lost with a node): past [`PRUNE_PENDING_AT`] waiters, and then each time
/// their number doubled since the last prune, the abandoned ones are forgotten, so the map
/// holds the live waiters plus a bounded backlog at O(1) amortised cost (issue 15: the map
/// kept every timed-out waiter forever).
fn track(
    pending: &mut HashMap<String, oneshot::Sender<Answer>>,
    id: String,
    reply: oneshot::Sender<Answer>,
) {
    if pending.len() >= PRUNE_PENDING_AT && pending.len().is_power_of_two() {
        pending.retain(|_, waiter| !waiter.is_closed());
    }
    pending.insert(id, reply);
}

fn answer_request(pending: &Pending, id: &str, answer: Answer) {
    let waiter = pending.lock().ok().and_then(|mut p| p.remove(id));
    if let Some(waiter) = waiter {
        // The caller may have timed out; the outcome stands either way.
        let _ = waiter.send(answer);
    }
}

fn fail_all(pending: &Pending, reason: &str) {
    let waiters: Vec<_> = match pending.lock() {
        Ok(mut p) => p.drain().map(|(_, w)| w).collect(),
        Err(_) => return,
    };
    for waiter in waiters {
        let _ = waiter.send(Err(ChatError::Unavailable(reason.to_owned())));
    }
}

/// Why [`serve`] returned.
enum Served {
    Stopped,
    Broken,
}

async fn run(
    config: Arc<RabbitConfig>,
    mut rx: mpsc::UnboundedReceiver<Request>,
    first: Link,
    mut stop: watch::Receiver<bool>,
) {
    let mut link = Some(first);
    let ids = AtomicU64::new(0);
    loop {
        let current = match link.take() {
            Some(current) => current,
            None => match Link::open(&config).await {
                Ok(current) => current,
                Err(err) => {
                    tracing::warn!(error = %err, "gateway cannot reach the broker");
                    refuse_waiting(&mut rx);
                    if pause_or_stop(&mut stop).await {
                        return;
                    }
                    continue;
                }
            },
        };
        match serve(&config, &current, &mut rx, &mut stop, &ids).await {
            Served::Stopped => {
                current.close().await;
                return;
            }
            Served::Broken => {
                tracing::warn!("gateway lost its broker connection; reconnecting");
                current.close().await;
                refuse_waiting(&mut rx);
            }
        }
    }
}

/// Answers every queued request with UNAVAILABLE (the broker is unreachable).
fn refuse_waiting(rx: &mut mpsc::UnboundedReceiver<Request>) {
    while let Ok(request) = rx.try_recv() {
        let _ = request
            .reply
            .send(Err(ChatError::Unavailable("broker unreachable".into())));
    }
}

/// Waits [`RECONNECT_PAUSE`] (jittered, so the nodes do not all reconnect at once); true when
/// asked to stop meanwhile.
async fn pause_or_stop(stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = stop.changed() => true,
        () = tokio::time::sleep(crate::jitter::global().apply(RECONNECT_PAUSE)) => *stop.borrow(),
    }
}

async fn serve(
    config: &Arc<RabbitConfig>,
    link: &Link,
    rx: &mut mpsc::UnboundedReceiver<Request>,
    stop: &mut watch::Receiver<bool>,
    ids: &AtomicU64,
) -> Served {
    loop {
        let request = tokio::select! {
            _ = stop.changed() => return Served::Stopped,
            request = rx.recv() => match request {
                Some(request) => request,
                None => return Served::Stopped,
            },
        };
        if link.replies.is_finished() || !link.conn.status().connected() {
            let _ = request
                .reply
                .send(Err(ChatError::Unavailable("broker connection lost".into())));
            return Served::Broken;
        }
        let id = ids.fetch_add(1, Ordering::Relaxed).to_string();
        if let Ok(mut pending) = link.pending.lock() {
            track(&mut pending, id.clone(), request.reply);
        }
        let properties = BasicProperties::default()
            .with_correlation_id(id.as_str().into())
            .with_reply_to(DIRECT_REPLY_TO.into())
            .with_delivery_mode(2);
        let queue = topology::shard_queue(&config.queue_prefix, request.shard);
        let published = std::time::Instant::now();
        match amqp::publish_mandatory(&link.channel, "", &queue, &request.body, properties).await {
            Ok(confirm) => {
                tokio::spawn(settle(
                    (confirm, published),
                    Arc::clone(&link.pending),
                    id,
                    config.rate_limit_retry_ms,
                ));
            }
            Err(err) => {
                crate::telemetry::pipeline_confirmed(published, true);
                tracing::warn!(error = %err, "publishing a command failed");
                answer_request(
                    &link.pending,
                    &id,
                    Err(ChatError::Unavailable(err.to_string())),
                );
                return Served::Broken;
            }
        }
    }
}

/// Turns a publish's confirm into an answer when the command will never reach a writer.
async fn settle(
    (confirm, published): (lapin::PublisherConfirm, std::time::Instant),
    pending: Pending,
    id: String,
    retry_ms: u32,
) {
    let settled = amqp::settle(confirm).await;
    crate::telemetry::pipeline_confirmed(published, settled.is_err());
    let failure = match settled {
        Ok(()) => return,
        // A full shard queue: back off, then retry with the same client_msg_id.
        Err(AmqpError::Nacked) => ChatError::RateLimited {
            retry_after_ms: retry_ms,
        },
        Err(err) => ChatError::Unavailable(err.to_string()),
    };
    answer_request(&pending, &id, Err(failure));
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use tokio::sync::oneshot;

    #[test]
    fn waiters_whose_callers_gave_up_are_forgotten() {
        let mut pending = HashMap::new();
        let mut live = Vec::new();
        for n in 0..10 * super::PRUNE_PENDING_AT {
            let (tx, rx) = oneshot::channel();
            super::track(&mut pending, n.to_string(), tx);
            if n % 10 == 0 {
                live.push((n.to_string(), rx));
            } // else: the caller timed out and dropped its receiver.
        }
        assert!(
            pending.len() < 2 * super::PRUNE_PENDING_AT + live.len(),
            "{} waiters kept for {} live ones",
            pending.len(),
            live.len()
        );
        assert!(
            live.iter().all(|(id, _)| pending.contains_key(id)),
            "every live waiter is kept"
        );
    }
}
