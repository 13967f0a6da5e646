//! Messages: send, idempotency by client_msg_id, content checks, edit, delete, react, and
//! contiguous seqs under concurrent senders.

use chatwire_protocol::v1::{self, ErrorCode, room_event};

use super::case;
use crate::suite::check::{Check, Failure, ensure, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "MS-01",
            "messages",
            Must,
            ["R-8.1.1", "R-8.1.3", "R-10.3.3", "R-7.2.1"],
            ["Send", "Subscribe"],
            None,
            false,
            "Send returns seq, ordinal, time; one MessageCreated with the client_msg_id",
            send_message
        ),
        case!(
            "MS-02",
            "messages",
            Must,
            ["R-8.2.2", "R-8.2.3", "R-8.2.4"],
            ["Send"],
            None,
            false,
            "a repeated client_msg_id returns the original (duplicate), other content CONFLICT",
            idempotent_send
        ),
        case!(
            "MS-03",
            "messages",
            Must,
            ["R-8.2.1", "R-8.3.1", "R-8.3.2", "R-5.6.3"],
            ["Send"],
            None,
            false,
            "bad client_msg_id, empty content and too-long text are refused naming the field",
            content_checks
        ),
        case!(
            "MS-04",
            "messages",
            Must,
            ["R-8.5.1", "R-8.5.3", "R-8.5.4"],
            ["Edit"],
            None,
            false,
            "Edit: others denied, a change emits MessageEdited, the same content returns seq 0",
            edit
        ),
        case!(
            "MS-05",
            "messages",
            Must,
            ["R-8.6.1", "R-8.6.2", "R-8.6.3"],
            ["Delete", "History"],
            None,
            false,
            "Delete: a tombstone in History, a repeat returns seq 0",
            delete
        ),
        case!(
            "MS-06",
            "messages",
            Must,
            ["R-8.7.1", "R-8.7.2"],
            ["React"],
            None,
            false,
            "React: bad emoji refused, a repeat returns seq 0",
            react
        ),
        case!(
            "MS-07",
            "messages",
            Must,
            ["R-10.3.1", "R-5.3.1", "R-7.1.1", "R-5.3.3"],
            ["Send", "Subscribe"],
            None,
            false,
            "three concurrent senders: every subscriber sees contiguous seqs, each once",
            concurrent_senders
        ),
        case!(
            "MS-08",
            "messages",
            Must,
            ["R-8.4.1", "R-8.4.2", "R-9.1.5", "R-9.1.6"],
            ["Send", "History", "React", "Delete"],
            None,
            false,
            "replies and threads: bad targets refused, no nesting, thread pages, reply counts and reactions",
            threads
        ),
        case!(
            "MS-09",
            "messages",
            Must,
            ["R-8.5.2", "R-8.7.3"],
            ["Edit", "React"],
            None,
            false,
            "Edit content passes the Send checks; a 51st distinct emoji is TOO_LARGE",
            edit_and_emoji_limits
        ),
        case!(
            "MS-10",
            "messages",
            Must,
            ["R-7.1.3", "R-7.2.2", "R-7.3.1", "R-7.3.2"],
            ["Send", "Delete", "Typing", "MarkRead", "Subscribe"],
            None,
            false,
            "the replayed log matches the live events, ts_ms never decreases, only log kinds take seqs",
            log_stable
        ),
    ]
}

async fn send_message(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let (_, page) = super::subscribe_all(&a, &room, 0).await?;
    let sent = super::send(&a, &room, "cm-1", "hello").await?;
    ensure_eq("seq", page.head_seq + 1, sent.seq)?;
    ensure(
        !sent.duplicate && sent.ordinal == 1 && sent.created_at_ms > 0,
        "ordinal 1, created_at_ms set, not a duplicate",
        sent,
    )?;
    let events = super::room_events(&a, &room, 1).await?;
    let event = &events[0];
    ensure_eq("event seq", sent.seq, event.seq)?;
    ensure_eq("event ts_ms", sent.created_at_ms, event.ts_ms)?;
    match &event.kind {
        Some(room_event::Kind::MessageCreated(created)) => {
            ensure_eq("client_msg_id", "cm-1", created.client_msg_id.as_str())
        }
        other => Err(Failure::new("MessageCreated", format!("{other:?}"))),
    }
}

async fn idempotent_send(ctx: Ctx) -> Check {
    let alice = ctx.user("alice");
    let a = ctx.client(&alice).await?;
    let a2 = ctx.client(&alice).await?;
    let room = super::group(&a, &[]).await?;
    let first = super::send(&a, &room, "dup-1", "once").await?;
    // The same user on another session: the window is per user, not per session.
    let again = super::send(&a2, &room, "dup-1", "once").await?;
    ensure(again.duplicate, "duplicate true", again)?;
    ensure_eq(
        "(seq, ordinal, created_at_ms)",
        (first.seq, first.ordinal, first.created_at_ms),
        (again.seq, again.ordinal, again.created_at_ms),
    )?;
    let other = within(
        "the reply",
        a.send(super::send_req(&room, "dup-1", "different")),
    )
    .await?;
    ensure_error(other, ErrorCode::Conflict, None)?;
    let next = super::send(&a, &room, "dup-2", "next").await?;
    ensure_eq("seq after the duplicates", first.seq + 1, next.seq)
}

async fn content_checks(ctx: Ctx) -> Check {
    let (a, response) = ctx.session(&ctx.user("alice")).await?;
    let limits = response.limits.unwrap_or_default();
    let room = super::group(&a, &[]).await?;
    for bad in ["", "has space", &"x".repeat(65)] {
        let result = within("the reply", a.send(super::send_req(&room, bad, "hi"))).await?;
        ensure_error(result, ErrorCode::InvalidArgument, Some("client_msg_id"))?;
    }
    let empty = v1::SendRequest {
        room_id: room.clone(),
        client_msg_id: "e-1".into(),
        content: Some(v1::Content::default()),
        ..Default::default()
    };
    ensure_error(
        within("the reply", a.send(empty)).await?,
        ErrorCode::InvalidArgument,
        Some("content"),
    )?;
    let long = "a".repeat(limits.max_text_chars as usize + 1);
    let result = within("the reply", a.send(super::send_req(&room, "l-1", &long))).await?;
    ensure_error(result, ErrorCode::TooLarge, Some("content.text"))
}

async fn edit(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    let sent = super::send(&a, &room, "e-1", "first").await?;
    let edit = |text: &str| v1::EditRequest {
        room_id: room.clone(),
        target_seq: sent.seq,
        content: super::text(text),
    };
    ensure_error(
        within("the reply", b.edit(edit("bob's"))).await?,
        ErrorCode::PermissionDenied,
        None,
    )?;
    let (_, page) = super::subscribe_all(&a, &room, sent.seq).await?;
    let edited = within("EditResponse", a.edit(edit("second"))).await??;
    ensure_eq("edit seq", page.head_seq + 1, edited.seq)?;
    let events = super::room_events(&a, &room, 1).await?;
    ensure(
        matches!(events[0].kind, Some(room_event::Kind::MessageEdited(_))),
        "a MessageEdited event",
        &events[0],
    )?;
    ensure_eq("edited_at_ms", events[0].ts_ms, edited.edited_at_ms)?;
    let same = within("EditResponse", a.edit(edit("second"))).await??;
    ensure_eq(
        "(seq, edited_at_ms) of an edit to the current content",
        (0, edited.edited_at_ms),
        (same.seq, same.edited_at_ms),
    )?;
    let missing = within(
        "the reply",
        a.edit(v1::EditRequest {
            target_seq: 1,
            ..edit("x")
        }),
    )
    .await?;
    ensure_error(missing, ErrorCode::NotFound, Some("target_seq"))
}

async fn delete(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let sent = super::send(&a, &room, "d-1", "secret").await?;
    let del = v1::DeleteRequest {
        reason: String::new(),
        room_id: room.clone(),
        target_seq: sent.seq,
    };
    let first = within("DeleteResponse", a.delete(del.clone())).await??;
    ensure(first.seq > sent.seq, "a MessageDeleted seq", first.seq)?;
    let again = within("DeleteResponse", a.delete(del)).await??;
    ensure_eq("seq of a repeated delete", 0, again.seq)?;
    let history = within(
        "HistoryResponse",
        a.history(v1::HistoryRequest {
            room_id: room,
            ..Default::default()
        }),
    )
    .await??;
    let message = history
        .messages
        .iter()
        .find(|m| m.seq == sent.seq)
        .ok_or_else(|| Failure::new("the tombstone in History", "missing"))?;
    let empty = message.content.as_ref().is_none_or(|c| c.text.is_empty());
    ensure(
        message.deleted && empty && message.client_msg_id == "d-1",
        "deleted, empty content, client_msg_id kept",
        message,
    )
}

async fn react(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let sent = super::send(&a, &room, "r-1", "react to me").await?;
    let req = |emoji: &str, add: bool| v1::ReactRequest {
        room_id: room.clone(),
        target_seq: sent.seq,
        emoji: emoji.into(),
        add,
    };
    ensure_error(
        within("the reply", a.react(req("a b", true))).await?,
        ErrorCode::InvalidArgument,
        Some("emoji"),
    )?;
    let added = within("ReactResponse", a.react(req("👍", true))).await??;
    ensure(added.seq > sent.seq, "a ReactionChanged seq", added.seq)?;
    let again = within("ReactResponse", a.react(req("👍", true))).await??;
    ensure_eq("seq of a repeated add", 0, again.seq)?;
    let removed = within("ReactResponse", a.react(req("👎", false))).await??;
    ensure_eq("seq of removing a reaction never added", 0, removed.seq)
}

async fn concurrent_senders(ctx: Ctx) -> Check {
    const EACH: usize = 15;
    let users: Vec<String> = (0..3).map(|_| ctx.user("sender")).collect();
    let owner = ctx.client(&users[0]).await?;
    let others: Vec<&str> = users[1..].iter().map(String::as_str).collect();
    let room = super::group(&owner, &others).await?;
    let watcher = ctx.client(&users[0]).await?;
    let (_, page) = super::subscribe_all(&watcher, &room, 0).await?;
    let mut clients = Vec::new();
    for user in &users {
        clients.push(ctx.client(user).await?);
    }
    let sends = clients.iter().enumerate().map(|(i, client)| {
        let room = room.clone();
        async move {
            for n in 0..EACH {
                super::send(client, &room, &format!("c{i}-{n}"), "x").await?;
            }
            Ok::<_, Failure>(())
        }
    });
    for result in futures_util::future::join_all(sends).await {
        result?;
    }
    let events = super::room_events(&watcher, &room, 3 * EACH).await?;
    super::contiguous(&events, page.head_seq + 1)?;
    super::barrier(&watcher).await?;
    let extra = watcher
        .try_next_event()
        .filter(|e| matches!(e.kind, Some(v1::event::Kind::Room(_))));
    ensure(extra.is_none(), "no event twice", extra)
}

async fn threads(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    let root = super::send(&a, &room, "t-root", "root").await?;
    let with = |id: &str, reply: u64, thread: u64| v1::SendRequest {
        reply_to_seq: reply,
        thread_root_seq: thread,
        ..super::send_req(&room, id, "x")
    };
    ensure_error(
        within("the reply", a.send(with("t-bad1", root.seq + 1000, 0))).await?,
        ErrorCode::NotFound,
        Some("reply_to_seq"),
    )?;
    // Seq 1 is RoomCreated: not a message.
    ensure_error(
        within("the reply", a.send(with("t-bad2", 1, 0))).await?,
        ErrorCode::NotFound,
        Some("reply_to_seq"),
    )?;
    ensure_error(
        within("the reply", a.send(with("t-bad3", 0, root.seq + 1000))).await?,
        ErrorCode::NotFound,
        None,
    )?;
    let t1 = within("SendResponse", a.send(with("t-1", 0, root.seq))).await??;
    let t2 = within("SendResponse", b.send(with("t-2", root.seq, root.seq))).await??;
    ensure_error(
        within("the reply", a.send(with("t-nest", 0, t1.seq))).await?,
        ErrorCode::InvalidArgument,
        Some("thread_root_seq"),
    )?;
    within(
        "DeleteResponse",
        b.delete(v1::DeleteRequest {
            reason: String::new(),
            room_id: room.clone(),
            target_seq: t2.seq,
        }),
    )
    .await??;
    // Replying to a deleted message is allowed.
    within("SendResponse", a.send(with("t-3", t2.seq, 0))).await??;
    for (client, emoji) in [(&a, "👍"), (&b, "👍"), (&a, "🎉")] {
        within(
            "ReactResponse",
            client.react(v1::ReactRequest {
                room_id: room.clone(),
                target_seq: root.seq,
                emoji: emoji.into(),
                add: true,
            }),
        )
        .await??;
    }
    let thread = within(
        "HistoryResponse",
        b.history(v1::HistoryRequest {
            room_id: room.clone(),
            thread_root_seq: root.seq,
            ..Default::default()
        }),
    )
    .await??;
    let seqs: Vec<u64> = thread.messages.iter().map(|m| m.seq).collect();
    ensure_eq(
        "thread page (newest first, root excluded)",
        vec![t2.seq, t1.seq],
        seqs,
    )?;
    ensure(
        thread.messages[0].deleted,
        "the deleted reply as a tombstone",
        &thread.messages[0],
    )?;
    let main = within(
        "HistoryResponse",
        b.history(v1::HistoryRequest {
            room_id: room.clone(),
            ..Default::default()
        }),
    )
    .await??;
    let root_msg = main
        .messages
        .iter()
        .find(|m| m.seq == root.seq)
        .ok_or_else(|| Failure::new("the root in History", "missing"))?;
    ensure_eq(
        "thread_reply_count (deleted included)",
        2,
        root_msg.thread_reply_count,
    )?;
    let reactions: Vec<(&str, u32, bool, usize)> = root_msg
        .reactions
        .iter()
        .map(|r| (r.emoji.as_str(), r.count, r.me, r.user_ids.len()))
        .collect();
    ensure_eq(
        "reactions for bob (emoji, count, me, user_ids)",
        vec![("👍", 2, true, 2), ("🎉", 1, false, 1)],
        reactions,
    )
}

async fn edit_and_emoji_limits(ctx: Ctx) -> Check {
    let (a, session) = ctx.session(&ctx.user("alice")).await?;
    let limits = session.limits.unwrap_or_default();
    let room = super::group(&a, &[]).await?;
    let sent = super::send(&a, &room, "el-1", "edit me").await?;
    let edit = |content: v1::Content| v1::EditRequest {
        room_id: room.clone(),
        target_seq: sent.seq,
        content: Some(content),
    };
    ensure_error(
        within("the reply", a.edit(edit(v1::Content::default()))).await?,
        ErrorCode::InvalidArgument,
        Some("content"),
    )?;
    let long = super::text(&"a".repeat(limits.max_text_chars as usize + 1)).unwrap_or_default();
    ensure_error(
        within("the reply", a.edit(edit(long))).await?,
        ErrorCode::TooLarge,
        Some("content.text"),
    )?;
    let react = |emoji: String| v1::ReactRequest {
        room_id: room.clone(),
        target_seq: sent.seq,
        emoji,
        add: true,
    };
    // 50 distinct emoji: the letters of the Regional Indicator block and a few more.
    let emoji: Vec<String> = (0x1F1E6u32..0x1F200)
        .chain(0x1F600..0x1F650)
        .filter_map(char::from_u32)
        .take(51)
        .map(String::from)
        .collect();
    // Reactions draw on the send bucket: wait out RATE_LIMITED as a client would.
    let a = &a;
    let paced = |request: v1::ReactRequest| async move {
        loop {
            match within("the reply", a.react(request.clone())).await? {
                Err(crate::client::ClientError::Server(e))
                    if e.code() == ErrorCode::RateLimited && e.retryable =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(e.retry_after_ms.into()))
                        .await;
                }
                other => return Ok::<_, Failure>(other),
            }
        }
    };
    for e in &emoji[..50] {
        paced(react(e.clone())).await??;
    }
    ensure_error(
        paced(react(emoji[50].clone())).await?,
        ErrorCode::TooLarge,
        Some("emoji"),
    )?;
    // An emoji the message already carries is not limited.
    let again = paced(react(emoji[0].clone())).await??;
    ensure_eq("seq of a repeated reaction", 0, again.seq)
}

async fn log_stable(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    let (_, page) = super::subscribe_all(&a, &room, 0).await?;
    let one = super::send(&a, &room, "ls-1", "one").await?;
    super::send(&b, &room, "ls-2", "two").await?;
    let deleted = within(
        "DeleteResponse",
        a.delete(v1::DeleteRequest {
            reason: String::new(),
            room_id: room.clone(),
            target_seq: one.seq,
        }),
    )
    .await??;
    let live = super::room_events(&a, &room, 3).await?;
    let head = deleted.seq;
    // Events that are not in the log take no seq.
    within(
        "TypingResponse",
        b.typing(v1::TypingRequest {
            room_id: room.clone(),
            active: true,
        }),
    )
    .await??;
    within(
        "MarkReadResponse",
        b.mark_read(v1::MarkReadRequest {
            room_id: room.clone(),
            seq: head,
        }),
    )
    .await??;
    let (replay, after) = super::subscribe_all(&b, &room, 0).await?;
    ensure_eq("head after Typing and MarkRead", head, after.head_seq)?;
    super::contiguous(&replay, 1)?;
    let ts: Vec<i64> = replay.iter().map(|e| e.ts_ms).collect();
    ensure(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "ts_ms non-decreasing along seq",
        &ts,
    )?;
    let kind = |e: &v1::RoomEvent| {
        format!("{:?}", e.kind)
            .split('(')
            .nth(1)
            .unwrap_or_default()
            .to_owned()
    };
    for event in &live {
        let stored = replay
            .iter()
            .find(|e| e.seq == event.seq)
            .ok_or_else(|| Failure::new(format!("seq {} in the replay", event.seq), "missing"))?;
        ensure_eq(
            "(seq, ts_ms, sender, kind) replayed as delivered",
            (event.seq, event.ts_ms, event.sender.as_str(), kind(event)),
            (
                stored.seq,
                stored.ts_ms,
                stored.sender.as_str(),
                kind(stored),
            ),
        )?;
    }
    ensure(
        page.head_seq < one.seq
            && matches!(
                replay.iter().find(|e| e.seq == deleted.seq).and_then(|e| e.kind.as_ref()),
                Some(room_event::Kind::MessageDeleted(d)) if d.target_seq == one.seq
            ),
        "a MessageDeleted event in the log for the redaction",
        replay.last(),
    )
}
