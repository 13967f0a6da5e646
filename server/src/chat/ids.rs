//! Identifiers parsed once at the edge: a `RoomId` or `UserId` is always valid.

use std::fmt;
use std::sync::Arc;

/// Longest user or room id, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Why a string is not a valid id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("id is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_BYTES`].
    #[error("id is longer than {MAX_ID_BYTES} bytes")]
    TooLong,
    /// The id holds a character outside `[A-Za-z0-9._:@-]`.
    #[error("id holds a character outside [A-Za-z0-9._:@-]")]
    BadCharacter,
}

fn check(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.len() > MAX_ID_BYTES {
        return Err(IdError::TooLong);
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '@' | '-');
    if raw.chars().all(allowed) {
        Ok(())
    } else {
        Err(IdError::BadCharacter)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Parses an id received from a peer or an operator.
            pub fn parse(raw: &str) -> Result<Self, IdError> {
                check(raw)?;
                Ok(Self(Arc::from(raw)))
            }

            /// The id as a string.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), &*self.0)
            }
        }
    };
}

id_type!(
    /// A user id: the `sub` of a token. `[A-Za-z0-9._:@-]{1,128}`.
    UserId
);
id_type!(
    /// A room id, `[A-Za-z0-9._:@-]{1,128}`: `d.<hex>` for direct rooms, `g.<hex>` for groups.
    RoomId
);

impl RoomId {
    /// The id of the direct room of two users (order does not matter), docs/protocol.md
    /// `d.` + hex(SHA-256(len(a) ‖ a ‖ len(b) ‖ b)) with `a <= b` bytewise and
    /// 4-byte big-endian lengths. `None` when the two users are the same.
    pub fn direct(a: &UserId, b: &UserId) -> Option<RoomId> {
        use sha2::Digest as _;
        let (first, second) = if a.as_str() <= b.as_str() {
            (a, b)
        } else {
            (b, a)
        };
        if first == second {
            return None;
        }
        let mut hasher = sha2::Sha256::new();
        for id in [first, second] {
            let len = u32::try_from(id.as_str().len()).ok()?;
            hasher.update(len.to_be_bytes());
            hasher.update(id.as_str().as_bytes());
        }
        RoomId::parse(&format!("d.{}", hex(&hasher.finalize()))).ok()
    }

    /// A group id: `g.` + 32 hex digits, random, or derived from the creator and the
    /// creation's `client_request_id` so that a retry names the same room.
    pub fn group(creator: &UserId, client_request_id: &str) -> RoomId {
        use sha2::Digest as _;
        let digest: Vec<u8> = if client_request_id.is_empty() {
            uuid::Uuid::new_v4().as_bytes().to_vec()
        } else {
            let mut hasher = sha2::Sha256::new();
            hasher.update(b"chatwire.group\0");
            hasher.update(creator.as_str().as_bytes());
            hasher.update(b"\0");
            hasher.update(client_request_id.as_bytes());
            hasher.finalize().to_vec()
        };
        let id = format!("g.{}", hex(digest.get(..16).unwrap_or(&digest)));
        // Always valid: "g." and hex digits.
        RoomId(Arc::from(id))
    }

    /// True for direct room ids.
    pub fn is_direct(&self) -> bool {
        self.0.starts_with("d.")
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut out, b| {
            let _ = write!(out, "{b:02x}");
            out
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked() {
        assert_eq!(UserId::parse(""), Err(IdError::Empty));
        assert_eq!(UserId::parse("a b"), Err(IdError::BadCharacter));
        assert_eq!(UserId::parse(&"x".repeat(129)), Err(IdError::TooLong));
        assert!(UserId::parse("alice@example.com").is_ok());
        assert!(UserId::parse("a:b").is_ok());
        assert!(RoomId::parse("g:1234").is_ok());
    }

    #[test]
    fn direct_ids_do_not_depend_on_order() {
        let alice = UserId::parse("alice").unwrap();
        let bob = UserId::parse("bob").unwrap();
        assert_eq!(RoomId::direct(&alice, &bob), RoomId::direct(&bob, &alice));
        // The worked example of docs/protocol.md, Appendix A.4.
        assert_eq!(
            RoomId::direct(&alice, &bob).unwrap().as_str(),
            "d.884a452152d3bf048cc051df8f708aff3f854a3db0876f4e9f429effa3a09a27"
        );
        assert!(RoomId::direct(&alice, &alice).is_none());
    }
}
