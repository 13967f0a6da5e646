//! The in-process pipeline of the embedded default: one task per shard, each owning a
//! [`RoomExecutor`] (the room writer) for its rooms. A shard takes every command waiting in its queue as one batch
//! (group commit) and runs each room's commands together, in arrival order.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::pipeline::{IDLE_TICK, Pipeline, RoomExecutor, shard_of};
use crate::chat::command::{Outcome, RoomCommand};
use crate::chat::error::ChatError;
use crate::chat::ids::RoomId;

/// Most commands a shard takes in one batch.
const MAX_BATCH: usize = 256;

type Job = (RoomCommand, oneshot::Sender<Result<Outcome, ChatError>>);

/// In-process shard tasks.
#[derive(Debug)]
pub struct LocalPipeline {
    shards: Vec<mpsc::Sender<Job>>,
}

impl LocalPipeline {
    /// Starts one task per writer (one per shard) on the current runtime, with a queue of
    /// `queue` commands each.
    pub fn start(writers: Vec<Box<dyn RoomExecutor>>, queue: usize) -> Self {
        let shards = writers
            .into_iter()
            .map(|writer| {
                let (tx, rx) = mpsc::channel(queue.max(1));
                tokio::spawn(run_shard(writer, rx));
                tx
            })
            .collect();
        Self { shards }
    }
}

#[async_trait]
impl Pipeline for LocalPipeline {
    async fn execute(&self, command: RoomCommand) -> Result<Outcome, ChatError> {
        let shard = shard_of(command.room.as_str(), self.shards.len());
        let sender = self.shards.get(shard).ok_or(ChatError::Internal)?;
        let (tx, rx) = oneshot::channel();
        // A full queue means the shard is overloaded: say so instead of waiting forever.
        sender.try_send((command, tx)).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => ChatError::RateLimited {
                retry_after_ms: 200,
            },
            mpsc::error::TrySendError::Closed(_) => ChatError::Unavailable("writer stopped".into()),
        })?;
        rx.await
            .map_err(|_| ChatError::Unavailable("writer stopped".into()))?
    }
}

async fn run_shard(mut writer: Box<dyn RoomExecutor>, mut rx: mpsc::Receiver<Job>) {
    loop {
        let next = if writer.wants_tick() {
            match tokio::time::timeout(IDLE_TICK, rx.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    writer.tick().await;
                    continue;
                }
            }
        } else {
            rx.recv().await
        };
        let Some(first) = next else { break };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut by_room: BTreeMap<RoomId, Vec<Job>> = BTreeMap::new();
        for job in jobs {
            by_room.entry(job.0.room.clone()).or_default().push(job);
        }
        for (room, jobs) in by_room {
            let (commands, replies): (Vec<RoomCommand>, Vec<_>) = jobs.into_iter().unzip();
            // Answered as soon as the batch is durable, before its fan-out: the senders'
            // sessions wake ahead of the room's recipients (R-5.3.2 leaves the order open).
            let answer = Box::new(move |results: Vec<Result<Outcome, ChatError>>| {
                for (reply, result) in replies.into_iter().zip(results) {
                    // The requester may have gone away; the outcome stands either way.
                    let _ = reply.send(result);
                }
            });
            writer
                .execute_answering_early(&room, &commands, answer)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// An executor with idle work until it has ticked `wanted` times.
    #[derive(Debug)]
    struct Ticking {
        ticks: Arc<AtomicUsize>,
        wanted: usize,
    }

    #[async_trait]
    impl RoomExecutor for Ticking {
        async fn execute(
            &mut self,
            _room: &RoomId,
            commands: &[RoomCommand],
        ) -> Vec<Result<Outcome, ChatError>> {
            commands.iter().map(|_| Err(ChatError::Internal)).collect()
        }

        async fn execute_answering_early(
            &mut self,
            room: &RoomId,
            commands: &[RoomCommand],
            answer: super::super::pipeline::Answer,
        ) {
            answer(self.execute(room, commands).await);
        }

        fn wants_tick(&self) -> bool {
            self.ticks.load(Ordering::SeqCst) < self.wanted
        }

        async fn tick(&mut self) {
            self.ticks.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// An idle shard whose writer has outbox work ticks it (the outbox's catch-up and sweep),
    /// once per idle period, and stops once the writer wants no more. Time is tokio's paused
    /// clock: nothing waits for real.
    #[tokio::test(start_paused = true)]
    async fn an_idle_shard_ticks_its_writer_while_it_wants() {
        let ticks = Arc::new(AtomicUsize::new(0));
        let writer = Ticking {
            ticks: Arc::clone(&ticks),
            wanted: 3,
        };
        let _pipeline = LocalPipeline::start(vec![Box::new(writer)], 4);
        tokio::time::sleep(IDLE_TICK * 10).await;
        assert_eq!(ticks.load(Ordering::SeqCst), 3);
    }
}
