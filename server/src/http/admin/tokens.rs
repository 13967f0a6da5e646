//! `/admin/tokens`: HS256 session tokens for development and tests, signed with the
//! configured secret (the data folder's `jwt-secret` by default).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::error::{ApiError, ApiResult, ErrorBody};
use super::extract::{self, Body};
use crate::http::AppState;

/// The longest lifetime a minted token may have: 30 days.
const MAX_TTL_MS: i64 = 30 * 24 * 3_600_000;

/// A token to mint.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct MintToken {
    /// The token's subject.
    pub(super) user_id: String,
    /// How long it is valid, in ms; one hour by default, at most 30 days.
    pub(super) ttl_ms: Option<i64>,
}

/// A minted token.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Minted {
    /// The JWT.
    pub(super) token: String,
    /// Its subject.
    pub(super) user_id: String,
    /// When it was issued (`iat`, whole seconds), Unix ms.
    pub(super) issued_at_ms: i64,
    /// When it expires (`exp`, whole seconds), Unix ms.
    pub(super) expires_at_ms: i64,
}

/// Mints a development token (HS256). Answers 409 when the server does not accept HS256.
#[utoipa::path(post, path = "/tokens", tag = "tokens", request_body = MintToken,
    responses((status = 200, body = Minted), (status = 400, body = ErrorBody),
        (status = 409, description = "HS256 is not configured", body = ErrorBody)))]
pub(super) async fn mint(
    State(state): State<AppState>,
    Body(r): Body<MintToken>,
) -> ApiResult<Json<Minted>> {
    let user = extract::user("user_id", &r.user_id)?;
    let ttl_ms = r.ttl_ms.unwrap_or(3_600_000);
    if !(1..=MAX_TTL_MS).contains(&ttl_ms) {
        return Err(ApiError::invalid("ttl_ms", "1 ms to 30 days"));
    }
    let Some(minter) = &state.admin.minter else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "FAILED_PRECONDITION",
            "token minting needs HS256 among the accepted algorithms",
        ));
    };
    let now = state.services.clock.now_ms();
    let token = minter
        .mint(&user, ttl_ms, now)
        .map_err(|e| ApiError::invalid("ttl_ms", e.to_string()))?;
    Ok(Json(Minted {
        token,
        user_id: user.to_string(),
        issued_at_ms: now.div_euclid(1000) * 1000,
        expires_at_ms: (now + ttl_ms).div_euclid(1000) * 1000,
    }))
}
