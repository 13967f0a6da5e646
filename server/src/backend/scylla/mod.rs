//! The distributed store: [`RoomLog`](super::store::RoomLog),
//! [`Directory`](super::store::Directory), [`Accounts`](super::store::Accounts) and
//! [`NodeRegistry`](super::nodes::NodeRegistry) on ScyllaDB / Apache Cassandra (CQL, the
//! `scylla` driver), with the logical keys of docs/architecture.md "Storage". Schema and design
//! decisions: `docs/storage-scylla.md`.
//!
//! ```text
//!  writer ──append──▶ bucket index rows ──▶ LWT on heads(room): head := batch head,
//!                                           pending := batch   IF seq = expected
//!                     ──▶ materialize (events, messages, writes; idempotent)
//!                     ──▶ materialized_seq := batch head (plain write, USING TIMESTAMP head)
//!  load_room / head ──SERIAL read of heads(room)──▶ roll a pending batch forward
//! ```
//!
//! Driver types stay inside this module: callers see [`ScyllaOptions`], [`ScyllaError`] and the
//! storage traits. Every statement is prepared once at [`ScyllaStore::connect`].

mod accounts;
mod append;
mod contacts;
mod cql;
mod directory;
mod index;
mod log;
mod nodes;
mod outbox;
mod records;
mod retention;
mod reviews;
mod scan;
mod schema;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::statement::{Consistency, SerialConsistency};

use self::cql::Statements;
pub use self::schema::{SCHEMA_VERSION, migrate};

/// Settings of [`ScyllaStore::connect`] and [`migrate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScyllaOptions {
    /// Contact points, `host:port`.
    pub nodes: Vec<String>,
    /// The keyspace holding the tables (letters, digits and `_`, at most 48).
    pub keyspace: String,
    /// Time allowed to open the first connection.
    pub connect_timeout: Duration,
    /// Client-side limit of one request (a lightweight transaction included).
    pub request_timeout: Duration,
    /// Bucket width recorded by the first [`migrate`]; later the recorded value wins.
    pub bucket_width_ms: i64,
    /// Shard count recorded by the first [`migrate`]; later the recorded value wins.
    pub shards: u32,
}

impl Default for ScyllaOptions {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".to_owned()],
            keyspace: "chatwire".to_owned(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(10),
            bucket_width_ms: 3_600_000,
            shards: 16,
        }
    }
}

/// Cluster metadata, fixed by the first [`migrate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterMeta {
    /// Width of a log time bucket, in milliseconds.
    pub bucket_width_ms: i64,
    /// Number of writer shards.
    pub shards: u32,
}

/// Failures of [`migrate`] and [`ScyllaStore::connect`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScyllaError {
    /// An option is out of range (keyspace name, bucket width, shard count, no nodes).
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// No connection to the cluster could be opened.
    #[error("cannot connect to {nodes}: {reason}")]
    Connect {
        /// The contact points tried.
        nodes: String,
        /// The driver's reason.
        reason: String,
    },
    /// The keyspace holds no Chatwire schema: run `chatwire migrate` first.
    #[error("keyspace {keyspace} is not migrated (run `chatwire migrate`)")]
    NotMigrated {
        /// The keyspace.
        keyspace: String,
    },
    /// The keyspace holds a schema of another version.
    #[error("keyspace {keyspace} has schema version {found}, this build needs {expected}")]
    SchemaVersion {
        /// The keyspace.
        keyspace: String,
        /// The recorded version.
        found: i64,
        /// The version this build uses.
        expected: i64,
    },
    /// The recorded cluster metadata is unusable.
    #[error("corrupt cluster metadata: {0}")]
    Corrupt(String),
    /// A statement failed.
    #[error("query failed: {0}")]
    Query(String),
}

/// The ScyllaDB store. Cheap to clone; clones share one session.
#[derive(Clone)]
pub struct ScyllaStore {
    inner: Arc<Inner>,
}

/// The session, the prepared statements and the metadata every operation needs.
struct Inner {
    session: Session,
    st: Statements,
    keyspace: String,
    meta: ClusterMeta,
    /// Lightweight transactions (Paxos rounds) run, for the cost tests.
    lwts: std::sync::atomic::AtomicU64,
}

impl Inner {
    /// The time bucket of a timestamp.
    fn bucket(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.meta.bucket_width_ms)
    }
}

impl fmt::Debug for ScyllaStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaStore")
            .field("keyspace", &self.inner.keyspace)
            .field("meta", &self.inner.meta)
            .finish()
    }
}

impl ScyllaStore {
    /// Connects to a migrated keyspace, checks its schema version, reads the cluster metadata
    /// and prepares every statement. Fails with [`ScyllaError::NotMigrated`] or
    /// [`ScyllaError::SchemaVersion`] when the schema is missing or of another version.
    pub async fn connect(options: &ScyllaOptions) -> Result<Self, ScyllaError> {
        // Boxed: preparing every statement makes a large future, kept off the caller's stack.
        let session = Box::pin(open_session(options)).await?;
        let meta = Box::pin(schema::check(&session, &options.keyspace)).await?;
        let st = Box::pin(Statements::prepare(&session, &options.keyspace)).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                session,
                st,
                keyspace: options.keyspace.clone(),
                meta,
                lwts: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// How many lightweight transactions (Paxos rounds) this store ran so far: the cost tests
    /// count them (one per appended batch).
    pub fn lwt_rounds(&self) -> u64 {
        self.inner.lwts.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The cluster metadata in use: the values recorded by the first migrate.
    pub fn meta(&self) -> ClusterMeta {
        self.inner.meta
    }

    /// The bucket width in use (recorded at the first migrate).
    pub fn bucket_width_ms(&self) -> i64 {
        self.inner.meta.bucket_width_ms
    }
}

/// Opens a session: quorum reads and writes, SERIAL for lightweight transactions, no
/// speculative execution (the driver's default), client-side monotonic timestamps so that
/// sequential writes of one materialization keep their order on every coordinator.
pub(crate) async fn open_session(options: &ScyllaOptions) -> Result<Session, ScyllaError> {
    schema::check_keyspace_name(&options.keyspace)?;
    if options.nodes.is_empty() {
        return Err(ScyllaError::InvalidOption("no CQL nodes given".to_owned()));
    }
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::Serial))
        .request_timeout(Some(options.request_timeout))
        .build();
    SessionBuilder::new()
        .known_nodes(&options.nodes)
        .connection_timeout(options.connect_timeout)
        .default_execution_profile_handle(profile.into_handle())
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .build()
        .await
        .map_err(|e| ScyllaError::Connect {
            nodes: options.nodes.join(","),
            reason: e.to_string(),
        })
}
