//! Delivery and read watermarks, receipts, and room summaries built from them.

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, after_user, room_id};
use crate::backend::store::{HistoryAnchor, HistoryQuery, UserRoom};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

fn unread(last_ordinal: u64, read_ordinal: u64) -> u32 {
    u32::try_from(last_ordinal.saturating_sub(read_ordinal)).unwrap_or(u32::MAX)
}

/// A room summary for Sync.
pub(super) async fn summary(ctx: &Ctx<'_>, state: UserRoom) -> Result<v1::RoomSummary, ChatError> {
    let store = &ctx.services.store;
    let head = store.head(&state.room_id).await?.unwrap_or_default();
    let mut room = store.room(&state.room_id).await?;
    if let Some(room) = &mut room {
        room.last_seq = head.seq;
    }
    // The preview is a read of the history: only what History would show the caller
    // (history visibility from the join, retention).
    let visible_from = room
        .as_ref()
        .map_or(u64::MAX, |room| {
            super::reads::first_visible(room, state.joined_seq)
        })
        .max(store.retained_from(&state.room_id).await?);
    let latest = HistoryQuery {
        anchor: HistoryAnchor::Latest,
        min_seq: visible_from,
        limit: 1,
        max_bytes: usize::MAX,
        thread_root_seq: 0,
    };
    let last_message = store
        .read_messages(&state.room_id, latest)
        .await?
        .messages
        .into_iter()
        .next()
        .map(|m| preview(&m));
    Ok(v1::RoomSummary {
        room,
        role: state.role.into(),
        last_seq: head.seq,
        last_ordinal: head.ordinal,
        read_seq: state.read_seq,
        delivered_seq: state.delivered_seq,
        unread_count: unread(head.ordinal, state.read_ordinal),
        last_message,
        muted_until_ms: state.muted_until_ms,
    })
}

/// A message's preview: the first 140 characters of its text.
pub(crate) fn preview(message: &v1::Message) -> v1::MessagePreview {
    let content = message.content.as_ref();
    v1::MessagePreview {
        seq: message.seq,
        ordinal: message.ordinal,
        sender: message.sender.clone(),
        text: content
            .map(|c| c.text.chars().take(140).collect())
            .unwrap_or_default(),
        created_at_ms: message.created_at_ms,
        attachment_count: content.map_or(0, |c| {
            u32::try_from(c.attachments.len()).unwrap_or(u32::MAX)
        }),
        deleted: message.deleted,
    }
}

/// The watermark capped at the head, and the room's head.
async fn capped(ctx: &Ctx<'_>, room: &RoomId, seq: u64) -> Result<u64, ChatError> {
    let head = ctx
        .services
        .store
        .head(room)
        .await?
        .ok_or(ChatError::NotFound)?;
    Ok(seq.min(head.seq))
}

fn publish_receipt(ctx: &Ctx<'_>, room: &RoomId, state: &UserRoom, members: &[v1::Member]) {
    let receipt = v1::Receipt {
        user_id: ctx.user.to_string(),
        delivered_seq: state.delivered_seq,
        read_seq: state.read_seq,
    };
    let event = v1::Event {
        kind: Some(v1::event::Kind::ReceiptsChanged(v1::ReceiptsChanged {
            room_id: room.to_string(),
            receipts: vec![receipt],
        })),
    };
    for member in members {
        if let Ok(user) = UserId::parse(&member.user_id)
            && &user != ctx.user
        {
            ctx.services.fanout.publish_user(&user, event.clone(), None);
        }
    }
}

async fn advance(
    ctx: &Ctx<'_>,
    room: &RoomId,
    delivered: u64,
    read: Option<(u64, u64)>,
) -> Result<UserRoom, ChatError> {
    let store = &ctx.services.store;
    let before = store
        .user_room(ctx.user, room)
        .await?
        .ok_or(ChatError::NotFound)?;
    let after = store
        .advance_watermarks(ctx.user, room, delivered, read)
        .await?
        .ok_or(ChatError::NotFound)?;
    if after != before {
        // Receipts are best effort and live only: the members of a room see them move.
        let members = store.members(room, None, 1000).await?;
        publish_receipt(ctx, room, &after, &members);
    }
    Ok(after)
}

pub(super) async fn mark_delivered(
    ctx: Ctx<'_>,
    r: v1::MarkDeliveredRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    ctx.member(&room).await?;
    let seq = capped(&ctx, &room, r.seq).await?;
    let state = advance(&ctx, &room, seq, None).await?;
    Ok(Reply::MarkDelivered(v1::MarkDeliveredResponse {
        delivered_seq: state.delivered_seq,
    }))
}

pub(super) async fn mark_read(ctx: Ctx<'_>, r: v1::MarkReadRequest) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    ctx.member(&room).await?;
    let store = &ctx.services.store;
    let seq = capped(&ctx, &room, r.seq).await?;
    let ordinal = store.ordinal_at(&room, seq).await?;
    let state = advance(&ctx, &room, seq, Some((seq, ordinal))).await?;
    let head = store.head(&room).await?.unwrap_or_default();
    let unread_count = unread(head.ordinal, state.read_ordinal);
    let moved = v1::Event {
        kind: Some(v1::event::Kind::ReadPositionMoved(v1::ReadPositionMoved {
            room_id: room.to_string(),
            read_seq: state.read_seq,
            unread_count,
        })),
    };
    ctx.services
        .fanout
        .publish_user(ctx.user, moved, Some(ctx.session));
    Ok(Reply::MarkRead(v1::MarkReadResponse {
        read_seq: state.read_seq,
        unread_count,
    }))
}

pub(super) async fn get_receipts(
    ctx: Ctx<'_>,
    r: v1::GetReceiptsRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    ctx.member(&room).await?;
    let after = after_user(&r.after_user_id)?;
    let limit = ctx.services.page_limit(r.limit, 100);
    let store = &ctx.services.store;
    let mut members = store.members(&room, after.as_ref(), limit + 1).await?;
    let has_more = members.len() > limit;
    members.truncate(limit);
    let mut receipts = Vec::new();
    for member in members {
        let Ok(user) = UserId::parse(&member.user_id) else {
            continue;
        };
        if let Some(state) = store.user_room(&user, &room).await?
            && (state.read_seq > 0 || state.delivered_seq > 0)
        {
            receipts.push(v1::Receipt {
                user_id: member.user_id,
                delivered_seq: state.delivered_seq,
                read_seq: state.read_seq,
            });
        }
    }
    Ok(Reply::GetReceipts(v1::GetReceiptsResponse {
        receipts,
        has_more,
    }))
}
