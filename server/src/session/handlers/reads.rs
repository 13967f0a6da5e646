//! History, Subscribe, Unsubscribe and Sync: reads of the durable log and state.

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, room_id};
use crate::backend::store::{HistoryAnchor, HistoryQuery};
use crate::chat::error::ChatError;
use crate::chat::ids::RoomId;
use crate::session::core::SessionCore;

/// Room events and messages leave this much room in a server frame for the envelope.
const FRAME_OVERHEAD: usize = 1024;

/// The lowest seq a member who joined at `joined_seq` may read, by the visibility setting.
pub(super) fn first_visible(room: &v1::Room, joined_seq: u64) -> u64 {
    match room.history_visibility() {
        v1::HistoryVisibility::Full => 1,
        _ => joined_seq.max(1),
    }
}

/// The caller's first visible seq: the visibility setting's, raised to the lowest
/// seq retention kept ("If retention removed older events, it is the larger of that and the
/// lowest retained seq"). NotFound for a room the caller is not in.
async fn readable(ctx: &Ctx<'_>, room: &RoomId) -> Result<u64, ChatError> {
    let member = ctx.member(room).await?;
    let store = &ctx.services.store;
    let settings = store.room(room).await?.ok_or(ChatError::NotFound)?;
    let retained_from = store.retained_from(room).await?;
    Ok(first_visible(&settings, member.joined_seq).max(retained_from))
}

fn max_bytes(ctx: &Ctx<'_>) -> usize {
    (ctx.services.limits.max_server_frame_bytes as usize)
        .saturating_sub(FRAME_OVERHEAD)
        .max(1)
}

pub(super) async fn history(ctx: Ctx<'_>, r: v1::HistoryRequest) -> Result<Reply, ChatError> {
    use v1::history_request::Position;
    let room = room_id(&r.room_id)?;
    let min_seq = readable(&ctx, &room).await?;
    let anchor = match r.position {
        // No seq is 0, so "below 0" would always be empty: an explicit 0 means "no upper
        // bound", the newest page, like no position at all (R-9.1.1).
        None | Some(Position::BeforeSeq(0)) => HistoryAnchor::Latest,
        Some(Position::BeforeSeq(seq)) => HistoryAnchor::Before(seq),
        Some(Position::AfterSeq(seq)) => HistoryAnchor::After(seq),
    };
    let query = HistoryQuery {
        anchor,
        min_seq,
        limit: ctx.services.page_limit(r.limit, 50),
        max_bytes: max_bytes(&ctx),
        thread_root_seq: r.thread_root_seq,
    };
    let mut page = ctx.services.store.read_messages(&room, query).await?;
    for message in &mut page.messages {
        present_reactions(message, ctx.user.as_str());
    }
    Ok(Reply::History(v1::HistoryResponse {
        messages: page.messages,
        has_more: page.has_more,
        first_visible_seq: min_seq,
        room_id: room.to_string(),
    }))
}

/// Reactions as a reader sees them: at most 10 user ids, `me` set for the reader.
fn present_reactions(message: &mut v1::Message, reader: &str) {
    for reaction in &mut message.reactions {
        reaction.me = reaction.user_ids.iter().any(|u| u == reader);
        reaction.user_ids.truncate(10);
    }
}

/// One replay page; when it reaches the head, the room goes live from its last seq. Live
/// events that arrive meanwhile wait in the session's delivery queue and pass the cursor check
/// afterwards, so nothing is lost or delivered twice.
pub(super) async fn subscribe(
    ctx: Ctx<'_>,
    core: &mut SessionCore,
    r: v1::SubscribeRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let first_visible_seq = readable(&ctx, &room).await?;
    let store = &ctx.services.store;
    let head = store.head(&room).await?.map_or(0, |h| h.seq);
    if r.after_seq > head {
        return Err(ChatError::invalid("after_seq", "beyond the room's head"));
    }
    let after = r.after_seq.max(first_visible_seq.saturating_sub(1));
    let limit = ctx.services.page_limit(r.limit, 100);
    core.stop_live(&room);
    let events = if after < head {
        store
            .read_events(&room, after, limit, max_bytes(&ctx))
            .await?
    } else {
        Vec::new()
    };
    let last = events.last().map_or(after, |e| e.seq);
    let complete = last >= head;
    if complete {
        core.start_live(room.clone(), last);
    }
    Ok(Reply::Subscribe(v1::SubscribeResponse {
        room_id: room.to_string(),
        events,
        head_seq: head,
        complete,
        first_visible_seq,
    }))
}

pub(super) async fn unsubscribe(
    ctx: Ctx<'_>,
    core: &mut SessionCore,
    r: v1::UnsubscribeRequest,
) -> Result<Reply, ChatError> {
    let room = room_id(&r.room_id)?;
    let last = core.stop_live(&room);
    if last.is_none() {
        // Not subscribed: still answer NotFound for rooms the caller is not in.
        ctx.member(&room).await?;
    }
    Ok(Reply::Unsubscribe(v1::UnsubscribeResponse {
        last_seq: last.unwrap_or(0),
    }))
}

pub(super) async fn sync(ctx: Ctx<'_>, r: v1::SyncRequest) -> Result<Reply, ChatError> {
    let store = &ctx.services.store;
    let after = match r.cursor.as_str() {
        "" => None,
        raw => Some(
            RoomId::parse(raw)
                .map_err(|_| ChatError::invalid("cursor", "not a cursor from this server"))?,
        ),
    };
    let limit = ctx.services.page_limit(r.limit, 100);
    let mut rooms = store
        .user_rooms(ctx.user, after.as_ref(), limit + 1)
        .await?;
    let caught_up = rooms.len() <= limit;
    rooms.truncate(limit);
    let next_cursor = if caught_up {
        String::new()
    } else {
        rooms
            .last()
            .map(|r| r.room_id.to_string())
            .unwrap_or_default()
    };
    let mut summaries = Vec::with_capacity(rooms.len());
    for state in rooms {
        summaries.push(super::receipts::summary(&ctx, state).await?);
    }
    Ok(Reply::Sync(v1::SyncResponse {
        rooms: summaries,
        next_cursor,
        caught_up,
    }))
}
