//! The embedded store: the default backend, one redb database file in the data folder. Durable
//! (every commit is synced unless [`EmbeddedOptions::sync`] is off), needs nothing installed.
//!
//! ```text
//!  async trait call ──spawn_blocking──▶ one redb transaction ──▶ chatwire.redb
//! ```
//!
//! It implements [`RoomLog`](super::store::RoomLog), [`Directory`](super::store::Directory) and
//! [`Accounts`](super::store::Accounts) with the logical keys of docs/architecture.md "Storage"
//! (see `tables.rs`). The fenced append is one write transaction: redb runs one writer at a time,
//! so the head check and the head move cannot interleave with another append. What it does not do:
//! replication, or sharing the file between processes (redb locks it).

mod accounts;
mod append;
mod contacts;
pub use append::DEDUPE_PURGE_GRACE_MS;
mod directory;
mod fail;
mod log;
mod records;
mod retention;
mod reviews;
mod scan;
mod tables;
// Consistent copies for `chatwire backup`.
mod backup;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableTable, WriteTransaction};

pub use self::backup::backup_file;
use self::fail::{Fail, corrupt};
use self::tables::{DEDUPE, DEDUPE_EXPIRY, META};
use super::store::StoreError;

/// The database file inside the data folder.
pub const FILE_NAME: &str = "chatwire.redb";

/// The stored format; a store written by a newer format is refused.
const FORMAT_VERSION: i64 = 1;
const META_FORMAT_VERSION: &str = "format_version";
const META_BUCKET_WIDTH: &str = "bucket_width_ms";

/// Settings of [`EmbeddedStore::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmbeddedOptions {
    /// Width of a log time bucket, in milliseconds. Only used when the store is created: the
    /// width is then recorded in the store, and the recorded width wins on every later open
    /// (changing it would scramble the keys).
    pub bucket_width_ms: i64,
    /// Make every commit durable before it returns (the default), so an applied append
    /// survives a crash of the process or the machine. Off (tests, benchmarks), commits are
    /// written out on a clean shutdown only: a crash loses those since the open.
    pub sync: bool,
}

impl Default for EmbeddedOptions {
    fn default() -> Self {
        Self {
            bucket_width_ms: 3_600_000,
            sync: true,
        }
    }
}

/// The embedded store. Cheap to clone; all clones share one database.
#[derive(Clone)]
pub struct EmbeddedStore {
    inner: Arc<Inner>,
}

/// What each blocking operation needs.
struct Inner {
    db: Database,
    path: PathBuf,
    bucket_width_ms: i64,
    sync: bool,
}

impl Inner {
    /// A write transaction with the configured durability.
    fn write(&self) -> Result<WriteTransaction, Fail> {
        crate::backend::redb_fail::begin_write(&self.db, self.sync)
    }

    /// The time bucket of a timestamp.
    fn bucket(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.bucket_width_ms)
    }
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.inner.path)
            .field("bucket_width_ms", &self.inner.bucket_width_ms)
            .field("sync", &self.inner.sync)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens the store in the data folder `dir`, creating the folder and the database when
    /// missing. Blocks on file I/O: call it at start-up (or from `spawn_blocking`).
    pub fn open(dir: &Path, options: EmbeddedOptions) -> Result<Self, StoreError> {
        if options.bucket_width_ms <= 0 {
            return Err(StoreError::Unavailable(format!(
                "bucket width must be positive, got {}",
                options.bucket_width_ms
            )));
        }
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
        })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(Fail::from)?;
        let bucket_width_ms = init_meta(&db, options.bucket_width_ms)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                path,
                bucket_width_ms,
                sync: options.sync,
            }),
        })
    }

    /// The bucket width in use: the one recorded when the store was created.
    pub fn bucket_width_ms(&self) -> i64 {
        self.inner.bucket_width_ms
    }

    /// Forgets the dedupe entries expired at `now_ms`, returning how many.
    pub async fn purge_expired_dedupe(&self, now_ms: i64) -> Result<u64, StoreError> {
        self.run(move |inner| purge_dedupe(inner, now_ms)).await
    }

    /// Runs a blocking redb operation on the blocking pool.
    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T, Fail> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || op(&inner).map_err(StoreError::from))
            .await
            .map_err(|e| StoreError::Unavailable(format!("store task failed: {e}")))?
    }
}

/// Creates the tables and records the format and bucket width on first open; returns the
/// recorded width.
fn init_meta(db: &Database, bucket_width_ms: i64) -> Result<i64, StoreError> {
    let txn = db.begin_write().map_err(Fail::from)?;
    tables::create_all(&txn)?;
    let width = {
        let mut meta = txn.open_table(META).map_err(Fail::from)?;
        let version = meta.get(META_FORMAT_VERSION).map_err(Fail::from)?;
        match version.map(|v| v.value()) {
            None => {
                meta.insert(META_FORMAT_VERSION, FORMAT_VERSION)
                    .map_err(Fail::from)?;
            }
            Some(FORMAT_VERSION) => {}
            Some(other) => return Err(corrupt(format!("unknown store format {other}")).into()),
        }
        let stored = meta.get(META_BUCKET_WIDTH).map_err(Fail::from)?;
        match stored.map(|v| v.value()) {
            Some(width) if width > 0 => width,
            Some(width) => return Err(corrupt(format!("stored bucket width {width}")).into()),
            None => {
                meta.insert(META_BUCKET_WIDTH, bucket_width_ms)
                    .map_err(Fail::from)?;
                bucket_width_ms
            }
        }
    };
    txn.commit().map_err(Fail::from)?;
    Ok(width)
}

/// Removes the dedupe entries (and their expiry index rows) expired at `now_ms`.
fn purge_dedupe(inner: &Inner, now_ms: i64) -> Result<u64, Fail> {
    let txn = inner.write()?;
    let purged = {
        let mut expiry = txn.open_table(DEDUPE_EXPIRY)?;
        let mut dedupe = txn.open_table(DEDUPE)?;
        let mut expired = Vec::new();
        // Ordered by expiry first: stop at the first entry still alive.
        for entry in expiry.iter()? {
            let (key, _) = entry?;
            let key = key.value();
            if key.0 > now_ms {
                break;
            }
            expired.push((key.0, key.1.to_owned(), key.2.to_owned(), key.3.to_owned()));
        }
        for (expires, room, sender, id) in &expired {
            expiry.remove((*expires, room.as_str(), sender.as_str(), id.as_str()))?;
            dedupe.remove((room.as_str(), sender.as_str(), id.as_str()))?;
        }
        expired.len() as u64
    };
    txn.commit()?;
    Ok(purged)
}
