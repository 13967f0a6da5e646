//! Search (docs/protocol.md §24): words in the current text of the messages the caller may
//! read now. The readable rooms (membership, history visibility, retention) are computed at
//! query time and are part of the index query; each hit is read back from the store, so a
//! message deleted or dropped since it was indexed is never returned.

use std::sync::Arc;

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::reads::first_visible;
use super::{Ctx, room_id};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};
use crate::search::{Change, Cursor, ParsedQuery, Readable, SearchIndex, SearchQuery, snippet};

/// Longest query, in characters.
pub(super) const MAX_QUERY_CHARS: usize = 256;
/// Hits per page when the request asks for 0.
const DEFAULT_LIMIT: usize = 20;
/// Rooms read per store call when listing the caller's rooms.
const ROOM_PAGE: usize = 1000;

pub(super) async fn search(ctx: Ctx<'_>, r: v1::SearchRequest) -> Result<Reply, ChatError> {
    let Some(index) = ctx.services.search.clone() else {
        return Err(ChatError::Unsupported(
            "search is not offered by this server",
        ));
    };
    // a room filter the caller cannot read is NOT_FOUND before anything else.
    let rooms = match r.room_id.as_str() {
        "" => None,
        raw => Some(readable_room(&ctx, &room_id(raw)?).await?),
    };
    let query = r.query.trim();
    if query.is_empty() {
        return Err(ChatError::invalid("query", "empty"));
    }
    if r.query.chars().count() > MAX_QUERY_CHARS {
        return Err(ChatError::invalid(
            "query",
            format!("longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    let words = ParsedQuery::parse(query)
        .ok_or_else(|| ChatError::invalid("query", "no word to search for"))?;
    let sender = match r.sender.as_str() {
        "" => None,
        raw => Some(crate::chat::validate::user_id("sender", raw)?.to_string()),
    };
    if r.after_ms < 0 {
        return Err(ChatError::invalid("after_ms", "negative"));
    }
    if r.before_ms < 0 {
        return Err(ChatError::invalid("before_ms", "negative"));
    }
    if r.after_ms > 0 && r.before_ms > 0 && r.after_ms >= r.before_ms {
        return Err(ChatError::invalid("before_ms", "not after after_ms"));
    }
    let cursor = match r.cursor.as_str() {
        "" => None,
        raw => Some(
            Cursor::decode(raw)
                .ok_or_else(|| ChatError::invalid("cursor", "not a cursor from this server"))?,
        ),
    };
    ctx.services
        .rate_limit("search", ctx.user, ctx.services.rates.search)
        .await?;
    let rooms = match rooms {
        Some(room) => vec![room],
        None => readable_rooms(&ctx).await?,
    };
    let limit = ctx.services.page_limit(r.limit, DEFAULT_LIMIT);
    let query = SearchQuery {
        words,
        rooms,
        sender,
        after_ms: (r.after_ms > 0).then_some(r.after_ms),
        before_ms: (r.before_ms > 0).then_some(r.before_ms),
        cursor,
        limit: limit + 1,
    };
    let (found, query) = run(&index, query).await?;
    let more = found.len() > limit;
    let mut hits = Vec::with_capacity(limit);
    let mut gone = Vec::new();
    let mut last = None;
    for hit in found.into_iter().take(limit) {
        last = Some(hit.cursor);
        let room = RoomId::parse(&hit.room_id).map_err(|_| ChatError::Internal)?;
        match ctx.services.store.message(&room, hit.seq).await? {
            Some(mut message) if !message.deleted => {
                let text = message.content.as_ref().map_or("", |c| c.text.as_str());
                let (snippet, highlights) = snippet(&query.words, text);
                super::reads::present_reactions(&mut message, ctx.user.as_str());
                hits.push(v1::SearchHit {
                    room_id: hit.room_id,
                    seq: hit.seq,
                    snippet,
                    highlights: highlights
                        .into_iter()
                        .map(|(start, end)| v1::TextRange { start, end })
                        .collect(),
                    message: Some(message),
                });
            }
            // Deleted or dropped since it was indexed: never returned, and removed.
            _ => gone.push(Change::Remove {
                room_id: hit.room_id,
                seq: hit.seq,
            }),
        }
    }
    if !gone.is_empty() {
        tokio::spawn(async move {
            if let Err(reason) = crate::search::consumer::apply(&index, gone).await {
                tracing::debug!(%reason, "search: removing gone messages failed");
            }
        });
    }
    Ok(Reply::Search(v1::SearchResponse {
        hits,
        next_cursor: match (more, last) {
            (true, Some(cursor)) => cursor.encode(),
            _ => String::new(),
        },
    }))
}

async fn run(
    index: &Arc<SearchIndex>,
    query: SearchQuery,
) -> Result<(Vec<crate::search::Found>, SearchQuery), ChatError> {
    let index = Arc::clone(index);
    tokio::task::spawn_blocking(move || index.search(&query).map(|found| (found, query)))
        .await
        .map_err(|_| ChatError::Internal)?
        .map_err(|err| {
            tracing::error!(error = %err, "search failed");
            ChatError::Unavailable("the search index cannot answer".into())
        })
}

/// The caller's first readable seq in `room` (R-6.5.1 as History computes it); NotFound when
/// the caller is not a member or the room does not exist.
async fn readable_room(ctx: &Ctx<'_>, room: &RoomId) -> Result<Readable, ChatError> {
    let member = ctx.member(room).await?;
    readable(ctx, room, member.joined_seq).await
}

async fn readable(ctx: &Ctx<'_>, room: &RoomId, joined_seq: u64) -> Result<Readable, ChatError> {
    let store = &ctx.services.store;
    let settings = store.room(room).await?.ok_or(ChatError::NotFound)?;
    let retained_from = store.retained_from(room).await?;
    Ok(Readable {
        room_id: room.to_string(),
        min_seq: first_visible(&settings, joined_seq).max(retained_from),
    })
}

/// Every room the caller is a member of now, with its first readable seq.
async fn readable_rooms(ctx: &Ctx<'_>) -> Result<Vec<Readable>, ChatError> {
    let store = &ctx.services.store;
    let user: &UserId = ctx.user;
    let mut rooms = Vec::new();
    let mut after: Option<RoomId> = None;
    loop {
        let page = store.user_rooms(user, after.as_ref(), ROOM_PAGE).await?;
        let full = page.len() >= ROOM_PAGE;
        for state in &page {
            match readable(ctx, &state.room_id, state.joined_seq).await {
                Ok(room) => rooms.push(room),
                Err(ChatError::NotFound) => {}
                Err(err) => return Err(err),
            }
        }
        match page.last() {
            Some(last) if full => after = Some(last.room_id.clone()),
            _ => break,
        }
    }
    Ok(rooms)
}
