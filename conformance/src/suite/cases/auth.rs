//! Authentication: bad tokens at `Connect` (signature, `alg: none`, expiry, audience, issuer,
//! garbage) and in-band `Refresh`.

use chatwire_protocol::v1::{self, CloseCode, ErrorCode, event};

use super::case;
use crate::suite::check::{
    Check, ensure_closed, ensure_disconnect, ensure_eq, ensure_error, within,
};
use crate::suite::token::{expiry_s, tamper_signature};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "AU-01",
            "auth",
            Must,
            ["R-4.2.1", "R-4.2.6", "R-4.7.1"],
            ["Connect"],
            None,
            false,
            "a token with a bad signature: UNAUTHENTICATED, Disconnect and close 4001",
            bad_signature
        ),
        case!(
            "AU-02",
            "auth",
            Must,
            ["R-4.2.1"],
            ["Connect"],
            None,
            true,
            "an alg none token is refused with close 4001",
            alg_none
        ),
        case!(
            "AU-03",
            "auth",
            Must,
            ["R-4.2.3", "R-4.2.6"],
            ["Connect"],
            None,
            true,
            "an expired token is refused with close 4002",
            expired
        ),
        case!(
            "AU-04",
            "auth",
            Must,
            ["R-4.2.3"],
            ["Connect"],
            None,
            true,
            "a token for another audience is refused with close 4001",
            wrong_audience
        ),
        case!(
            "AU-05",
            "auth",
            Must,
            ["R-4.2.3"],
            ["Connect"],
            None,
            true,
            "a token from another issuer is refused with close 4001",
            wrong_issuer
        ),
        case!(
            "AU-06",
            "auth",
            Must,
            ["R-4.2.6"],
            ["Connect"],
            None,
            false,
            "a malformed token is refused with close 4001",
            malformed
        ),
        case!(
            "AU-07",
            "auth",
            Must,
            ["R-4.4.3", "R-4.2.7"],
            ["Refresh"],
            None,
            false,
            "Refresh with a valid token returns the new expiry",
            refresh_ok
        ),
        case!(
            "AU-08",
            "auth",
            Must,
            ["R-4.4.3", "R-4.2.5"],
            ["Refresh", "Ping"],
            None,
            false,
            "Refresh with another user's token fails (field token) and the session goes on",
            refresh_other_user
        ),
        case!(
            "AU-09",
            "auth",
            Must,
            ["R-4.4.3"],
            ["Refresh", "Ping"],
            None,
            false,
            "Refresh with a bad signature fails (field token) and the session goes on",
            refresh_bad_signature
        ),
        case!(
            "AU-10",
            "auth",
            Should,
            ["R-4.4.1", "R-4.3.1"],
            ["Connect"],
            None,
            true,
            "a token with under 60 s left gets TokenExpiring at once, expires_at_ms = exp * 1000",
            token_expiring
        ),
    ]
}

async fn refused(ctx: &Ctx, token: String, close: CloseCode) -> Check {
    let client = ctx.open().await?;
    ensure_error(
        within("the reply to Connect", client.connect(&token)).await?,
        ErrorCode::Unauthenticated,
        None,
    )?;
    ensure_disconnect(&client, close).await?;
    ensure_closed(&client, close).await
}

async fn bad_signature(ctx: Ctx) -> Check {
    let token = tamper_signature(&ctx.token(&ctx.user("alice")).await?);
    refused(&ctx, token, CloseCode::AuthFailed).await
}

async fn alg_none(ctx: Ctx) -> Check {
    let token = ctx.key()?.alg_none(&ctx.user("alice"));
    refused(&ctx, token, CloseCode::AuthFailed).await
}

async fn expired(ctx: Ctx) -> Check {
    let key = ctx.key()?;
    // Ten minutes past: beyond any leeway the spec allows (60 s).
    let token = key.sign(&key.claims(&ctx.user("alice"), -600))?;
    refused(&ctx, token, CloseCode::AuthExpired).await
}

async fn wrong_audience(ctx: Ctx) -> Check {
    let key = ctx.key()?;
    let mut claims = key.claims(&ctx.user("alice"), 3600);
    claims.aud = format!("{}-elsewhere", claims.aud);
    refused(&ctx, key.sign(&claims)?, CloseCode::AuthFailed).await
}

async fn wrong_issuer(ctx: Ctx) -> Check {
    let key = ctx.key()?;
    let mut claims = key.claims(&ctx.user("alice"), 3600);
    claims.iss = format!("{}-elsewhere", claims.iss);
    refused(&ctx, key.sign(&claims)?, CloseCode::AuthFailed).await
}

async fn malformed(ctx: Ctx) -> Check {
    refused(&ctx, "not.a-jwt".to_owned(), CloseCode::AuthFailed).await
}

async fn refresh_ok(ctx: Ctx) -> Check {
    let user = ctx.user("alice");
    let client = ctx.client(&user).await?;
    let token = match ctx.key() {
        Ok(key) => key.sign(&key.claims(&user, 7200))?,
        Err(_) => ctx.token(&user).await?,
    };
    let response = within(
        "RefreshResponse",
        client.refresh(v1::RefreshRequest {
            token: token.clone(),
        }),
    )
    .await??;
    if let Some(exp) = expiry_s(&token) {
        ensure_eq(
            "token_expires_at_ms",
            exp * 1000,
            response.token_expires_at_ms,
        )?;
    }
    Ok(())
}

async fn refresh_other_user(ctx: Ctx) -> Check {
    let client = ctx.client(&ctx.user("alice")).await?;
    let token = ctx.token(&ctx.user("mallory")).await?;
    let result = within("the reply", client.refresh(v1::RefreshRequest { token })).await?;
    ensure_error(result, ErrorCode::Unauthenticated, Some("token"))?;
    super::barrier(&client).await
}

async fn refresh_bad_signature(ctx: Ctx) -> Check {
    let user = ctx.user("alice");
    let client = ctx.client(&user).await?;
    let token = tamper_signature(&ctx.token(&user).await?);
    let result = within("the reply", client.refresh(v1::RefreshRequest { token })).await?;
    ensure_error(result, ErrorCode::Unauthenticated, Some("token"))?;
    super::barrier(&client).await
}

async fn token_expiring(ctx: Ctx) -> Check {
    let key = ctx.key()?;
    let user = ctx.user("alice");
    let client = ctx.open().await?;
    let claims = key.claims(&user, 40);
    let exp_ms = claims.exp * 1000;
    let response = within("ConnectResponse", client.connect(&key.sign(&claims)?)).await??;
    ensure_eq(
        "ConnectResponse.token_expires_at_ms (exp * 1000)",
        exp_ms,
        response.token_expires_at_ms,
    )?;
    loop {
        let event = within("a TokenExpiring event", client.next_event()).await??;
        if let Some(event::Kind::TokenExpiring(expiring)) = event.kind {
            // the same instant as ConnectResponse, the token's exp in ms.
            return ensure_eq(
                "TokenExpiring.expires_at_ms (exp * 1000)",
                exp_ms,
                expiring.expires_at_ms,
            );
        }
    }
}
