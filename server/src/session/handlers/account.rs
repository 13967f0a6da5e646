//! Blocks, push tokens and room mutes.

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, room_id};
use crate::backend::store::PushToken;
use crate::chat::error::ChatError;
use crate::chat::validate;

pub(super) async fn block(ctx: Ctx<'_>, r: v1::BlockUserRequest) -> Result<Reply, ChatError> {
    let other = validate::user_id("user_id", &r.user_id)?;
    if &other == ctx.user {
        return Err(ChatError::invalid("user_id", "cannot block yourself"));
    }
    ctx.services.store.block(ctx.user, &other).await?;
    Ok(Reply::BlockUser(v1::BlockUserResponse {}))
}

pub(super) async fn unblock(ctx: Ctx<'_>, r: v1::UnblockUserRequest) -> Result<Reply, ChatError> {
    let other = validate::user_id("user_id", &r.user_id)?;
    ctx.services.store.unblock(ctx.user, &other).await?;
    Ok(Reply::UnblockUser(v1::UnblockUserResponse {}))
}

pub(super) async fn list_blocked(ctx: Ctx<'_>) -> Result<Reply, ChatError> {
    let user_ids = ctx
        .services
        .store
        .blocked(ctx.user)
        .await?
        .iter()
        .map(ToString::to_string)
        .collect();
    Ok(Reply::ListBlocked(v1::ListBlockedResponse { user_ids }))
}

pub(super) async fn register_push_token(
    ctx: Ctx<'_>,
    r: v1::RegisterPushTokenRequest,
) -> Result<Reply, ChatError> {
    let platform = match v1::PushPlatform::try_from(r.platform) {
        Err(_) => return Err(ChatError::UnknownValue { field: "platform" }),
        Ok(v1::PushPlatform::Unspecified) => {
            return Err(ChatError::invalid("platform", "a platform is required"));
        }
        Ok(platform) => platform,
    };
    if r.token.is_empty() || r.token.len() > 4096 {
        return Err(ChatError::invalid("token", "1 to 4096 bytes required"));
    }
    validate::text("device_id", &r.device_id, 128)?;
    let token = PushToken {
        platform,
        token: r.token,
        device_id: r.device_id,
    };
    ctx.services
        .store
        .register_push_token(ctx.user, token)
        .await?;
    Ok(Reply::RegisterPushToken(v1::RegisterPushTokenResponse {}))
}

pub(super) async fn unregister_push_token(
    ctx: Ctx<'_>,
    r: v1::UnregisterPushTokenRequest,
) -> Result<Reply, ChatError> {
    ctx.services
        .store
        .unregister_push_token(ctx.user, &r.token)
        .await?;
    Ok(Reply::UnregisterPushToken(
        v1::UnregisterPushTokenResponse {},
    ))
}

pub(super) async fn mute_room(ctx: Ctx<'_>, r: v1::MuteRoomRequest) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    if r.until_ms < 0 {
        return Err(ChatError::invalid("until_ms", "must not be negative"));
    }
    // A time in the past unmutes, and the reply says 0 (docs/protocol.md ).
    let until_ms = if r.until_ms <= ctx.services.clock.now_ms() {
        0
    } else {
        r.until_ms
    };
    let state = ctx
        .services
        .store
        .set_mute(ctx.user, &room, until_ms)
        .await?
        .ok_or(ChatError::NotFound)?;
    Ok(Reply::MuteRoom(v1::MuteRoomResponse {
        muted_until_ms: state.muted_until_ms,
    }))
}
