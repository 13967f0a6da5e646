//! Extractors whose rejections are the admin API's JSON errors (axum's own answer in plain
//! text), and the parsing of path segments into typed ids.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};
use crate::chat::validate;

/// A JSON request body.
#[derive(Debug)]
pub(super) struct Body<T>(pub(super) T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    let (status, code) = match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (StatusCode::PAYLOAD_TOO_LARGE, "TOO_LARGE"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            (StatusCode::UNSUPPORTED_MEDIA_TYPE, "INVALID_ARGUMENT")
        }
        // Undecodable or mistyped JSON (axum: 400 or 422) is a malformed request.
        _ => (StatusCode::BAD_REQUEST, "INVALID_ARGUMENT"),
    };
    ApiError::new(status, code, rejection.body_text())
}

/// A query string.
#[derive(Debug)]
pub(super) struct Query<T>(pub(super) T);

impl<S, T> FromRequestParts<S> for Query<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => Err(query_rejection(&rejection)),
        }
    }
}

fn query_rejection(rejection: &QueryRejection) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "INVALID_ARGUMENT",
        rejection.body_text(),
    )
}

/// A room id from the path; a malformed one names no room.
pub(super) fn room(raw: &str) -> Result<RoomId, ApiError> {
    RoomId::parse(raw).map_err(|_| ChatError::NotFound.into())
}

/// A user id from the path or a body field.
pub(super) fn user(field: &'static str, raw: &str) -> Result<UserId, ApiError> {
    Ok(validate::user_id(field, raw)?)
}

/// A message seq from the path.
pub(super) fn seq(raw: &str) -> Result<u64, ApiError> {
    match raw.parse::<u64>() {
        Ok(seq) if seq > 0 => Ok(seq),
        _ => Err(ApiError::invalid("seq", "a positive integer is required")),
    }
}
