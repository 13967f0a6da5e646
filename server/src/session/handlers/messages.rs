//! Send, Edit, Delete and React: validated here, executed by the room's writer. Each is
//! prepared first (parsed, checked, rate-limited) and then handed to the writer, so that the
//! driver can let a session's later requests run while the writer works (R-5.3.1 holds: the
//! command takes its place in the room's order when it is handed over).

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, Prepared, room_id};
use crate::chat::command::{Outcome, RoomOp, SendOp, Verdict};
use crate::chat::error::ChatError;
use crate::chat::validate;
use crate::moderation::Subject;

pub(super) async fn send(ctx: Ctx<'_>, r: v1::SendRequest) -> Result<Prepared, ChatError> {
    let room = room_id(&r.room_id)?;
    validate::client_msg_id(&r.client_msg_id)?;
    take_send_token(&ctx).await?;
    // The room's own bucket, next to the user's.
    ctx.services
        .rate_limit_key("room-send", room.as_str(), ctx.services.rates.room_sends)
        .await?;
    let content = validate::content(r.content, &ctx.services.content)?;
    // The moderation stage, before the shard queue (crate::moderation).
    let subject = Subject {
        room: room.as_str(),
        sender: ctx.user.as_str(),
        client_msg_id: Some(&r.client_msg_id),
        content: &content,
    };
    let verdict = ctx
        .services
        .moderation
        .check(subject, ctx.services.clock.now_ms())
        .await?;
    let send = SendOp {
        client_msg_id: r.client_msg_id,
        content,
        reply_to_seq: r.reply_to_seq,
        thread_root_seq: r.thread_root_seq,
    };
    let flagged = verdict.flagged.then(|| verdict.clone());
    let op = if verdict == Verdict::default() {
        RoomOp::Send(send)
    } else {
        RoomOp::ModeratedSend { send, verdict }
    };
    let mut prepared = ctx.prepare(room, op, |outcome| match outcome {
        Outcome::Sent(response) => Ok(Reply::Send(response)),
        _ => Err(ChatError::Internal),
    });
    prepared.flagged = flagged;
    Ok(prepared)
}

/// Send, Edit and React share the user's send bucket: each writes content others
/// receive. Delete does not: it only takes content away, and a moderator cleaning up a flood
/// must not be slowed by it.
async fn take_send_token(ctx: &Ctx<'_>) -> Result<(), ChatError> {
    ctx.services
        .rate_limit("send", ctx.user, ctx.services.rates.sends)
        .await
}

pub(super) async fn edit(ctx: Ctx<'_>, r: v1::EditRequest) -> Result<Prepared, ChatError> {
    let room = room_id(&r.room_id)?;
    take_send_token(&ctx).await?;
    let content = validate::content(r.content, &ctx.services.content)?;
    // The moderation stage, before the shard queue: an edit is stored masked.
    let subject = Subject {
        room: room.as_str(),
        sender: ctx.user.as_str(),
        client_msg_id: None,
        content: &content,
    };
    let verdict = ctx
        .services
        .moderation
        .check(subject, ctx.services.clock.now_ms())
        .await?;
    let op = RoomOp::Edit {
        target_seq: r.target_seq,
        content: verdict.masked.clone().unwrap_or(content),
    };
    let mut prepared = ctx.prepare(room, op, |outcome| match outcome {
        Outcome::Edited { seq, edited_at_ms } => {
            Ok(Reply::Edit(v1::EditResponse { seq, edited_at_ms }))
        }
        _ => Err(ChatError::Internal),
    });
    prepared.flagged = verdict.flagged.then_some(verdict);
    Ok(prepared)
}

pub(super) fn delete(ctx: Ctx<'_>, r: v1::DeleteRequest) -> Result<Prepared, ChatError> {
    let room = room_id(&r.room_id)?;
    let op = RoomOp::Delete {
        target_seq: r.target_seq,
        reason: super::moderation::reason(&r.reason)?,
    };
    Ok(ctx.prepare(room, op, |outcome| match outcome {
        Outcome::Seq(seq) => Ok(Reply::Delete(v1::DeleteResponse { seq })),
        _ => Err(ChatError::Internal),
    }))
}

pub(super) async fn react(ctx: Ctx<'_>, r: v1::ReactRequest) -> Result<Prepared, ChatError> {
    let room = room_id(&r.room_id)?;
    validate::emoji(&r.emoji)?;
    take_send_token(&ctx).await?;
    let op = RoomOp::React {
        target_seq: r.target_seq,
        emoji: r.emoji,
        add: r.add,
    };
    Ok(ctx.prepare(room, op, |outcome| match outcome {
        Outcome::Seq(seq) => Ok(Reply::React(v1::ReactResponse { seq })),
        _ => Err(ChatError::Internal),
    }))
}
