//! Message search (section 24), offered under the capability `search`. Without it only SE-01
//! runs (Search is UNSUPPORTED); the other cases skip with that reason.
//!
//! The index follows the log asynchronously, so a case that waits for a new
//! message to become findable repeats its search with a growing pause (at most 8 searches),
//! waiting `retry_after_ms` when the per-user search rate refuses one.

use std::time::Duration;

use chatwire_protocol::v1::{self, ErrorCode};

use super::case;
use crate::client::Client;
use crate::suite::check::{Check, Failure, ensure, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx};

/// Why the cases other than SE-01 do not run on a server without the capability.
const NO_SEARCH: &str = "the server does not offer `search`";

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "SE-01",
            "search",
            Must,
            ["R-24.1.1", "R-5.7.1"],
            ["Search"],
            None,
            false,
            "Search is answered exactly when `search` is listed, UNSUPPORTED otherwise",
            offered
        ),
        case!(
            "SE-02",
            "search",
            Must,
            ["R-24.2.1", "R-24.2.4", "R-24.3.3", "R-24.4.1"],
            ["Search", "Send"],
            None,
            false,
            "a word finds the message with room, seq, current state and a highlighted snippet",
            finds
        ),
        case!(
            "SE-03",
            "search",
            Must,
            ["R-24.2.2", "R-24.2.3"],
            ["Search", "RemoveMember", "History"],
            None,
            false,
            "only rooms the caller reads now; an unreadable room filter is NOT_FOUND as R-6.4.2",
            authorized
        ),
        case!(
            "SE-04",
            "search",
            Must,
            ["R-24.2.1", "R-24.2.5", "R-24.3.2"],
            ["Search"],
            None,
            false,
            "an empty or too long query, an unknown cursor, an inverted time range: INVALID_ARGUMENT with field",
            bad_input
        ),
        case!(
            "SE-05",
            "search",
            Must,
            ["R-24.2.4"],
            ["Search", "Edit", "Delete"],
            None,
            false,
            "edits are found by their current text; deleted messages never",
            current_state
        ),
    ]
}

fn query(text: &str) -> v1::SearchRequest {
    v1::SearchRequest {
        query: text.to_owned(),
        ..Default::default()
    }
}

/// A session for `user` on a server that offers search, or a skip.
async fn searcher(ctx: &Ctx, user: &str) -> Check<Client> {
    let (client, connected) = ctx.session(&ctx.user(user)).await?;
    if connected.capabilities.iter().any(|c| c == "search") {
        Ok(client)
    } else {
        Err(Failure::Skip(NO_SEARCH.to_owned()))
    }
}

/// Searches until `done` holds (the index catching up), with pauses of 50 ms doubling.
async fn search_until(
    client: &Client,
    request: v1::SearchRequest,
    what: &str,
    done: impl Fn(&v1::SearchResponse) -> bool,
) -> Check<v1::SearchResponse> {
    let mut pause = Duration::from_millis(50);
    let mut last = None;
    for _ in 0..8 {
        let response = match within("SearchResponse", client.search(request.clone())).await? {
            Ok(response) => response,
            // The per-user search rate: wait as told, then search again.
            Err(crate::client::ClientError::Server(err))
                if err.code() == ErrorCode::RateLimited =>
            {
                let wait = u64::from(err.retry_after_ms).clamp(50, 5_000);
                tokio::time::sleep(Duration::from_millis(wait)).await;
                continue;
            }
            Err(err) => return Err(err.into()),
        };
        if done(&response) {
            return Ok(response);
        }
        last = Some(response);
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    Err(Failure::new(what.to_owned(), format!("{last:?}")))
}

fn text_of(hit: &v1::SearchHit) -> String {
    hit.message
        .as_ref()
        .and_then(|m| m.content.as_ref())
        .map(|c| c.text.clone())
        .unwrap_or_default()
}

async fn offered(ctx: Ctx) -> Check {
    let (client, connected) = ctx.session(&ctx.user("alice")).await?;
    let result = within("the reply", client.search(query("hello"))).await?;
    if connected.capabilities.iter().any(|c| c == "search") {
        ensure(result.is_ok(), "Search answered (R-24.1.1)", &result)
    } else {
        ensure_error(result, ErrorCode::Unsupported, None)
    }
}

async fn finds(ctx: Ctx) -> Check {
    let a = searcher(&ctx, "alice").await?;
    let room = super::group(&a, &[]).await?;
    let word = format!("zebra{}", ctx.user("w").replace(['-', '_', '.'], ""));
    let body = format!("the {word} crossed the road");
    let sent = super::send(&a, &room, "se-1", &body).await?;
    let found = search_until(
        &a,
        query(&word.to_uppercase()),
        "the new message is found case-insensitively (R-24.4.1)",
        |r| !r.hits.is_empty(),
    )
    .await?;
    ensure_eq("hits", 1, found.hits.len())?;
    let hit = &found.hits[0];
    ensure_eq(
        "hit (room, seq)",
        (room.clone(), sent.seq),
        (hit.room_id.clone(), hit.seq),
    )?;
    ensure_eq("hit message text", body.clone(), text_of(hit))?;
    let message = hit.message.clone().unwrap_or_default();
    ensure_eq("hit message seq", sent.seq, message.seq)?;
    let points: Vec<char> = hit.snippet.chars().collect();
    let marked: Vec<String> = hit
        .highlights
        .iter()
        .filter(|r| r.start < r.end && (r.end as usize) <= points.len())
        .map(|r| points[r.start as usize..r.end as usize].iter().collect())
        .collect();
    ensure_eq(
        "highlighted words (code points, R-24.3.3)",
        vec![word],
        marked,
    )?;
    ensure(
        found.next_cursor.is_empty(),
        "no next_cursor on the last page",
        &found.next_cursor,
    )
}

async fn authorized(ctx: Ctx) -> Check {
    let a = searcher(&ctx, "alice").await?;
    let bob = ctx.user("bob");
    let b = ctx.client(&bob).await?;
    let c = ctx.client(&ctx.user("carol")).await?;
    let room = super::group(&a, &[&bob]).await?;
    let word = format!("okapi{}", ctx.user("w").replace(['-', '_', '.'], ""));
    super::send(&a, &room, "se-3", &format!("{word} sighting")).await?;
    search_until(&b, query(&word), "a member finds it", |r| r.hits.len() == 1).await?;
    let outside = within("SearchResponse", c.search(query(&word))).await??;
    ensure(
        outside.hits.is_empty(),
        "a non-member finds nothing",
        &outside,
    )?;
    let filtered = within(
        "the reply",
        c.search(v1::SearchRequest {
            room_id: room.clone(),
            ..query(&word)
        }),
    )
    .await?;
    let history = within(
        "the reply",
        c.history(v1::HistoryRequest {
            room_id: room.clone(),
            ..Default::default()
        }),
    )
    .await?;
    match (filtered, history) {
        (
            Err(crate::client::ClientError::Server(s)),
            Err(crate::client::ClientError::Server(h)),
        ) => {
            ensure_eq("room filter error code", ErrorCode::NotFound, s.code())?;
            ensure_eq(
                "room filter (message, field) as History's (R-24.2.2)",
                (h.message, h.field),
                (s.message, s.field),
            )?;
        }
        other => {
            return Err(Failure::new(
                "NOT_FOUND for Search and History of a room the caller is not in",
                format!("{other:?}"),
            ));
        }
    }
    within(
        "RemoveMemberResponse",
        a.remove_member(v1::RemoveMemberRequest {
            room_id: room,
            user_id: bob,
        }),
    )
    .await??;
    let after = within("SearchResponse", b.search(query(&word))).await??;
    ensure(
        after.hits.is_empty(),
        "a removed member finds nothing at once (R-24.2.3)",
        &after,
    )
}

async fn bad_input(ctx: Ctx) -> Check {
    let a = searcher(&ctx, "alice").await?;
    let cases = [
        (query(""), "query"),
        (query(&"a ".repeat(129)), "query"),
        (
            v1::SearchRequest {
                cursor: "not a cursor".into(),
                ..query("hello")
            },
            "cursor",
        ),
        (
            v1::SearchRequest {
                after_ms: 2_000,
                before_ms: 1_000,
                ..query("hello")
            },
            "before_ms",
        ),
    ];
    for (request, field) in cases {
        let result = within("the reply", a.search(request)).await?;
        ensure_error(result, ErrorCode::InvalidArgument, Some(field))?;
    }
    Ok(())
}

async fn current_state(ctx: Ctx) -> Check {
    let a = searcher(&ctx, "alice").await?;
    let room = super::group(&a, &[]).await?;
    let tag = ctx.user("w").replace(['-', '_', '.'], "");
    let old = format!("walrus{tag}");
    let new = format!("narwhal{tag}");
    let gone = format!("dugong{tag}");
    let edited = super::send(&a, &room, "se-5a", &format!("a {old} here")).await?;
    let deleted = super::send(&a, &room, "se-5b", &format!("a {gone} here")).await?;
    search_until(&a, query(&old), "the message is found", |r| {
        r.hits.len() == 1
    })
    .await?;
    search_until(&a, query(&gone), "the message is found", |r| {
        r.hits.len() == 1
    })
    .await?;
    within(
        "EditResponse",
        a.edit(v1::EditRequest {
            room_id: room.clone(),
            target_seq: edited.seq,
            content: super::text(&format!("a {new} here")),
        }),
    )
    .await??;
    within(
        "DeleteResponse",
        a.delete(v1::DeleteRequest {
            room_id: room.clone(),
            target_seq: deleted.seq,
            ..Default::default()
        }),
    )
    .await??;
    let deleted_hits = within("SearchResponse", a.search(query(&gone))).await??;
    ensure(
        deleted_hits.hits.is_empty(),
        "a deleted message is never returned, even before the index catches up",
        &deleted_hits,
    )?;
    let found = search_until(&a, query(&new), "the edit is found by its new text", |r| {
        r.hits.len() == 1
    })
    .await?;
    ensure_eq("hit text", format!("a {new} here"), text_of(&found.hits[0]))?;
    // A stale hit (old text) must not show old content: any hit carries the current text.
    let old_hits = within("SearchResponse", a.search(query(&old))).await??;
    ensure(
        old_hits
            .hits
            .iter()
            .all(|h| text_of(h) == format!("a {new} here")),
        "hits carry the current text",
        &old_hits,
    )
}
