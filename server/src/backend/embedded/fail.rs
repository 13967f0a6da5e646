//! The embedded store's internal error ([`crate::backend::redb_fail::Fail`] over
//! [`StoreError`]).

use crate::backend::redb_fail::{DbFault, classify};
use crate::backend::store::StoreError;

/// An internal failure; converts into [`StoreError`].
pub(super) type Fail = crate::backend::redb_fail::Fail<StoreError>;

/// A broken invariant or undecodable stored data.
pub(super) fn corrupt(what: impl Into<String>) -> Fail {
    Fail::Own(StoreError::Corrupt(what.into()))
}

impl From<StoreError> for Fail {
    fn from(error: StoreError) -> Self {
        Fail::Own(error)
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
            Fail::Own(error) => error,
            Fail::Db(error) => match classify(&error) {
                DbFault::Corrupt => StoreError::Corrupt(error.to_string()),
                DbFault::Unavailable => StoreError::Unavailable(error.to_string()),
            },
        }
    }
}
