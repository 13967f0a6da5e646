//! Send, Edit, Delete and React: validated here, executed by the room's writer. Each is
//! prepared first (parsed, checked, rate-limited) and then handed to the writer, so that the
//! driver can let a session's later requests run while the writer works (R-5.3.1 holds: the
//! command takes its place in the room's order when it is handed over).

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, Prepared, room_id};
use crate::chat::command::{Outcome, RoomOp, SendOp};
use crate::chat::error::ChatError;
use crate::chat::validate;

pub(super) async fn send(ctx: Ctx<'_>, r: v1::SendRequest) -> Result<Prepared, ChatError> {
    let room = room_id(&r.room_id)?;
    validate::client_msg_id(&r.client_msg_id)?;
    take_send_token(&ctx).await?;
    let content = validate::content(r.content, &ctx.services.content)?;
    let op = SendOp {
        client_msg_id: r.client_msg_id,
        content,
        reply_to_seq: r.reply_to_seq,
        thread_root_seq: r.thread_root_seq,
    };
    Ok(
        ctx.prepare(room, RoomOp::Send(op), |outcome| match outcome {
            Outcome::Sent(response) => Ok(Reply::Send(response)),
            _ => Err(ChatError::Internal),
        }),
    )
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
    let op = RoomOp::Edit {
        target_seq: r.target_seq,
        content,
    };
    Ok(ctx.prepare(room, op, |outcome| match outcome {
        Outcome::Edited { seq, edited_at_ms } => {
            Ok(Reply::Edit(v1::EditResponse { seq, edited_at_ms }))
        }
        _ => Err(ChatError::Internal),
    }))
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
