//! A consistent copy of the store for backups (docs/operations.md, "Backup and restore").

use std::path::Path;

use super::EmbeddedStore;
use super::tables::{
    BLOCKS, BUCKET_STARTS, BUCKETS, CONTACTS, DEDUPE, DEDUPE_EXPIRY, EDITS, EVENTS, HEADS, MEMBERS,
    MESSAGES, META, OPEN_REVIEWS, OUTBOX, PUSH_TOKENS, REACTIONS, RETENTION, REVIEWS, REVOCATIONS,
    ROOMS, USER_PUSH_TOKENS, USER_ROOMS,
};
use crate::backend::redb_backup::{Copier, CopyError, copy_database, open_stopped};

/// Every table of the store.
fn tables(c: &mut Copier<'_>) -> Result<(), CopyError> {
    c.table(META)?;
    c.table(HEADS)?;
    c.table(EVENTS)?;
    c.table(BUCKETS)?;
    c.table(BUCKET_STARTS)?;
    c.table(MESSAGES)?;
    c.table(EDITS)?;
    c.table(RETENTION)?;
    c.table(ROOMS)?;
    c.table(MEMBERS)?;
    c.table(USER_ROOMS)?;
    c.table(DEDUPE)?;
    c.table(DEDUPE_EXPIRY)?;
    c.table(BLOCKS)?;
    c.table(PUSH_TOKENS)?;
    c.table(USER_PUSH_TOKENS)?;
    c.table(REVOCATIONS)?;
    c.table(OUTBOX)?;
    c.table(REACTIONS)?;
    c.table(REVIEWS)?;
    c.table(OPEN_REVIEWS)?;
    c.table(CONTACTS)
}

impl EmbeddedStore {
    /// Copies the whole store, as of one commit, into the new database file `dest` while
    /// writes go on; returns the number of entries copied. Blocks on file I/O.
    pub fn backup_to(&self, dest: &Path) -> Result<u64, CopyError> {
        copy_database(&self.inner.db, dest, tables)
    }
}

/// Copies the store file `src` of a stopped server into `dest` (refused with
/// [`CopyError::Locked`] while a server has it open).
pub fn backup_file(src: &Path, dest: &Path) -> Result<u64, CopyError> {
    copy_database(&open_stopped(src)?, dest, tables)
}
