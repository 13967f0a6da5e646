//! The embedded store's internal error: a redb error or a store error, turned into a
//! [`StoreError`] at the edge of each operation so that redb types never leave this module.

use crate::backend::store::StoreError;

/// An internal failure; converts into [`StoreError`].
#[derive(Debug)]
pub(super) enum Fail {
    /// redb failed.
    Db(redb::Error),
    /// Already a store error (a decode failure, a broken invariant).
    Store(StoreError),
}

/// A broken invariant or undecodable stored data.
pub(super) fn corrupt(what: impl Into<String>) -> Fail {
    Fail::Store(StoreError::Corrupt(what.into()))
}

macro_rules! from_redb {
    ($($error:ty),*) => {
        $(impl From<$error> for Fail {
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

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Fail::Store(error)
    }
}

impl From<prost::DecodeError> for Fail {
    fn from(error: prost::DecodeError) -> Self {
        corrupt(format!("undecodable stored value: {error}"))
    }
}

impl From<Fail> for StoreError {
    fn from(fail: Fail) -> Self {
        match fail {
            Fail::Store(error) => error,
            // Data that does not match what this build expects: retrying will not help.
            Fail::Db(
                error @ (redb::Error::Corrupted(_)
                | redb::Error::UpgradeRequired(_)
                | redb::Error::TableTypeMismatch { .. }
                | redb::Error::TypeDefinitionChanged { .. }
                | redb::Error::TableIsMultimap(_)
                | redb::Error::TableIsNotMultimap(_)
                | redb::Error::ValueTooLarge(_)),
            ) => StoreError::Corrupt(error.to_string()),
            // I/O, a lock held by another process, a closed database: the caller may retry.
            Fail::Db(error) => StoreError::Unavailable(error.to_string()),
        }
    }
}
