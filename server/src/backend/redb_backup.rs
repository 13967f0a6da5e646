//! Consistent copies of a redb database: every table copied inside one read transaction into
//! a new database file, so the copy is the database as of one commit while writers go on.
//! Each embedded database lists its tables (`embedded::backup`, `events_embedded::backup`); a
//! table the source holds and the list does not name fails the copy, so a table added later
//! cannot be left out of backups silently.

use std::path::Path;

use redb::{
    Database, Key, MultimapTableHandle, ReadTransaction, TableDefinition, TableError, TableHandle,
    Value,
};
use redb::{ReadableDatabase, WriteTransaction};

/// Why a database could not be copied.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The source is open in another process (a running server): ask that server instead.
    #[error("{0} is open in another process (is a server running on it?)")]
    Locked(String),
    /// A table of the source is not in the copied list.
    #[error("table {0:?} is not covered by the backup: update the table list")]
    Uncovered(String),
    /// The destination exists already.
    #[error("{0} exists already")]
    Exists(String),
    /// redb or file failure.
    #[error("{0}")]
    Failed(String),
}

fn failed(err: impl std::fmt::Display) -> CopyError {
    CopyError::Failed(err.to_string())
}

/// Copies tables from one read transaction into one write transaction.
#[allow(missing_debug_implementations)]
pub(crate) struct Copier<'a> {
    src: &'a ReadTransaction,
    dst: &'a WriteTransaction,
    copied: Vec<String>,
    entries: u64,
}

impl Copier<'_> {
    /// Copies the table `def` (nothing when the source has no such table yet).
    pub(crate) fn table<K: Key + 'static, V: Value + 'static>(
        &mut self,
        def: TableDefinition<'_, K, V>,
    ) -> Result<(), CopyError> {
        self.copied.push(def.name().to_owned());
        let src = match self.src.open_table(def) {
            Ok(table) => table,
            Err(TableError::TableDoesNotExist(_)) => return Ok(()),
            Err(err) => return Err(failed(err)),
        };
        let mut dst = self.dst.open_table(def).map_err(failed)?;
        for row in redb::ReadableTable::iter(&src).map_err(failed)? {
            let (key, value) = row.map_err(failed)?;
            dst.insert(key.value(), value.value()).map_err(failed)?;
            self.entries += 1;
        }
        Ok(())
    }
}

/// Copies `src` into a new database file `dest` inside one read transaction; `tables` names
/// every table. Returns the number of entries copied.
pub(crate) fn copy_database(
    src: &Database,
    dest: &Path,
    tables: impl FnOnce(&mut Copier<'_>) -> Result<(), CopyError>,
) -> Result<u64, CopyError> {
    if dest.exists() {
        return Err(CopyError::Exists(dest.display().to_string()));
    }
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(failed)?;
    }
    let read = src.begin_read().map_err(failed)?;
    let out = Database::create(dest).map_err(failed)?;
    let write = out.begin_write().map_err(failed)?;
    let entries = {
        let mut copier = Copier {
            src: &read,
            dst: &write,
            copied: Vec::new(),
            entries: 0,
        };
        tables(&mut copier)?;
        for handle in read.list_tables().map_err(failed)? {
            if !copier.copied.iter().any(|name| name == handle.name()) {
                return Err(CopyError::Uncovered(handle.name().to_owned()));
            }
        }
        if let Some(handle) = read.list_multimap_tables().map_err(failed)?.next() {
            return Err(CopyError::Uncovered(handle.name().to_owned()));
        }
        copier.entries
    };
    write.commit().map_err(failed)?;
    Ok(entries)
}

/// Opens the database file `path` of a stopped server for copying.
pub(crate) fn open_stopped(path: &Path) -> Result<Database, CopyError> {
    match Database::open(path) {
        Ok(db) => Ok(db),
        Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
            Err(CopyError::Locked(path.display().to_string()))
        }
        Err(err) => Err(CopyError::Failed(format!("{}: {err}", path.display()))),
    }
}
