//! Backend traits, one small trait per concern, each next to its implementations
//! (docs/architecture.md "Data flow"):
//!
//! | concern | trait | embedded (default) | distributed |
//! | --- | --- | --- | --- |
//! | room log, rooms, members, receipts, accounts, review queue | [`store::RoomLog`], [`store::Directory`], [`store::Accounts`], [`reviews::Reviews`] | [`embedded`] (redb) | [`scylla`] (ScyllaDB / Cassandra) |
//! | live gateway nodes | [`nodes::NodeRegistry`] | - | [`scylla`] (rows with a TTL) |
//! | ordered command pipeline | [`pipeline::Pipeline`] | [`pipeline_local`] (shard tasks) | [`pipeline_rabbit`] (RabbitMQ shard queues) |
//! | live fan-out | [`fanout::Fanout`] | [`fanout_local`] | [`fanout_redis`] (Redis: tail streams, pub/sub, presence registry) |
//! | downstream events, retries, DLQ | [`events::EventQueue`] | [`events_embedded`] (redb) | [`events_rabbit`] (RabbitMQ lanes, retry tiers, DLQ) |
//! | rate limits | [`ratelimit::RateLimiter`] | [`ratelimit::LocalRateLimiter`] | [`ratelimit_redis`] (Redis, fails open) |
//!
//! Driver types never appear in these traits; each implementation keeps its driver inside its
//! own module.

pub(crate) mod amqp;
pub mod breaker;
pub mod embedded;
pub mod events;
pub mod events_embedded;
pub mod events_rabbit;
pub mod fanout;
pub mod fanout_local;
pub mod fanout_redis;
pub mod health;
pub mod nodes;
pub mod pipeline;
pub mod pipeline_local;
pub mod pipeline_rabbit;
pub mod ratelimit;
pub mod ratelimit_redis;
pub mod redb_backup;
mod redb_fail;
pub mod redis_probe;
pub mod reviews;
pub mod scylla;
pub mod store;
#[cfg(any(test, feature = "test-support"))]
pub mod store_counting;
pub mod store_metered;
