//! Ephemeral traffic: typing, presence snapshots and call signalling, relayed directly to
//! sessions and never logged.

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, room_id};
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;
use crate::chat::validate;
use crate::session::core::SessionCore;

/// Members read per store call while fanning typing out.
const TYPING_PAGE: usize = 500;

/// Typing goes to every other member's sessions.
pub(super) async fn typing(
    ctx: Ctx<'_>,
    core: &mut SessionCore,
    r: v1::TypingRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    ctx.member(&room).await?;
    ctx.services
        .rate_limit("typing", ctx.user, ctx.services.rates.typing)
        .await?;
    if !core.typing_gate(&room, r.active, std::time::Instant::now()) {
        return Ok(Reply::Typing(v1::TypingResponse {}));
    }
    let event = v1::Event {
        kind: Some(v1::event::Kind::TypingChanged(v1::TypingChanged {
            room_id: room.to_string(),
            user_id: ctx.user.to_string(),
            active: r.active,
            expires_in_ms: ctx.services.limits.typing_ttl_ms,
        })),
    };
    // Every member, a page at a time (a first page only left out the members past it).
    let mut after: Option<UserId> = None;
    loop {
        let page = ctx
            .services
            .store
            .members(&room, after.as_ref(), TYPING_PAGE)
            .await?;
        let last = page.last().and_then(|m| UserId::parse(&m.user_id).ok());
        for member in &page {
            if let Ok(user) = UserId::parse(&member.user_id)
                && &user != ctx.user
            {
                ctx.services.fanout.publish_user(&user, event.clone(), None);
            }
        }
        if page.len() < TYPING_PAGE || last.is_none() {
            break;
        }
        after = last;
    }
    Ok(Reply::Typing(v1::TypingResponse {}))
}

/// Starts presence events for users and returns their presence now. Users who blocked the
/// caller, or whom the caller blocked, appear offline and get no events, but count towards the
/// watch cap like any other.
pub(super) async fn watch_presence(
    ctx: Ctx<'_>,
    r: v1::WatchPresenceRequest,
) -> Result<Reply, ChatError> {
    let cap = ctx.services.limits.max_presence_watch as usize;
    if r.user_ids.len() > cap {
        return Err(ChatError::TooLarge {
            field: "user_ids",
            reason: format!("more than {cap} users"),
        });
    }
    // without `presence-room-watch` a room watch is UNSUPPORTED with the field,
    // whatever the room (it is not looked up, so this never reveals whether it exists).
    if !r.room_id.is_empty() {
        return Err(ChatError::UnknownValue { field: "room_id" });
    }
    let contacts = match ctx.services.contacts.presence_visibility {
        crate::config::PresenceVisibility::Anyone => None,
        crate::config::PresenceVisibility::Contacts => {
            Some(ctx.services.contact_ids.accepted(ctx.user).await?)
        }
    };
    let mut presences = Vec::with_capacity(r.user_ids.len());
    let (mut visible, mut hidden) = (Vec::new(), Vec::new());
    for raw in &r.user_ids {
        let user = validate::user_id("user_ids", raw)?;
        if !may_see_presence(&ctx, contacts.as_deref(), &user).await? {
            presences.push(v1::Presence {
                user_id: user.to_string(),
                online: false,
                last_seen_ms: 0,
            });
            hidden.push(user);
            continue;
        }
        presences.push(ctx.services.fanout.presence(&user));
        visible.push(user);
    }
    ctx.services
        .fanout
        .watch_presence(ctx.session, &visible, &hidden, cap)
        .map_err(|size| ChatError::TooLarge {
            field: "user_ids",
            reason: format!("the watch set would hold {size} users, more than {cap}"),
        })?;
    Ok(Reply::WatchPresence(v1::WatchPresenceResponse {
        presences,
    }))
}

/// Whether the caller may see `user`'s presence: not when either blocked the other, and with
/// `contacts.presence_visibility = "contacts"` only for accepted contacts (`contacts`, read
/// once per request) and oneself. Everyone else appears offline, never seen (R-14.1.6,
///
async fn may_see_presence(
    ctx: &Ctx<'_>,
    contacts: Option<&[UserId]>,
    user: &UserId,
) -> Result<bool, ChatError> {
    if user == ctx.user {
        return Ok(true);
    }
    if ctx.services.store.either_blocked(ctx.user, user).await? {
        return Ok(false);
    }
    Ok(contacts.is_none_or(|contacts| contacts.binary_search(user).is_ok()))
}

/// Stops presence events for users.
pub(super) async fn unwatch_presence(
    ctx: Ctx<'_>,
    r: v1::UnwatchPresenceRequest,
) -> Result<Reply, ChatError> {
    if !r.room_id.is_empty() {
        return Err(ChatError::UnknownValue { field: "room_id" });
    }
    let users = r
        .user_ids
        .iter()
        .map(|raw| validate::user_id("user_ids", raw))
        .collect::<Result<Vec<_>, _>>()?;
    ctx.services.fanout.unwatch_presence(ctx.session, &users);
    Ok(Reply::UnwatchPresence(v1::UnwatchPresenceResponse {}))
}

/// Relays a call signal to the target's live sessions (or one of them).
pub(super) async fn call_signal(
    ctx: Ctx<'_>,
    r: v1::CallSignalRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    ctx.member(&room).await?;
    let target = validate::user_id("target_user_id", &r.target_user_id)?;
    if ctx.services.store.member(&room, &target).await?.is_none() {
        return Err(ChatError::NotFound);
    }
    // no calls between users when either blocked the other.
    if target != *ctx.user && ctx.services.store.either_blocked(ctx.user, &target).await? {
        return Err(ChatError::PermissionDenied(
            "a block exists between caller and target",
        ));
    }
    if r.call_id.is_empty() || r.call_id.len() > 64 {
        return Err(ChatError::invalid("call_id", "1 to 64 bytes required"));
    }
    if r.signal.as_ref().and_then(|s| s.kind.as_ref()).is_none() {
        // An unset oneof is how a signal kind this server does not know arrives.
        return Err(ChatError::Unsupported("unknown or missing call signal"));
    }
    let event = v1::Event {
        kind: Some(v1::event::Kind::CallSignalReceived(
            v1::CallSignalReceived {
                call_id: r.call_id,
                room_id: room.to_string(),
                from_user_id: ctx.user.to_string(),
                from_session_id: ctx.session.to_string(),
                signal: r.signal,
            },
        )),
    };
    let mut delivered = 0u32;
    for session in ctx.services.fanout.sessions_of(&target) {
        let wanted = session != ctx.session
            && (r.target_session_id.is_empty() || r.target_session_id == session.to_string());
        if wanted && ctx.services.fanout.publish_session(session, event.clone()) {
            delivered += 1;
        }
    }
    Ok(Reply::CallSignal(v1::CallSignalResponse {
        delivered_sessions: delivered,
    }))
}
