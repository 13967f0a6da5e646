//! The admin API's JSON errors: `{"code": "NOT_FOUND", "message": "..."}` with the HTTP status
//! of the code. Codes are the protocol's `ErrorCode` names without their `ERROR_CODE_` prefix,
//! so a client sees the same vocabulary over HTTP and over the session protocol.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chatwire_protocol::v1;
use serde::Serialize;
use utoipa::ToSchema;

use crate::backend::store::StoreError;
use crate::chat::error::ChatError;

/// The body of every error response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error code, e.g. `NOT_FOUND`, `INVALID_ARGUMENT`, `UNAUTHENTICATED`.
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// The request field at fault, when one is.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub field: String,
}

/// An error answered by an admin handler.
#[derive(Debug, Clone)]
pub struct ApiError {
    status: StatusCode,
    body: ErrorBody,
    retry_after_ms: u32,
}

impl ApiError {
    /// An error with a status, a code and a message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            body: ErrorBody {
                code: code.to_owned(),
                message: message.into(),
                field: String::new(),
            },
            retry_after_ms: 0,
        }
    }

    /// 401: the admin key is missing or wrong.
    pub fn unauthenticated() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "send the admin key as `Authorization: Bearer <key>`",
        )
    }

    /// 400 for a malformed request field.
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ChatError::invalid(field, message).into()
    }

    /// 404 for a path that names no endpoint.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body.
    pub fn body(&self) -> &ErrorBody {
        &self.body
    }
}

fn status_of(code: v1::ErrorCode) -> StatusCode {
    use v1::ErrorCode as C;
    match code {
        C::InvalidArgument | C::Unsupported => StatusCode::BAD_REQUEST,
        C::Unauthenticated => StatusCode::UNAUTHORIZED,
        C::PermissionDenied | C::Restricted => StatusCode::FORBIDDEN,
        C::NotFound => StatusCode::NOT_FOUND,
        C::Conflict | C::FailedPrecondition => StatusCode::CONFLICT,
        C::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        C::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        C::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        C::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ChatError> for ApiError {
    fn from(err: ChatError) -> Self {
        if let ChatError::Internal | ChatError::Unavailable(_) = &err {
            tracing::warn!(error = %err, "admin request failed");
        }
        let proto = err.to_proto();
        let code = v1::ErrorCode::try_from(proto.code).unwrap_or(v1::ErrorCode::Internal);
        Self {
            status: status_of(code),
            body: ErrorBody {
                code: code
                    .as_str_name()
                    .trim_start_matches("ERROR_CODE_")
                    .to_owned(),
                message: proto.message,
                field: proto.field,
            },
            retry_after_ms: proto.retry_after_ms,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ChatError::from(err).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body)).into_response();
        if self.retry_after_ms > 0 {
            let seconds = self.retry_after_ms.div_ceil(1000).to_string();
            if let Ok(value) = HeaderValue::from_str(&seconds) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

/// What admin handlers return.
pub(super) type ApiResult<T> = Result<T, ApiError>;
