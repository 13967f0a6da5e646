//! Subscribe and resume: replay pages, the switch to live, exact resume, unsubscribe.

use chatwire_protocol::v1::{self, ErrorCode, event};

use super::case;
use crate::suite::check::{Check, Failure, ensure, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "SU-01",
            "subscribe",
            Must,
            ["R-10.1.1", "R-10.1.3", "R-10.3.1", "R-10.3.2"],
            ["Subscribe", "Send"],
            None,
            false,
            "replay from 0 is contiguous and complete; live delivery starts at head + 1",
            replay_then_live
        ),
        case!(
            "SU-02",
            "subscribe",
            Must,
            ["R-10.1.4", "R-10.1.2"],
            ["Subscribe", "Send"],
            None,
            false,
            "a page with complete false: no live events of the room until complete",
            paged_replay
        ),
        case!(
            "SU-03",
            "subscribe",
            Must,
            ["R-10.1.5"],
            ["Subscribe"],
            None,
            false,
            "after_seq above the head is INVALID_ARGUMENT (field after_seq)",
            beyond_head
        ),
        case!(
            "SU-04",
            "subscribe",
            Must,
            ["R-10.4.1", "R-10.4.2"],
            ["Unsubscribe", "Subscribe", "Send"],
            None,
            false,
            "Unsubscribe returns the last delivered seq and no event of the room follows",
            unsubscribe
        ),
        case!(
            "SU-05",
            "subscribe",
            Must,
            ["R-10.1.6", "R-4.7.5", "R-10.3.4"],
            ["Subscribe", "Send"],
            None,
            false,
            "a new session resumes after seq k with exactly k+1..head, and nothing survives the old one",
            resume
        ),
        case!(
            "SU-06",
            "subscribe",
            Must,
            ["R-10.2.1"],
            ["Subscribe", "Send"],
            None,
            false,
            "a second Subscribe to a live room replaces the subscription: replay from the new after_seq, no duplicate live events",
            resubscribe
        ),
        case!(
            "SU-07",
            "subscribe",
            Must,
            ["R-10.4.1", "R-10.4.3"],
            ["Subscribe", "Unsubscribe", "Send"],
            None,
            false,
            "Unsubscribe.last_seq counts replayed events; between pages it is 0",
            unsubscribe_after_replay
        ),
    ]
}

async fn replay_then_live(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    for n in 0..3 {
        super::send(&a, &room, &format!("s-{n}"), "x").await?;
    }
    let (events, last) = super::subscribe_all(&a, &room, 0).await?;
    super::contiguous(&events, 1)?;
    ensure_eq(
        "last replayed seq",
        last.head_seq,
        events.last().map_or(0, |e| e.seq),
    )?;
    let sent = super::send(&a, &room, "s-live", "x").await?;
    let live = super::room_events(&a, &room, 1).await?;
    ensure_eq("first live seq", last.head_seq + 1, live[0].seq)?;
    ensure_eq("SendResponse seq", live[0].seq, sent.seq)
}

async fn paged_replay(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    for n in 0..4 {
        super::send(&a, &room, &format!("p-{n}"), "x").await?;
    }
    let page = within(
        "SubscribeResponse",
        a.subscribe(v1::SubscribeRequest {
            room_id: room.clone(),
            after_seq: 0,
            limit: 2,
        }),
    )
    .await??;
    ensure(
        !page.complete && page.events.len() == 2,
        "two events, complete false",
        &page,
    )?;
    super::send(&a, &room, "p-more", "x").await?;
    super::barrier(&a).await?;
    while let Some(event) = a.try_next_event() {
        if let Some(event::Kind::Room(room_event)) = &event.kind {
            ensure(
                room_event.room_id != room,
                "no live event of a room whose replay is not complete",
                room_event,
            )?;
        }
    }
    let last = page.events.last().map_or(0, |e| e.seq);
    let (rest, done) = super::subscribe_all(&a, &room, last).await?;
    super::contiguous(&rest, last + 1)?;
    ensure(done.complete, "complete at the end", done.complete)
}

async fn beyond_head(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let result = within(
        "the reply",
        a.subscribe(v1::SubscribeRequest {
            room_id: room,
            after_seq: 1_000_000,
            limit: 0,
        }),
    )
    .await?;
    ensure_error(result, ErrorCode::InvalidArgument, Some("after_seq"))
}

async fn unsubscribe(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let (_, page) = super::subscribe_all(&a, &room, 0).await?;
    let sent = super::send(&a, &room, "u-1", "x").await?;
    super::room_events(&a, &room, 1).await?;
    let response = within(
        "UnsubscribeResponse",
        a.unsubscribe(v1::UnsubscribeRequest {
            room_id: room.clone(),
        }),
    )
    .await??;
    ensure_eq("last_seq", sent.seq.max(page.head_seq), response.last_seq)?;
    super::send(&a, &room, "u-2", "x").await?;
    super::barrier(&a).await?;
    while let Some(event) = a.try_next_event() {
        if let Some(event::Kind::Room(room_event)) = &event.kind {
            ensure(
                room_event.room_id != room,
                "no event of the room after UnsubscribeResponse",
                room_event,
            )?;
        }
    }
    Ok(())
}

async fn resume(ctx: Ctx) -> Check {
    let alice = ctx.user("alice");
    let a = ctx.client(&alice).await?;
    let room = super::group(&a, &[]).await?;
    let (_, page) = super::subscribe_all(&a, &room, 0).await?;
    let k = page.head_seq;
    drop(a);
    let writer = ctx.client(&alice).await?;
    for n in 0..5 {
        super::send(&writer, &room, &format!("r-{n}"), "x").await?;
    }
    let b = ctx.client(&alice).await?;
    super::barrier(&b).await?;
    if let Some(event) = b
        .try_next_event()
        .filter(|e| matches!(e.kind, Some(event::Kind::Room(_))))
    {
        return Err(Failure::new(
            "no room events before Subscribe on a new session",
            format!("{event:?}"),
        ));
    }
    let (events, done) = super::subscribe_all(&b, &room, k).await?;
    super::contiguous(&events, k + 1)?;
    ensure_eq(
        "replayed up to",
        done.head_seq,
        events.last().map_or(k, |e| e.seq),
    )
}

async fn resubscribe(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let (_, page) = super::subscribe_all(&a, &room, 0).await?;
    let head = page.head_seq;
    super::send(&a, &room, "rs-1", "x").await?;
    super::send(&a, &room, "rs-2", "x").await?;
    super::contiguous(&super::room_events(&a, &room, 2).await?, head + 1)?;
    // Again from `head`: the two events come back as replay, not as live duplicates.
    let (replayed, _) = super::subscribe_all(&a, &room, head).await?;
    super::contiguous(&replayed, head + 1)?;
    ensure_eq("replayed events", 2, replayed.len())?;
    super::send(&a, &room, "rs-3", "x").await?;
    let live = super::room_events(&a, &room, 1).await?;
    ensure_eq("the next live seq", head + 3, live[0].seq)?;
    super::barrier(&a).await?;
    while let Some(event) = a.try_next_event() {
        if let Some(event::Kind::Room(room_event)) = &event.kind {
            ensure(
                room_event.room_id != room,
                "each event of the room once (no live duplicate after the new subscription)",
                room_event,
            )?;
        }
    }
    Ok(())
}

async fn unsubscribe_after_replay(ctx: Ctx) -> Check {
    let alice = ctx.user("alice");
    let a = ctx.client(&alice).await?;
    let room = super::group(&a, &[]).await?;
    let sent = super::send(&a, &room, "r-1", "x").await?;
    // Another session of the same user: all it gets of the room comes from replay.
    let b = ctx.client(&alice).await?;
    let (events, _) = super::subscribe_all(&b, &room, 0).await?;
    let last = events.last().map_or(0, |e| e.seq);
    ensure_eq("the replay reaches the send", sent.seq, last)?;
    let response = within(
        "UnsubscribeResponse",
        b.unsubscribe(v1::UnsubscribeRequest {
            room_id: room.clone(),
        }),
    )
    .await??;
    ensure_eq(
        "last_seq after a replay only (R-10.4.3)",
        last,
        response.last_seq,
    )?;
    // Between pages (complete false) the room is not live: last_seq 0.
    let page = within(
        "SubscribeResponse",
        b.subscribe(v1::SubscribeRequest {
            room_id: room.clone(),
            after_seq: 0,
            limit: 1,
        }),
    )
    .await??;
    ensure(
        !page.complete,
        "a one-event page of a longer log is not complete",
        &page,
    )?;
    let response = within(
        "UnsubscribeResponse",
        b.unsubscribe(v1::UnsubscribeRequest { room_id: room }),
    )
    .await??;
    ensure_eq("last_seq between pages (R-10.4.3)", 0, response.last_seq)
}
