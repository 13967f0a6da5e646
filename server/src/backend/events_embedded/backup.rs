//! A consistent copy of an event queue for backups (docs/operations.md, "Backup and restore").

use std::path::Path;

use super::EmbeddedEventQueue;
use super::tables::{DEAD, ENTRIES, IDS, LEASED, META, lane_table};
use crate::backend::events::Lane;
use crate::backend::redb_backup::{Copier, CopyError, copy_database, open_stopped};

/// Every table of a queue.
fn tables(c: &mut Copier<'_>) -> Result<(), CopyError> {
    c.table(META)?;
    c.table(ENTRIES)?;
    c.table(IDS)?;
    c.table(LEASED)?;
    c.table(DEAD)?;
    for lane in Lane::ALL {
        c.table(lane_table(lane))?;
    }
    Ok(())
}

impl EmbeddedEventQueue {
    /// Copies the whole queue, as of one commit, into the new database file `dest` while
    /// events are published and consumed; returns the number of entries copied.
    pub fn backup_to(&self, dest: &Path) -> Result<u64, CopyError> {
        copy_database(&self.inner.db, dest, tables)
    }
}

/// Copies the queue file `src` of a stopped server into `dest`.
pub fn backup_file(src: &Path, dest: &Path) -> Result<u64, CopyError> {
    copy_database(&open_stopped(src)?, dest, tables)
}
