//! The domain's error type and its mapping to the protocol's `Error`.

use chatwire_protocol::v1;

/// Why a chat operation failed. Each variant maps to one `ErrorCode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The token is missing, invalid, expired or revoked.
    #[error("unauthenticated")]
    Unauthenticated,
    /// A token in a request (Refresh) was refused: UNAUTHENTICATED with field "token"
    /// (docs/protocol.md ).
    #[error("unauthenticated: the token was refused")]
    TokenRefused,
    /// The room or message does not exist, or the caller may not see it (the same error, so
    /// ids cannot be probed).
    #[error("not found")]
    NotFound,
    /// The message a request points to does not exist or is not visible to the caller.
    #[error("not found")]
    MessageNotFound {
        /// The request field that names the message.
        field: &'static str,
    },
    /// The caller may not do this.
    #[error("permission denied: {0}")]
    PermissionDenied(&'static str),
    /// A field is missing or malformed.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field's proto path.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A field exceeds a limit.
    #[error("{field} is too large: {reason}")]
    TooLarge {
        /// The field's proto path.
        field: &'static str,
        /// Which limit.
        reason: String,
    },
    /// The request conflicts with existing state.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The request does not fit the current state.
    #[error("failed precondition: {0}")]
    FailedPrecondition(&'static str),
    /// A rate or in-flight limit.
    #[error("rate limited")]
    RateLimited {
        /// When to retry.
        retry_after_ms: u32,
    },
    /// A backend is unavailable; retry.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// The request type or option is not supported.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// A request used an enum value this server does not know where the value changes the
    /// request's meaning: UNSUPPORTED with `field` (docs/protocol.md ).
    #[error("unsupported value of {field}")]
    UnknownValue {
        /// The field holding the value.
        field: &'static str,
    },
    /// A moderator restricted the caller in this room.
    #[error("restricted by a moderator until {until_ms}")]
    Restricted {
        /// How long the restriction still lasts, in milliseconds (capped).
        retry_after_ms: u32,
        /// When it ends, Unix milliseconds.
        until_ms: i64,
    },
    /// The moderation stage refused the content.
    #[error("content rejected: {0}")]
    ContentRejected(&'static str),
    /// An unexpected fault.
    #[error("internal error")]
    Internal,
}

impl ChatError {
    /// An `InvalidArgument` for `field`.
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        ChatError::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }

    /// The protocol error sent to the client.
    pub fn to_proto(&self) -> v1::Error {
        use v1::ErrorCode as C;
        let (code, retryable, retry_after_ms, field) = match self {
            ChatError::Unauthenticated => (C::Unauthenticated, false, 0, ""),
            ChatError::TokenRefused => (C::Unauthenticated, false, 0, "token"),
            ChatError::NotFound => (C::NotFound, false, 0, ""),
            ChatError::MessageNotFound { field } => (C::NotFound, false, 0, *field),
            ChatError::PermissionDenied(_) => (C::PermissionDenied, false, 0, ""),
            ChatError::InvalidArgument { field, .. } => (C::InvalidArgument, false, 0, *field),
            ChatError::TooLarge { field, .. } => (C::TooLarge, false, 0, *field),
            ChatError::Conflict(_) => (C::Conflict, false, 0, ""),
            ChatError::FailedPrecondition(_) => (C::FailedPrecondition, false, 0, ""),
            ChatError::RateLimited { retry_after_ms } => {
                (C::RateLimited, true, *retry_after_ms, "")
            }
            ChatError::Unavailable(_) => (C::Unavailable, true, 500, ""),
            ChatError::Unsupported(_) => (C::Unsupported, false, 0, ""),
            ChatError::UnknownValue { field } => (C::Unsupported, false, 0, *field),
            ChatError::Restricted { retry_after_ms, .. } => {
                (C::Restricted, false, *retry_after_ms, "")
            }
            ChatError::ContentRejected(_) => (C::ContentRejected, false, 0, "content.text"),
            ChatError::Internal => (C::Internal, true, 1000, ""),
        };
        v1::Error {
            code: code.into(),
            // Internal details stay in the server's logs.
            message: match self {
                ChatError::Unavailable(_) => "a backend is unavailable".to_owned(),
                other => other.to_string(),
            },
            retryable,
            retry_after_ms,
            field: field.to_owned(),
        }
    }
}
