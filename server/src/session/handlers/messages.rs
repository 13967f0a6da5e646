//! Send, Edit, Delete and React: validated here, executed by the room's writer.

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, receipts, room_id};
use crate::chat::command::{Outcome, RoomOp, SendOp};
use crate::chat::error::ChatError;
use crate::chat::validate;

pub(super) async fn send(ctx: Ctx<'_>, r: v1::SendRequest) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    validate::client_msg_id(&r.client_msg_id)?;
    ctx.services
        .rate_limit("send", ctx.user, ctx.services.rates.sends)
        .await?;
    let content = validate::content(r.content, &ctx.services.content)?;
    let op = SendOp {
        client_msg_id: r.client_msg_id,
        content,
        reply_to_seq: r.reply_to_seq,
        thread_root_seq: r.thread_root_seq,
    };
    match ctx.write(room.clone(), RoomOp::Send(op)).await? {
        Outcome::Sent(response) => {
            if !response.duplicate {
                // The Send moved the sender's watermarks to its seq: the other
                // members see that receipt like any other.
                receipts::own_message_sent(&ctx, &room, response.seq).await;
            }
            Ok(Reply::Send(response))
        }
        _ => Err(ChatError::Internal),
    }
}

pub(super) async fn edit(ctx: Ctx<'_>, r: v1::EditRequest) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let content = validate::content(r.content, &ctx.services.content)?;
    match ctx
        .write(
            room,
            RoomOp::Edit {
                target_seq: r.target_seq,
                content,
            },
        )
        .await?
    {
        Outcome::Edited { seq, edited_at_ms } => {
            Ok(Reply::Edit(v1::EditResponse { seq, edited_at_ms }))
        }
        _ => Err(ChatError::Internal),
    }
}

pub(super) async fn delete(ctx: Ctx<'_>, r: v1::DeleteRequest) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    match ctx
        .write(
            room,
            RoomOp::Delete {
                target_seq: r.target_seq,
            },
        )
        .await?
    {
        Outcome::Seq(seq) => Ok(Reply::Delete(v1::DeleteResponse { seq })),
        _ => Err(ChatError::Internal),
    }
}

pub(super) async fn react(ctx: Ctx<'_>, r: v1::ReactRequest) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    validate::emoji(&r.emoji)?;
    let op = RoomOp::React {
        target_seq: r.target_seq,
        emoji: r.emoji,
        add: r.add,
    };
    match ctx.write(room, op).await? {
        Outcome::Seq(seq) => Ok(Reply::React(v1::ReactResponse { seq })),
        _ => Err(ChatError::Internal),
    }
}
