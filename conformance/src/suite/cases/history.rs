//! History paging.

use chatwire_protocol::v1::{self, history_request::Position};

use super::case;
use crate::suite::check::{Check, ensure, ensure_eq, within};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "HI-01",
            "history",
            Must,
            ["R-9.1.1", "R-9.1.3"],
            ["History"],
            None,
            false,
            "before_seq pages newest first, after_seq oldest first, has_more exact",
            paging
        ),
        case!(
            "HI-02",
            "history",
            Must,
            ["R-9.1.2"],
            ["History"],
            None,
            false,
            "a limit above max_page_size is capped, not an error",
            capped
        ),
        case!(
            "HI-03",
            "history",
            Must,
            ["R-9.1.1"],
            ["History"],
            None,
            false,
            "an explicit before_seq 0 reads the newest page, after_seq 0 the oldest",
            zero_positions
        ),
    ]
}

async fn seeded(ctx: &Ctx, count: usize) -> Check<(crate::client::Client, String, Vec<u64>)> {
    let a = ctx.client(&ctx.user("alice")).await?;
    let room = super::group(&a, &[]).await?;
    let mut seqs = Vec::new();
    for n in 0..count {
        seqs.push(
            super::send(&a, &room, &format!("h-{n}"), &format!("message {n}"))
                .await?
                .seq,
        );
    }
    Ok((a, room, seqs))
}

async fn paging(ctx: Ctx) -> Check {
    let (a, room, seqs) = seeded(&ctx, 5).await?;
    let page = |position, limit| v1::HistoryRequest {
        room_id: room.clone(),
        position,
        limit,
        thread_root_seq: 0,
    };
    let newest = within("HistoryResponse", a.history(page(None, 2))).await??;
    let got: Vec<u64> = newest.messages.iter().map(|m| m.seq).collect();
    ensure_eq("newest page", vec![seqs[4], seqs[3]], got)?;
    ensure(
        newest.has_more && newest.room_id == room,
        "has_more true, room_id echoed",
        &newest,
    )?;
    let older = within(
        "HistoryResponse",
        a.history(page(Some(Position::BeforeSeq(seqs[3])), 10)),
    )
    .await??;
    let got: Vec<u64> = older.messages.iter().map(|m| m.seq).collect();
    ensure_eq("before_seq page", vec![seqs[2], seqs[1], seqs[0]], got)?;
    ensure(
        !older.has_more,
        "has_more false at the start",
        older.has_more,
    )?;
    let newer = within(
        "HistoryResponse",
        a.history(page(Some(Position::AfterSeq(seqs[1])), 2)),
    )
    .await??;
    let got: Vec<u64> = newer.messages.iter().map(|m| m.seq).collect();
    ensure_eq("after_seq page", vec![seqs[2], seqs[3]], got)?;
    ensure(
        newer.has_more,
        "has_more true with one newer message left",
        newer.has_more,
    )
}

async fn capped(ctx: Ctx) -> Check {
    let (a, room, seqs) = seeded(&ctx, 3).await?;
    let response = within(
        "HistoryResponse",
        a.history(v1::HistoryRequest {
            room_id: room,
            limit: 1_000_000,
            ..Default::default()
        }),
    )
    .await??;
    ensure_eq("messages", seqs.len(), response.messages.len())
}

async fn zero_positions(ctx: Ctx) -> Check {
    let (a, room, seqs) = seeded(&ctx, 3).await?;
    let page = |position| v1::HistoryRequest {
        room_id: room.clone(),
        position: Some(position),
        limit: 2,
        thread_root_seq: 0,
    };
    let newest = within("HistoryResponse", a.history(page(Position::BeforeSeq(0)))).await??;
    let got: Vec<u64> = newest.messages.iter().map(|m| m.seq).collect();
    ensure_eq("before_seq 0 page", vec![seqs[2], seqs[1]], got)?;
    ensure(newest.has_more, "has_more true", newest.has_more)?;
    let oldest = within("HistoryResponse", a.history(page(Position::AfterSeq(0)))).await??;
    let got: Vec<u64> = oldest.messages.iter().map(|m| m.seq).collect();
    ensure_eq("after_seq 0 page", vec![seqs[0], seqs[1]], got)
}
