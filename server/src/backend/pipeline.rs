//! The ordered command pipeline: carries room commands to the room's single writer and the
//! writer's answer back. Embedded: in-process shard tasks ([`super::pipeline_local`]);
//! distributed: RabbitMQ shard queues (later).

use async_trait::async_trait;

use crate::chat::command::{Outcome, RoomCommand};
use crate::chat::error::ChatError;

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
