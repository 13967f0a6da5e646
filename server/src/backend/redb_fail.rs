//! What the redb-backed implementations (the embedded store and the embedded event queue)
//! share: their internal error — a redb error or the implementation's own error `E`, turned
//! into `E` at the edge of each operation so that redb types never leave these modules — and
//! how they open a write transaction.

/// An internal failure of a redb-backed implementation whose public error is `E`.
#[derive(Debug)]
pub(crate) enum Fail<E> {
    /// redb failed.
    Db(redb::Error),
    /// Already the implementation's own error (a decode failure, a broken invariant).
    Own(E),
}

/// How a redb error should be reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DbFault {
    /// Data that does not match what this build expects: retrying will not help.
    Corrupt,
    /// I/O, a lock held by another process, a closed database: the caller may retry.
    Unavailable,
}

/// Classifies a redb error.
pub(crate) fn classify(error: &redb::Error) -> DbFault {
    match error {
        redb::Error::Corrupted(_)
        | redb::Error::UpgradeRequired(_)
        | redb::Error::TableTypeMismatch { .. }
        | redb::Error::TypeDefinitionChanged { .. }
        | redb::Error::TableIsMultimap(_)
        | redb::Error::TableIsNotMultimap(_)
        | redb::Error::ValueTooLarge(_) => DbFault::Corrupt,
        _ => DbFault::Unavailable,
    }
}

macro_rules! from_redb {
    ($($error:ty),*) => {
        $(impl<E> From<$error> for Fail<E> {
            fn from(error: $error) -> Self {
                Fail::Db(error.into())
            }
        })*
    };
}

from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// A write transaction; without `sync` its commit is not flushed to disk.
pub(crate) fn begin_write<E>(
    db: &redb::Database,
    sync: bool,
) -> Result<redb::WriteTransaction, Fail<E>> {
    let mut txn = db.begin_write()?;
    if !sync {
        txn.set_durability(redb::Durability::None)?;
    }
    Ok(txn)
}
