//! The ordered command pipeline: carries room commands to the room's single writer and the
//! writer's answer back. Embedded: in-process shard tasks ([`super::pipeline_local`]);
//! distributed: RabbitMQ shard queues ([`super::pipeline_rabbit`]).
//!
//! The pipelines drive each shard's writer through [`RoomExecutor`] and know nothing else of
//! it: the room writer (`crate::writer`) sits above the backends and implements it, so imports
//! run one way (`chat` <- `backend` <- `writer`).

use async_trait::async_trait;

use crate::chat::command::{Outcome, RoomCommand};
use crate::chat::error::ChatError;
use crate::chat::ids::RoomId;

/// Carries commands to room writers.
#[async_trait]
pub trait Pipeline: Send + Sync + std::fmt::Debug {
    /// Executes a command on its room's writer and returns the writer's answer.
    ///
    /// The command takes its place in its room's order during the first poll of the returned
    /// future, before it first waits: a caller that polls two of them once each, in turn, has
    /// them applied in that order while it waits for both at once. Implementations
    /// queue synchronously (a channel send), never behind an await.
    async fn execute(&self, command: RoomCommand) -> Result<Outcome, ChatError>;
}

/// Takes the results of a room batch, one per command, in order.
pub type Answer = Box<dyn FnOnce(Vec<Result<Outcome, ChatError>>) + Send>;

/// A shard's room writer as the pipelines see it. A pipeline owns one per shard and drives it
/// from one task at a time, which is what keeps one writer per room.
#[async_trait]
pub trait RoomExecutor: Send + std::fmt::Debug {
    /// Executes the commands of one room, in order, as one batch; one result per command.
    /// The batch is durable and its events published when this returns.
    async fn execute(
        &mut self,
        room: &RoomId,
        commands: &[RoomCommand],
    ) -> Vec<Result<Outcome, ChatError>>;

    /// Like [`RoomExecutor::execute`], but hands the results to `answer` as soon as the batch
    /// is durable, before its events are published; the publishing is done when this returns,
    /// so before the room's next batch.
    async fn execute_answering_early(
        &mut self,
        room: &RoomId,
        commands: &[RoomCommand],
        answer: Answer,
    );

    /// Whether the executor has work for an idle moment: the pipeline then calls
    /// [`RoomExecutor::tick`] once its shard has been idle for [`IDLE_TICK`].
    fn wants_tick(&self) -> bool {
        false
    }

    /// Idle work (the room writer sweeps its downstream-events outbox).
    async fn tick(&mut self) {}

    /// Forgets what the executor cached: the pipeline (re)took its shard, and another executor
    /// may have written its rooms meanwhile.
    fn reset(&mut self) {}
}

/// How long a shard stays idle before its executor's [`RoomExecutor::tick`] runs.
pub const IDLE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// The shard of a room: a stable hash (FNV-1a, 64 bits) of the room id modulo the shard count,
/// the same on every node and across restarts.
pub fn shard_of(room: &str, shards: usize) -> usize {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in room.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let shards = u64::try_from(shards.max(1)).unwrap_or(1);
    usize::try_from(hash % shards).unwrap_or(0)
}
