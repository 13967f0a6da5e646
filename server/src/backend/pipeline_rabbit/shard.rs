//! One shard consumer: takes what the broker has prefetched as one batch, groups it by room,
//! runs each room's commands on the shard's room writer (a [`RoomExecutor`], group commit),
//! replies to each command's gateway, then acks its delivery.
//!
//! Never requeues: a requeued message goes to the back of a quorum queue and would reorder
//! its room. A room batch that keeps failing with UNAVAILABLE (the store) is retried in
//! process a few times; after that the consumer gives the shard up (its channel closes, so
//! the unacked deliveries return to the queue for the next consumer) and the node's
//! supervisor leaves it alone for a while. An undecodable body is rejected without requeue,
//! which dead-letters it to the shard's DLQ.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicPublishOptions, BasicRejectOptions,
};
use lapin::{BasicProperties, Channel, Consumer};
use tokio::sync::{Mutex, oneshot};

use super::RabbitConfig;
use super::codec::{decode_command, encode_reply};
use crate::backend::pipeline::{IDLE_TICK, RoomExecutor};
use crate::chat::command::{Outcome, RoomCommand};
use crate::chat::error::ChatError;
use crate::chat::ids::RoomId;

/// How long a stopping consumer waits for the broker to confirm the cancel.
const CANCEL_WAIT: Duration = Duration::from_secs(5);

/// Pause before the first in-process retry of a failed room batch (doubling after).
const RETRY_PAUSE: Duration = Duration::from_millis(100);

/// How a shard consumer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShardExit {
    /// Asked to stop; everything it took was answered and acked.
    Stopped,
    /// The store kept failing: the shard was given up.
    Failed,
    /// The channel or connection broke.
    Lost,
}

/// What a shard consumer works with.
pub(crate) struct ShardConsumer {
    pub(crate) config: Arc<RabbitConfig>,
    pub(crate) shard: usize,
    pub(crate) channel: Channel,
    pub(crate) consumer: Consumer,
    pub(crate) writer: Arc<Mutex<Box<dyn RoomExecutor>>>,
    pub(crate) replies: Channel,
}

impl ShardConsumer {
    /// Consumes until told to stop, the store keeps failing, or the channel breaks.
    pub(crate) async fn run(mut self, mut stop: oneshot::Receiver<()>) -> ShardExit {
        let exit = loop {
            let wants_tick = self.writer.lock().await.wants_tick();
            let first = tokio::select! {
                biased;
                _ = &mut stop => break self.finish().await,
                next = self.consumer.next() => next,
                () = tokio::time::sleep(IDLE_TICK), if wants_tick => {
                    self.writer.lock().await.tick().await;
                    continue;
                }
            };
            let mut batch = match first {
                Some(Ok(delivery)) => vec![delivery],
                _ => break ShardExit::Lost,
            };
            while batch.len() < usize::from(self.config.prefetch.max(1)) {
                match self.consumer.next().now_or_never() {
                    Some(Some(Ok(delivery))) => batch.push(delivery),
                    _ => break,
                }
            }
            if let Err(exit) = self.process(batch).await {
                break exit;
            }
        };
        if exit != ShardExit::Stopped {
            tracing::warn!(shard = self.shard, ?exit, "shard consumer ended");
        }
        // Closing returns whatever is still unacked to the queue, in order.
        let _ = self.channel.close(200, "shard released".into()).await;
        exit
    }

    /// Cancels the consumer, then answers and acks what was already delivered to it.
    async fn finish(&mut self) -> ShardExit {
        let tag = self.consumer.tag();
        if self
            .channel
            .basic_cancel(tag, BasicCancelOptions::default())
            .await
            .is_err()
        {
            return ShardExit::Lost;
        }
        let mut rest = Vec::new();
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(CANCEL_WAIT, self.consumer.next()).await
        {
            rest.push(delivery);
        }
        if rest.is_empty() {
            return ShardExit::Stopped;
        }
        match self.process(rest).await {
            Ok(()) => ShardExit::Stopped,
            Err(exit) => exit,
        }
    }

    /// Runs one batch; `Err` ends the consumer with the deliveries of failed rooms unacked.
    async fn process(&mut self, batch: Vec<Delivery>) -> Result<(), ShardExit> {
        for (room, items) in self.by_room(batch).await? {
            let commands: Vec<RoomCommand> = items.iter().map(|(c, _)| c.clone()).collect();
            let Some(results) = self.execute(&room, &commands).await else {
                return Err(ShardExit::Failed);
            };
            for ((_, delivery), result) in items.iter().zip(&results) {
                self.reply(&delivery.properties, result).await;
            }
            for (_, delivery) in &items {
                if delivery
                    .acker
                    .ack(BasicAckOptions::default())
                    .await
                    .is_err()
                {
                    return Err(ShardExit::Lost);
                }
            }
        }
        Ok(())
    }

    /// Groups a batch by room, keeping each room's order; rejects undecodable bodies.
    async fn by_room(
        &self,
        batch: Vec<Delivery>,
    ) -> Result<Vec<(RoomId, Vec<(RoomCommand, Delivery)>)>, ShardExit> {
        let mut rooms: Vec<(RoomId, Vec<(RoomCommand, Delivery)>)> = Vec::new();
        for delivery in batch {
            let command = match decode_command(&delivery.data) {
                Ok(command) => command,
                Err(err) => {
                    tracing::error!(shard = self.shard, error = %err, "undecodable command dead-lettered");
                    let reject = BasicRejectOptions { requeue: false };
                    if delivery.acker.reject(reject).await.is_err() {
                        return Err(ShardExit::Lost);
                    }
                    continue;
                }
            };
            if delivery.redelivered {
                tracing::info!(shard = self.shard, room = %command.room, "redelivered command");
            }
            match rooms.iter_mut().find(|(room, _)| *room == command.room) {
                Some((_, items)) => items.push((command, delivery)),
                None => rooms.push((command.room.clone(), vec![(command, delivery)])),
            }
        }
        Ok(rooms)
    }

    /// Runs a room batch, retrying while the store is unavailable; `None` when it kept
    /// failing.
    async fn execute(
        &self,
        room: &RoomId,
        commands: &[RoomCommand],
    ) -> Option<Vec<Result<Outcome, ChatError>>> {
        let mut pause = RETRY_PAUSE;
        for attempt in 0..=self.config.store_retries {
            let results = self.writer.lock().await.execute(room, commands).await;
            let unavailable = !results.is_empty()
                && results
                    .iter()
                    .all(|r| matches!(r, Err(ChatError::Unavailable(_))));
            if !unavailable {
                return Some(results);
            }
            tracing::warn!(shard = self.shard, room = %room, attempt, "room batch failed; retrying");
            if attempt < self.config.store_retries {
                tokio::time::sleep(crate::jitter::global().apply(pause)).await;
                pause *= 2;
            }
        }
        None
    }

    /// Sends an answer to the gateway that asked (direct reply-to). A lost reply is not
    /// fatal: the client learns the outcome from the event or by retrying, which dedupes.
    async fn reply(&self, asked: &BasicProperties, result: &Result<Outcome, ChatError>) {
        let (Some(to), Some(id)) = (asked.reply_to(), asked.correlation_id()) else {
            return;
        };
        let properties = BasicProperties::default().with_correlation_id(id.clone());
        let sent = self
            .replies
            .basic_publish(
                "".into(),
                to.clone(),
                BasicPublishOptions::default(),
                &encode_reply(result),
                properties,
            )
            .await;
        if let Err(err) = sent {
            tracing::warn!(shard = self.shard, error = %err, "reply not sent");
        }
    }
}
