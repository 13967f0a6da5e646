//! A Search request end to end, as the session handler and the benchmark run it: checks
//! (R-24.2), the caller's readable rooms from the store (membership, history visibility,
//! retention), the index query, and each hit read back from the store in its current state.
//!
//! ```text
//!  validate (room filter NOT_FOUND first, then fields) ─▶ [rate limit: the caller's] ─▶ run:
//!  readable rooms ─▶ SearchIndex::search (limit + 1) ─▶ store.message per hit ─▶ snippet
//! ```

use std::sync::Arc;

use chatwire_protocol::v1;

use super::index::{Change, Cursor, Found, ParsedQuery, Readable, SearchIndex, SearchQuery};
use crate::backend::store::Store;
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 256;
/// Hits per page when the request asks for 0.
pub const DEFAULT_LIMIT: usize = 20;
/// Rooms read per store call when listing the caller's rooms.
const ROOM_PAGE: usize = 1000;

/// A checked request.
#[derive(Debug, Clone)]
pub struct Checked {
    /// The room filter, with the caller's first readable seq there.
    room: Option<Readable>,
    words: ParsedQuery,
    sender: Option<String>,
    after_ms: Option<i64>,
    before_ms: Option<i64>,
    cursor: Option<Cursor>,
    limit: u32,
}

/// The lowest seq a member who joined at `joined_seq` may read, by the visibility setting
/// (R-6.5.1, as History computes it).
fn first_visible(room: &v1::Room, joined_seq: u64) -> u64 {
    match room.history_visibility() {
        v1::HistoryVisibility::Full => 1,
        _ => joined_seq.max(1),
    }
}

/// Checks `r` for `user`: a room filter the caller cannot read is NOT_FOUND before anything
/// else (R-24.2.2), then each field (INVALID_ARGUMENT naming it).
pub async fn check(
    store: &dyn Store,
    user: &UserId,
    r: v1::SearchRequest,
) -> Result<Checked, ChatError> {
    let room = match r.room_id.as_str() {
        "" => None,
        raw => {
            let room = RoomId::parse(raw).map_err(|_| ChatError::NotFound)?;
            let member = store
                .member(&room, user)
                .await?
                .ok_or(ChatError::NotFound)?;
            Some(readable(store, &room, member.joined_seq).await?)
        }
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
    Ok(Checked {
        room,
        words,
        sender,
        after_ms: (r.after_ms > 0).then_some(r.after_ms),
        before_ms: (r.before_ms > 0).then_some(r.before_ms),
        cursor,
        limit: r.limit,
    })
}

/// Runs a checked search for `user`: at most `page` hits (the request's limit, 0 meaning
/// [`DEFAULT_LIMIT`], capped by the caller to `max_page_size`).
pub async fn run(
    store: &Arc<dyn Store>,
    index: &Arc<SearchIndex>,
    user: &UserId,
    checked: Checked,
    page: usize,
) -> Result<v1::SearchResponse, ChatError> {
    let rooms = match checked.room {
        Some(room) => vec![room],
        None => readable_rooms(store.as_ref(), user).await?,
    };
    let limit = page.max(1);
    let query = SearchQuery {
        words: checked.words,
        rooms,
        sender: checked.sender,
        after_ms: checked.after_ms,
        before_ms: checked.before_ms,
        cursor: checked.cursor,
        limit: limit + 1,
    };
    let (found, query) = query_index(index, query).await?;
    let more = found.len() > limit;
    let mut hits = Vec::with_capacity(limit);
    let mut gone = Vec::new();
    let mut last = None;
    let found: Vec<Found> = found.into_iter().take(limit).collect();
    // Each hit in its current state, read concurrently.
    let mut reads = Vec::with_capacity(found.len());
    for hit in &found {
        let room = RoomId::parse(&hit.room_id).map_err(|_| ChatError::Internal)?;
        reads.push(async move { store.message(&room, hit.seq).await });
    }
    let messages = futures_util::future::join_all(reads).await;
    for (hit, message) in found.into_iter().zip(messages) {
        last = Some(hit.cursor);
        match message? {
            Some(mut message) if !message.deleted => {
                let text = message.content.as_ref().map_or("", |c| c.text.as_str());
                let (snippet, highlights) = super::index::snippet(&query.words, text);
                present_reactions(&mut message, user.as_str());
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
        let index = Arc::clone(index);
        tokio::spawn(async move {
            if let Err(reason) = super::consumer::apply(&index, gone).await {
                tracing::debug!(%reason, "search: removing gone messages failed");
            }
        });
    }
    Ok(v1::SearchResponse {
        hits,
        next_cursor: match (more, last) {
            (true, Some(cursor)) => cursor.encode(),
            _ => String::new(),
        },
    })
}

impl Checked {
    /// The limit the request asked for (0: the default).
    pub fn asked_limit(&self) -> u32 {
        self.limit
    }
}

/// Reactions as a reader sees them (R-8.5, as History presents them): at most 10 user ids,
/// `me` set for the reader.
fn present_reactions(message: &mut v1::Message, reader: &str) {
    for reaction in &mut message.reactions {
        reaction.me = reaction.user_ids.iter().any(|u| u == reader);
        reaction.user_ids.truncate(10);
    }
}

async fn query_index(
    index: &Arc<SearchIndex>,
    query: SearchQuery,
) -> Result<(Vec<Found>, SearchQuery), ChatError> {
    let index = Arc::clone(index);
    tokio::task::spawn_blocking(move || index.search(&query).map(|found| (found, query)))
        .await
        .map_err(|_| ChatError::Internal)?
        .map_err(|err| {
            tracing::error!(error = %err, "search failed");
            ChatError::Unavailable("the search index cannot answer".into())
        })
}

async fn readable(
    store: &dyn Store,
    room: &RoomId,
    joined_seq: u64,
) -> Result<Readable, ChatError> {
    let settings = store.room(room).await?.ok_or(ChatError::NotFound)?;
    let retained_from = store.retained_from(room).await?;
    Ok(Readable {
        room_id: room.to_string(),
        min_seq: first_visible(&settings, joined_seq).max(retained_from),
    })
}

/// Every room `user` is a member of now, with its first readable seq.
pub async fn readable_rooms(store: &dyn Store, user: &UserId) -> Result<Vec<Readable>, ChatError> {
    let mut rooms = Vec::new();
    let mut after: Option<RoomId> = None;
    loop {
        let page = store.user_rooms(user, after.as_ref(), ROOM_PAGE).await?;
        let full = page.len() >= ROOM_PAGE;
        // The rooms' settings and retained seqs, read concurrently (each read is a store
        // round trip; one after the other they were most of a search's time).
        let reads = page
            .iter()
            .map(|state| readable(store, &state.room_id, state.joined_seq));
        for result in futures_util::future::join_all(reads).await {
            match result {
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
