//! Blocks, push tokens, mute, and the send rate limit.

use chatwire_protocol::v1::{self, ErrorCode, PushPlatform};

use super::case;
use crate::client::ClientError;
use crate::suite::check::{Check, Failure, ensure, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "AC-01",
            "account",
            Must,
            ["R-17.1.1", "R-17.1.2", "R-8.1.2"],
            [
                "BlockUser",
                "UnblockUser",
                "ListBlocked",
                "OpenDirect",
                "Send"
            ],
            None,
            false,
            "blocks are idempotent and stop direct messages; unblock lifts it",
            blocks
        ),
        case!(
            "AC-02",
            "account",
            Must,
            ["R-17.2.1", "R-17.2.3"],
            ["RegisterPushToken", "UnregisterPushToken"],
            None,
            false,
            "push tokens need a platform; register and unregister are idempotent",
            push_tokens
        ),
        case!(
            "AC-03",
            "account",
            Must,
            ["R-17.3.1"],
            ["MuteRoom"],
            None,
            false,
            "MuteRoom sets and clears the caller's mute",
            mute
        ),
        case!(
            "LI-01",
            "limits",
            Must,
            ["R-18.1.5", "R-5.6.5", "R-8.1.4"],
            ["Send"],
            None,
            false,
            "sends over the advertised burst get RATE_LIMITED with retry_after_ms",
            send_rate
        ),
    ]
}

async fn blocks(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let direct = within(
        "OpenDirectResponse",
        a.open_direct(v1::OpenDirectRequest {
            user_id: bob.clone(),
        }),
    )
    .await??;
    let room = direct.room.map(|r| r.id).unwrap_or_default();
    for _ in 0..2 {
        within(
            "BlockUserResponse",
            a.block_user(v1::BlockUserRequest {
                user_id: bob.clone(),
            }),
        )
        .await??;
    }
    let listed = within(
        "ListBlockedResponse",
        a.list_blocked(v1::ListBlockedRequest {}),
    )
    .await??;
    ensure_eq("blocked", vec![bob.clone()], listed.user_ids)?;
    let send = within("the reply", b.send(super::send_req(&room, "b-1", "hi"))).await?;
    ensure_error(send, ErrorCode::PermissionDenied, None)?;
    for _ in 0..2 {
        within(
            "UnblockUserResponse",
            a.unblock_user(v1::UnblockUserRequest {
                user_id: bob.clone(),
            }),
        )
        .await??;
    }
    super::send(&b, &room, "b-2", "hi again").await?;
    Ok(())
}

async fn push_tokens(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let token = format!("push-{}", ctx.user("t"));
    let none = v1::RegisterPushTokenRequest {
        platform: PushPlatform::Unspecified as i32,
        token: token.clone(),
        device_id: "dev-1".into(),
    };
    ensure_error(
        within("the reply", a.register_push_token(none)).await?,
        ErrorCode::InvalidArgument,
        None,
    )?;
    let req = v1::RegisterPushTokenRequest {
        platform: PushPlatform::Fcm as i32,
        token: token.clone(),
        device_id: "dev-1".into(),
    };
    for _ in 0..2 {
        within(
            "RegisterPushTokenResponse",
            a.register_push_token(req.clone()),
        )
        .await??;
    }
    for _ in 0..2 {
        within(
            "UnregisterPushTokenResponse",
            a.unregister_push_token(v1::UnregisterPushTokenRequest {
                token: token.clone(),
            }),
        )
        .await??;
    }
    Ok(())
}

async fn mute(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let until = (super::super::token::now_s() + 3600) * 1000;
    let muted = within(
        "MuteRoomResponse",
        a.mute_room(v1::MuteRoomRequest {
            room_id: room.clone(),
            until_ms: until,
        }),
    )
    .await??;
    ensure_eq("muted_until_ms", until, muted.muted_until_ms)?;
    let cleared = within(
        "MuteRoomResponse",
        a.mute_room(v1::MuteRoomRequest {
            room_id: room,
            until_ms: 0,
        }),
    )
    .await??;
    ensure_eq("muted_until_ms after unmute", 0, cleared.muted_until_ms)
}

async fn send_rate(ctx: Ctx) -> Check {
    let (a, response) = ctx.session(&ctx.user("alice")).await?;
    let limits = response.limits.unwrap_or_default();
    if limits.send_burst > 200 {
        return Err(Failure::Skip(format!(
            "send_burst {} is too large to exhaust",
            limits.send_burst
        )));
    }
    let room = super::group(&a, &[]).await?;
    // Twice the burst, concurrently: the bucket refills slower than that arrives.
    let attempts = (limits.send_burst as usize) * 2 + 10;
    let sends = (0..attempts).map(|n| a.send(super::send_req(&room, &format!("rl-{n}"), "x")));
    let results = futures_util::future::join_all(sends).await;
    let limited = results.iter().find_map(|r| match r {
        Err(ClientError::Server(err)) if err.code() == ErrorCode::RateLimited => Some(err.clone()),
        _ => None,
    });
    let other = results
        .iter()
        .find(|r| matches!(r, Err(e) if e.server_code() != Some(ErrorCode::RateLimited)));
    ensure(
        other.is_none(),
        "every send answered: a SendResponse or RATE_LIMITED",
        other,
    )?;
    let err = limited.ok_or_else(|| {
        Failure::new(
            format!("RATE_LIMITED within {attempts} sends"),
            "every send succeeded",
        )
    })?;
    ensure(
        err.retryable && err.retry_after_ms > 0,
        "retryable with retry_after_ms > 0",
        err,
    )
}
