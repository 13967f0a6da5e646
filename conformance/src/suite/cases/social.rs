//! Receipts, typing, presence across sessions, call signals.

use chatwire_protocol::v1::{self, ErrorCode, call_signal, event};

use super::case;
use crate::client::Client;
use crate::suite::check::{Check, ensure, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "RC-01",
            "receipts",
            Must,
            ["R-12.1.1", "R-12.1.2", "R-12.2.1", "R-12.2.4", "R-12.1.6"],
            ["MarkRead", "MarkDelivered", "GetReceipts"],
            None,
            false,
            "MarkRead moves read and delivered, never back; others see ReceiptsChanged",
            receipts
        ),
        case!(
            "TY-01",
            "typing",
            Must,
            ["R-13.1.2", "R-13.1.1"],
            ["Typing"],
            None,
            false,
            "Typing is relayed to another member as TypingChanged",
            typing
        ),
        case!(
            "PR-01",
            "presence",
            Must,
            ["R-14.1.1", "R-14.1.5", "R-14.1.3"],
            ["WatchPresence", "UnwatchPresence"],
            None,
            false,
            "a user is online while any session lives and offline after the last ends",
            presence
        ),
        case!(
            "CA-01",
            "calls",
            Must,
            ["R-15.1.2", "R-15.1.1"],
            ["CallSignal"],
            None,
            false,
            "a call signal reaches the target's sessions",
            call_signal
        ),
        case!(
            "RC-02",
            "receipts",
            Must,
            ["R-12.2.3", "R-12.3.1", "R-7.2.3"],
            ["MarkRead"],
            None,
            false,
            "unread counts are ordinal differences; the user's other sessions get ReadPositionMoved",
            read_position
        ),
        case!(
            "PR-02",
            "presence",
            Must,
            ["R-14.1.4", "R-14.1.6", "R-14.1.2"],
            ["WatchPresence", "BlockUser"],
            None,
            false,
            "an oversized watch set, in one request or across several, is TOO_LARGE; unknown and blocking users look offline; last_seen_ms",
            presence_rules
        ),
        case!(
            "PR-03",
            "presence",
            Must,
            ["R-14.1.3", "R-14.1.7"],
            ["WatchPresence", "UnwatchPresence"],
            None,
            false,
            "room watches: UNSUPPORTED (field room_id) without presence-room-watch, else NOT_FOUND for an unknown room",
            room_watch
        ),
        case!(
            "CA-02",
            "calls",
            Must,
            ["R-15.1.3"],
            ["CallSignal"],
            None,
            false,
            "a signal no session receives returns delivered_sessions 0, not an error",
            call_nobody
        ),
        case!(
            "RC-03",
            "receipts",
            Must,
            ["R-12.1.6", "R-12.2.1"],
            ["Send", "MarkRead"],
            None,
            false,
            "a member's reply moves its receipt: the other member sees ReceiptsChanged up to the reply",
            reply_receipt
        ),
    ]
}

async fn next_matching<T>(
    client: &Client,
    what: &str,
    mut pick: impl FnMut(event::Kind) -> Option<T>,
) -> Check<T> {
    loop {
        let event = within(what, client.next_event()).await??;
        if let Some(found) = event.kind.and_then(&mut pick) {
            return Ok(found);
        }
    }
}

async fn receipts(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    super::subscribe_all(&a, &room, 0).await?;
    let sent = super::send(&a, &room, "rc-1", "read me").await?;
    let read = within(
        "MarkReadResponse",
        b.mark_read(v1::MarkReadRequest {
            room_id: room.clone(),
            seq: sent.seq,
        }),
    )
    .await??;
    ensure_eq("read_seq", sent.seq, read.read_seq)?;
    let back = within(
        "MarkDeliveredResponse",
        b.mark_delivered(v1::MarkDeliveredRequest {
            room_id: room.clone(),
            seq: 1,
        }),
    )
    .await??;
    ensure(
        back.delivered_seq >= sent.seq,
        "delivered moved with read and never back",
        back.delivered_seq,
    )?;
    let receipt = next_matching(&a, "ReceiptsChanged for bob", |kind| match kind {
        event::Kind::ReceiptsChanged(changed) if changed.room_id == room => {
            changed.receipts.into_iter().find(|r| r.user_id == bob)
        }
        _ => None,
    })
    .await?;
    ensure_eq(
        "bob's read_seq in ReceiptsChanged",
        sent.seq,
        receipt.read_seq,
    )?;
    let all = within(
        "GetReceiptsResponse",
        a.get_receipts(v1::GetReceiptsRequest {
            room_id: room,
            ..Default::default()
        }),
    )
    .await??;
    let mine = all
        .receipts
        .iter()
        .find(|r| r.user_id == alice)
        .map(|r| r.read_seq);
    ensure_eq("the sender's read_seq after its Send", Some(sent.seq), mine)
}

async fn reply_receipt(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    super::subscribe_all(&a, &room, 0).await?;
    super::send(&a, &room, "rc3-q", "question").await?;
    let reply = super::send(&b, &room, "rc3-a", "answer").await?;
    // Bob's watermarks already stand at his reply: this MarkRead moves nothing.
    within(
        "MarkReadResponse",
        b.mark_read(v1::MarkReadRequest {
            room_id: room.clone(),
            seq: reply.seq,
        }),
    )
    .await??;
    let receipt = next_matching(
        &a,
        "ReceiptsChanged for bob after his reply",
        |kind| match kind {
            event::Kind::ReceiptsChanged(changed) if changed.room_id == room => {
                changed.receipts.into_iter().find(|r| r.user_id == bob)
            }
            _ => None,
        },
    )
    .await?;
    ensure_eq(
        "bob's read_seq after his reply",
        reply.seq,
        receipt.read_seq,
    )?;
    ensure_eq(
        "bob's delivered_seq after his reply",
        reply.seq,
        receipt.delivered_seq,
    )
}

async fn typing(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    super::subscribe_all(&b, &room, 0).await?;
    within(
        "TypingResponse",
        a.typing(v1::TypingRequest {
            room_id: room.clone(),
            active: true,
        }),
    )
    .await??;
    let changed = next_matching(&b, "TypingChanged", |kind| match kind {
        event::Kind::TypingChanged(t) if t.room_id == room => Some(t),
        _ => None,
    })
    .await?;
    ensure(
        changed.user_id == alice && changed.active,
        "TypingChanged { user: alice, active: true }",
        changed,
    )
}

async fn presence(ctx: Ctx) -> Check {
    let (watcher, target) = (ctx.user("watcher"), ctx.user("target"));
    let w = ctx.client(&watcher).await?;
    // Presence may be limited to users who share a room with the watcher.
    let room = super::group(&w, &[&target]).await?;
    let _ = room;
    let first = ctx.client(&target).await?;
    let second = ctx.client(&target).await?;
    let watched = within(
        "WatchPresenceResponse",
        w.watch_presence(v1::WatchPresenceRequest {
            user_ids: vec![target.clone()],
            room_id: String::new(),
        }),
    )
    .await??;
    let online = watched
        .presences
        .iter()
        .find(|p| p.user_id == target)
        .is_some_and(|p| p.online);
    ensure(online, "the target online with two sessions", &watched)?;
    first.close(4012, "conformance").await;
    super::barrier(&w).await?;
    let early_offline = std::iter::from_fn(|| w.try_next_event()).any(|e| matches!(e.kind, Some(event::Kind::Presence(ref p)) if p.user_id == target && !p.online));
    ensure(
        !early_offline,
        "still online while one session lives",
        "an offline Presence event",
    )?;
    second.close(4012, "conformance").await;
    next_matching(&w, "Presence offline", |kind| match kind {
        event::Kind::Presence(p) if p.user_id == target && !p.online => Some(p),
        _ => None,
    })
    .await?;
    within(
        "UnwatchPresenceResponse",
        w.unwatch_presence(v1::UnwatchPresenceRequest {
            user_ids: vec![target],
            room_id: String::new(),
        }),
    )
    .await??;
    Ok(())
}

async fn call_signal(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    let response = within(
        "CallSignalResponse",
        a.call_signal(v1::CallSignalRequest {
            call_id: "call-1".into(),
            room_id: room.clone(),
            target_user_id: bob,
            target_session_id: String::new(),
            signal: Some(v1::CallSignal {
                kind: Some(call_signal::Kind::Invite(v1::CallInvite { video: false })),
            }),
        }),
    )
    .await??;
    ensure(
        response.delivered_sessions >= 1,
        "delivered to at least bob's session",
        response.delivered_sessions,
    )?;
    let received = next_matching(&b, "CallSignalReceived", |kind| match kind {
        event::Kind::CallSignalReceived(s) => Some(s),
        _ => None,
    })
    .await?;
    ensure(
        received.call_id == "call-1" && received.room_id == room,
        "call_id and room_id relayed",
        received,
    )
}

async fn read_position(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let b1 = ctx.client(&bob).await?;
    let b2 = ctx.client(&bob).await?;
    let room = super::group(&a, &[&bob]).await?;
    let m1 = super::send(&a, &room, "rp-1", "one").await?;
    let m2 = super::send(&a, &room, "rp-2", "two").await?;
    // Log events between messages make seq and ordinal differ; a deleted message still counts.
    within(
        "ReactResponse",
        a.react(v1::ReactRequest {
            room_id: room.clone(),
            target_seq: m1.seq,
            emoji: "👍".into(),
            add: true,
        }),
    )
    .await??;
    within(
        "DeleteResponse",
        a.delete(v1::DeleteRequest {
            reason: String::new(),
            room_id: room.clone(),
            target_seq: m2.seq,
        }),
    )
    .await??;
    super::send(&a, &room, "rp-3", "three").await?;
    let read = within(
        "MarkReadResponse",
        b1.mark_read(v1::MarkReadRequest {
            room_id: room.clone(),
            seq: m1.seq,
        }),
    )
    .await??;
    ensure_eq(
        "(read_seq, unread_count)",
        (m1.seq, 2),
        (read.read_seq, read.unread_count),
    )?;
    let moved = next_matching(
        &b2,
        "ReadPositionMoved on bob's other session",
        |kind| match kind {
            event::Kind::ReadPositionMoved(m) if m.room_id == room => Some(m),
            _ => None,
        },
    )
    .await?;
    ensure_eq(
        "(read_seq, unread_count) in ReadPositionMoved",
        (m1.seq, 2),
        (moved.read_seq, moved.unread_count),
    )
}

async fn presence_rules(ctx: Ctx) -> Check {
    let (watcher, blocker, gone) = (ctx.user("watcher"), ctx.user("blocker"), ctx.user("gone"));
    let (w, session) = ctx.session(&watcher).await?;
    let max = session.limits.unwrap_or_default().max_presence_watch;
    let watch = |users: Vec<String>| {
        w.watch_presence(v1::WatchPresenceRequest {
            user_ids: users,
            room_id: String::new(),
        })
    };
    if max < 100_000 {
        let many: Vec<String> = (0..=max).map(|n| format!("{watcher}-w{n}")).collect();
        let result = within("the reply", watch(many.clone())).await?;
        crate::suite::check::ensure_error(result, v1::ErrorCode::TooLarge, Some("user_ids"))?;
        // The cap is on the whole set, across requests: max - 1 users, then two more.
        let (first, rest) = many.split_at(many.len() - 2);
        within("WatchPresenceResponse", watch(first.to_vec())).await??;
        let result = within("the reply", watch(rest.to_vec())).await?;
        crate::suite::check::ensure_error(result, v1::ErrorCode::TooLarge, Some("user_ids"))?;
        within(
            "UnwatchPresenceResponse",
            w.unwatch_presence(v1::UnwatchPresenceRequest {
                user_ids: first.to_vec(),
                room_id: String::new(),
            }),
        )
        .await??;
    }
    let bl = ctx.client(&blocker).await?;
    let g = ctx.client(&gone).await?;
    super::group(&w, &[&blocker, &gone]).await?;
    within(
        "BlockUserResponse",
        bl.block_user(v1::BlockUserRequest {
            user_id: watcher.clone(),
        }),
    )
    .await??;
    let unknown = format!("{watcher}-nobody");
    let watched = within(
        "WatchPresenceResponse",
        watch(vec![unknown.clone(), blocker.clone(), gone.clone()]),
    )
    .await??;
    for user in [&unknown, &blocker] {
        let p = watched.presences.iter().find(|p| &p.user_id == user);
        ensure(
            p.is_some_and(|p| !p.online && p.last_seen_ms == 0),
            format!("{user} offline with last_seen_ms 0"),
            p,
        )?;
    }
    let online = watched.presences.iter().find(|p| p.user_id == gone);
    ensure(
        online.is_some_and(|p| p.online && p.last_seen_ms > 0),
        "an online user with last_seen_ms the server time",
        online,
    )?;
    g.close(4012, "conformance").await;
    let offline = next_matching(&w, "Presence offline", |kind| match kind {
        event::Kind::Presence(p) if p.user_id == gone && !p.online => Some(p),
        _ => None,
    })
    .await?;
    ensure(
        offline.last_seen_ms >= online.map_or(0, |p| p.last_seen_ms),
        "last_seen_ms: when the last session ended",
        offline,
    )
}

async fn call_nobody(ctx: Ctx) -> Check {
    let (alice, bob) = (ctx.user("alice"), ctx.user("bob"));
    let a = ctx.client(&alice).await?;
    let room = super::group(&a, &[&bob]).await?;
    let signal = |session: &str| v1::CallSignalRequest {
        call_id: "call-0".into(),
        room_id: room.clone(),
        target_user_id: bob.clone(),
        target_session_id: session.to_owned(),
        signal: Some(v1::CallSignal {
            kind: Some(call_signal::Kind::Invite(v1::CallInvite { video: true })),
        }),
    };
    let offline = within("CallSignalResponse", a.call_signal(signal(""))).await??;
    ensure_eq(
        "delivered_sessions to an offline user",
        0,
        offline.delivered_sessions,
    )?;
    let _b = ctx.client(&bob).await?;
    let stale = within(
        "CallSignalResponse",
        a.call_signal(signal("no-such-session")),
    )
    .await??;
    ensure_eq(
        "delivered_sessions to a session that is not live",
        0,
        stale.delivered_sessions,
    )
}

async fn room_watch(ctx: Ctx) -> Check {
    let (a, connected) = ctx.session(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let unknown = "g.00000000000000000000000000000000".to_owned();
    let watch = |room_id: String| {
        a.watch_presence(v1::WatchPresenceRequest {
            user_ids: Vec::new(),
            room_id,
        })
    };
    let unwatch = |room_id: String| {
        a.unwatch_presence(v1::UnwatchPresenceRequest {
            user_ids: Vec::new(),
            room_id,
        })
    };
    if connected
        .capabilities
        .iter()
        .any(|c| c == "presence-room-watch")
    {
        within("WatchPresenceResponse", watch(room.clone())).await??;
        let missing = within("the reply", watch(unknown)).await?;
        return ensure_error(missing, ErrorCode::NotFound, None);
    }
    // Without the capability: the same answer whether the room exists or not.
    for room_id in [room, unknown] {
        let watched = within("the reply", watch(room_id.clone())).await?;
        ensure_error(watched, ErrorCode::Unsupported, Some("room_id"))?;
        let unwatched = within("the reply", unwatch(room_id)).await?;
        ensure_error(unwatched, ErrorCode::Unsupported, Some("room_id"))?;
    }
    super::barrier(&a).await
}
