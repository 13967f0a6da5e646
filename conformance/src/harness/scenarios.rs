//! The scenario scripts. Each plays its misbehaviour on the wire and records [`Check`]s.
//! Waits are bounded by the scenario deadline; the only fixed window is the "slow read" and
//! the withheld reply, during which the harness watches what the client sends (a client that
//! behaves passes whatever the timing).
//!
//! [`Check`]: super::Check

use std::time::{Duration, Instant};

use chatwire_protocol::limits::{
    DEFAULT_MAX_CLIENT_FRAME_BYTES, DEFAULT_MAX_IN_FLIGHT_REQUESTS, DEFAULT_MAX_SERVER_FRAME_BYTES,
    DEFAULT_MAX_TEXT_CHARS, MAX_PAGE_SIZE,
};
use chatwire_protocol::v1::{self, client_frame::Request};
use tokio::net::TcpListener;

use super::peer::{Peer, now_ms, room_event};
use super::{HarnessError, Level, REPORT_ROOM, ROOM, Scenario, Verdict};

const HOUR_MS: i64 = 3_600_000;
/// How long a withheld reply or a slow read waits, watching the client.
const WINDOW: Duration = Duration::from_millis(300);
/// The reconnect delay the draining server asks for.
const DRAIN_DELAY_MS: u32 = 1000;
/// The in-flight limit advertised in `slow-reads`, and how many messages the client sends.
const SLOW_IN_FLIGHT: u32 = 3;
const SLOW_MESSAGES: usize = 8;

pub(super) async fn play(
    listener: &TcpListener,
    scenario: Scenario,
    deadline: Instant,
    verdict: &mut Verdict,
) -> Result<(), HarnessError> {
    let s = Script { listener, deadline };
    match scenario {
        Scenario::DropMidRequest => s.drop_mid_request(verdict).await,
        Scenario::AckDuplicated => s.ack_duplicated(verdict).await,
        Scenario::SeqGap => s.seq_gap(verdict).await,
        Scenario::DuplicateEvent => s.duplicate_event(verdict).await,
        Scenario::TokenExpiring => s.token_expiring(verdict).await,
        Scenario::ServerDraining => s.server_draining(verdict).await,
        Scenario::SlowReads => s.slow_reads(verdict).await,
    }
}

/// The limits the harness advertises.
fn limits(max_in_flight: u32) -> v1::Limits {
    let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
    v1::Limits {
        max_client_frame_bytes: n(DEFAULT_MAX_CLIENT_FRAME_BYTES),
        max_server_frame_bytes: n(DEFAULT_MAX_SERVER_FRAME_BYTES),
        max_content_bytes: 16 * 1024,
        max_text_chars: n(DEFAULT_MAX_TEXT_CHARS),
        max_app_payload_bytes: 4096,
        max_attachments: 10,
        max_mentions: 50,
        max_in_flight_requests: max_in_flight,
        max_page_size: n(MAX_PAGE_SIZE),
        max_presence_watch: 500,
        max_group_members: 1000,
        send_rate_per_second: 100,
        send_burst: 100,
        idempotency_window_s: 86_400,
        typing_throttle_ms: 2000,
        typing_ttl_ms: 6000,
        room_send_rate_per_second: 100,
        room_send_burst: 100,
        contact_requests_per_minute: 20,
        contact_requests_burst: 10,
    }
}

fn default_limits() -> v1::Limits {
    limits(u32::try_from(DEFAULT_MAX_IN_FLIGHT_REQUESTS).unwrap_or(64))
}

fn sent(seq: u64) -> v1::reply::Result {
    v1::reply::Result::Send(v1::SendResponse {
        seq,
        ordinal: seq,
        created_at_ms: now_ms(),
        duplicate: false,
    })
}

fn page(room: &str, seqs: impl IntoIterator<Item = u64>, head: u64) -> v1::reply::Result {
    v1::reply::Result::Subscribe(v1::SubscribeResponse {
        room_id: room.into(),
        events: seqs.into_iter().map(|s| room_event(room, s)).collect(),
        head_seq: head,
        complete: true,
        first_visible_seq: 1,
    })
}

fn is_send_to(request: &Request, room: &str) -> bool {
    matches!(request, Request::Send(send) if send.room_id == room)
}

fn is_subscribe(request: &Request) -> bool {
    matches!(request, Request::Subscribe(sub) if sub.room_id == ROOM)
}

/// The seqs of an `applied:1,2,3` report.
fn parse_report(request: &Request) -> Option<Vec<u64>> {
    let Request::Send(send) = request else {
        return None;
    };
    let text = send.content.as_ref()?.text.strip_prefix("applied:")?;
    text.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().ok())
        .collect()
}

fn text_of(send: &v1::SendRequest) -> &str {
    send.content.as_ref().map_or("", |c| c.text.as_str())
}

struct Script<'a> {
    listener: &'a TcpListener,
    deadline: Instant,
}

impl Script<'_> {
    async fn connected(&self, limits: v1::Limits) -> Result<Peer, HarnessError> {
        let mut peer = Peer::accept(self.listener, self.deadline).await?;
        peer.handshake(limits, HOUR_MS, self.deadline).await?;
        Ok(peer)
    }

    /// The next request matching `wanted`; others get plain answers.
    async fn next_of(
        &self,
        peer: &mut Peer,
        what: &str,
        wanted: impl Fn(&Request) -> bool,
    ) -> Result<(u64, Request), HarnessError> {
        loop {
            let frame = peer
                .next(self.deadline)
                .await
                .map_err(|e| match e {
                    HarnessError::Timeout(_) => HarnessError::Timeout(what.to_owned()),
                    other => other,
                })?
                .ok_or_else(|| HarnessError::Client(format!("closed while waiting for {what}")))?;
            match frame.request {
                Some(request) if wanted(&request) => return Ok((frame.id, request)),
                _ => peer.answer_plainly(&frame).await?,
            }
        }
    }

    async fn next_send(&self, peer: &mut Peer) -> Result<(u64, v1::SendRequest), HarnessError> {
        match self
            .next_of(peer, "a Send to harness-room", |r| is_send_to(r, ROOM))
            .await?
        {
            (id, Request::Send(send)) => Ok((id, send)),
            _ => Err(HarnessError::Client("not a Send".into())),
        }
    }

    async fn next_subscribe(
        &self,
        peer: &mut Peer,
    ) -> Result<(u64, v1::SubscribeRequest), HarnessError> {
        match self
            .next_of(peer, "a Subscribe to harness-room", is_subscribe)
            .await?
        {
            (id, Request::Subscribe(sub)) => Ok((id, sub)),
            _ => Err(HarnessError::Client("not a Subscribe".into())),
        }
    }

    /// Waits for the client's `applied:` report, answers it, and returns the seqs.
    async fn report(&self, peer: &mut Peer) -> Result<Vec<u64>, HarnessError> {
        let what = "the applied: report to harness-report";
        let (id, request) = self
            .next_of(peer, what, |r| is_send_to(r, REPORT_ROOM))
            .await?;
        peer.reply(id, sent(1)).await?;
        parse_report(&request)
            .ok_or_else(|| HarnessError::Client(format!("a malformed report: {request:?}")))
    }

    async fn drop_mid_request(&self, v: &mut Verdict) -> Result<(), HarnessError> {
        let mut first_conn = self.connected(default_limits()).await?;
        let (_, first) = self.next_send(&mut first_conn).await?;
        // No reply, no close frame: the TCP connection just ends.
        drop(first_conn);
        let mut second = self.reconnect(v, "R-4.9.1").await?;
        second
            .handshake(default_limits(), HOUR_MS, self.deadline)
            .await?;
        let (id, again) = self.next_send(&mut second).await?;
        v.check(
            "R-8.2.5",
            Level::Must,
            "resent the Send with the same client_msg_id",
            again.client_msg_id == first.client_msg_id,
            format!(
                "first {:?}, retry {:?}",
                first.client_msg_id, again.client_msg_id
            ),
        );
        v.check(
            "R-8.2.5",
            Level::Must,
            "resent the same content",
            again.content == first.content,
            format!("first {:?}, retry {:?}", text_of(&first), text_of(&again)),
        );
        second.reply(id, sent(1)).await
    }

    /// Accepts the client's next connection, recording whether it came.
    async fn reconnect(
        &self,
        v: &mut Verdict,
        requirement: &'static str,
    ) -> Result<Peer, HarnessError> {
        let what = "reconnected after the connection ended";
        match Peer::accept(self.listener, self.deadline).await {
            Ok(peer) => {
                v.check(
                    requirement,
                    Level::Must,
                    what,
                    true,
                    "a new connection came",
                );
                Ok(peer)
            }
            Err(err) => {
                v.check(requirement, Level::Must, what, false, err.to_string());
                Err(err)
            }
        }
    }

    async fn ack_duplicated(&self, v: &mut Verdict) -> Result<(), HarnessError> {
        let mut peer = self.connected(default_limits()).await?;
        let (id1, one) = self.next_send(&mut peer).await?;
        // Withheld: whatever the client sends meanwhile gets its answer, but not this reply.
        while let Some(frame) = peer.next_within(WINDOW).await? {
            peer.answer_plainly(&frame).await?;
        }
        peer.reply(id1, sent(1)).await?;
        peer.reply(id1, sent(1)).await?;
        let next = self.next_send(&mut peer).await;
        v.check(
            "R-5.2.3",
            Level::Must,
            "ignored the duplicated reply and went on with the session",
            next.is_ok(),
            next.as_ref()
                .map_or_else(|e| e.to_string(), |_| "the next Send came".into()),
        );
        let (id2, two) = next?;
        v.check(
            "R-5.1.2",
            Level::Should,
            "used a new request id for the next request",
            id2 != id1,
            format!("ids {id1} then {id2}"),
        );
        v.check(
            "R-8.2.1",
            Level::Should,
            "used a fresh client_msg_id for a new message",
            two.client_msg_id != one.client_msg_id,
            format!("{:?} then {:?}", one.client_msg_id, two.client_msg_id),
        );
        peer.reply(id2, sent(2)).await
    }

    async fn seq_gap(&self, v: &mut Verdict) -> Result<(), HarnessError> {
        let mut peer = self.connected(default_limits()).await?;
        let (id, _) = self.next_subscribe(&mut peer).await?;
        peer.reply(id, page(ROOM, 1..=2, 2)).await?;
        peer.room_events(ROOM, &[3, 5]).await?;
        let repair = self.next_subscribe(&mut peer).await;
        v.check(
            "R-10.5.4",
            Level::Should,
            "repaired the gap with Subscribe after_seq 3",
            matches!(&repair, Ok((_, sub)) if sub.after_seq == 3),
            match &repair {
                Ok((_, sub)) => format!("Subscribe after_seq {}", sub.after_seq),
                Err(err) => err.to_string(),
            },
        );
        let (id, sub) = repair?;
        let from = sub.after_seq.saturating_add(1);
        peer.reply(id, page(ROOM, from..=5, 5)).await?;
        peer.room_events(ROOM, &[6]).await?;
        let applied = self.report(&mut peer).await?;
        v.check(
            "R-10.5.1",
            Level::Must,
            "applied each event exactly once, in seq order",
            applied == [1, 2, 3, 4, 5, 6],
            format!("applied {applied:?}"),
        );
        Ok(())
    }

    async fn duplicate_event(&self, v: &mut Verdict) -> Result<(), HarnessError> {
        let mut peer = self.connected(default_limits()).await?;
        let (id, _) = self.next_subscribe(&mut peer).await?;
        peer.reply(id, page(ROOM, 1..=2, 2)).await?;
        peer.room_events(ROOM, &[2, 3, 1, 4]).await?;
        let applied = self.report(&mut peer).await?;
        v.check(
            "R-10.5.2",
            Level::Must,
            "ignored the events whose seq was not above the highest applied",
            applied == [1, 2, 3, 4],
            format!("applied {applied:?} (delivered 1,2 then 2,3,1,4)"),
        );
        Ok(())
    }

    async fn token_expiring(&self, v: &mut Verdict) -> Result<(), HarnessError> {
        let mut peer = Peer::accept(self.listener, self.deadline).await?;
        let ttl_ms = 90_000;
        let connect = peer
            .handshake(default_limits(), ttl_ms, self.deadline)
            .await?;
        peer.event(v1::event::Kind::TokenExpiring(v1::TokenExpiring {
            expires_at_ms: now_ms() + ttl_ms,
        }))
        .await?;
        let refresh = self
            .next_of(&mut peer, "a Refresh", |r| matches!(r, Request::Refresh(_)))
            .await;
        v.check(
            "R-4.4.2",
            Level::Should,
            "sent Refresh after TokenExpiring",
            refresh.is_ok(),
            refresh
                .as_ref()
                .map_or_else(|e| e.to_string(), |_| "Refresh came".into()),
        );
        let (id, Request::Refresh(refresh)) = refresh? else {
            return Err(HarnessError::Client("not a Refresh".into()));
        };
        v.check(
            "R-4.4.2",
            Level::Should,
            "the Refresh carries a token",
            !refresh.token.is_empty(),
            format!(
                "{} bytes (Connect's was {})",
                refresh.token.len(),
                connect.token.len()
            ),
        );
        let result = v1::reply::Result::Refresh(v1::RefreshResponse {
            token_expires_at_ms: now_ms() + HOUR_MS,
        });
        peer.reply(id, result).await
    }

    async fn server_draining(&self, v: &mut Verdict) -> Result<(), HarnessError> {
        let mut first = self.connected(default_limits()).await?;
        let (id, _) = self.next_subscribe(&mut first).await?;
        first.reply(id, page(ROOM, 1..=3, 3)).await?;
        first
            .disconnect(v1::Disconnect {
                code: v1::CloseCode::ServerDraining.into(),
                reason: "draining (client-harness)".into(),
                reconnect: true,
                reconnect_delay_ms: DRAIN_DELAY_MS,
            })
            .await?;
        let drained = Instant::now();
        drop(first);
        let mut second = self.reconnect(v, "R-4.8.4").await?;
        let waited = drained.elapsed();
        v.check(
            "R-4.9.2",
            Level::Must,
            "waited at least reconnect_delay_ms before reconnecting",
            waited >= Duration::from_millis(u64::from(DRAIN_DELAY_MS)),
            format!(
                "reconnected after {} ms (delay {DRAIN_DELAY_MS} ms)",
                waited.as_millis()
            ),
        );
        second
            .handshake(default_limits(), HOUR_MS, self.deadline)
            .await?;
        let resubscribed = self.next_subscribe(&mut second).await;
        v.check(
            "R-10.5.3",
            Level::Must,
            "subscribed again with after_seq = the highest applied seq (3)",
            matches!(&resubscribed, Ok((_, sub)) if sub.after_seq == 3),
            match &resubscribed {
                Ok((_, sub)) => format!("Subscribe after_seq {}", sub.after_seq),
                Err(err) => err.to_string(),
            },
        );
        let (id, _) = resubscribed?;
        second.reply(id, page(ROOM, [], 3)).await
    }

    async fn slow_reads(&self, v: &mut Verdict) -> Result<(), HarnessError> {
        let mut peer = self.connected(limits(SLOW_IN_FLIGHT)).await?;
        let mut outstanding = std::collections::VecDeque::new();
        let mut received = Vec::new();
        let mut most = 0;
        while received.len() < SLOW_MESSAGES {
            let frame = if outstanding.len() >= SLOW_IN_FLIGHT as usize {
                // A slow read: the client gets a window to (wrongly) send more first.
                match peer.next_within(WINDOW).await? {
                    Some(frame) => frame,
                    None => {
                        if let Some(id) = outstanding.pop_front() {
                            peer.reply(id, sent(id)).await?;
                        }
                        continue;
                    }
                }
            } else {
                peer.next(self.deadline)
                    .await?
                    .ok_or_else(|| HarnessError::Client("closed mid-scenario".into()))?
            };
            match &frame.request {
                Some(Request::Send(send)) if send.room_id == ROOM => {
                    outstanding.push_back(frame.id);
                    received.push(send.client_msg_id.clone());
                    most = most.max(outstanding.len());
                }
                _ => peer.answer_plainly(&frame).await?,
            }
        }
        while let Some(id) = outstanding.pop_front() {
            peer.reply(id, sent(id)).await?;
        }
        v.check(
            "R-5.4.1",
            Level::Must,
            "kept at most max_in_flight_requests (3) requests unanswered",
            most <= SLOW_IN_FLIGHT as usize,
            format!("at most {most} unanswered"),
        );
        let mut distinct = received.clone();
        distinct.sort();
        distinct.dedup();
        v.check(
            "R-8.2.1",
            Level::Should,
            "sent each of the 8 messages once, each with its own client_msg_id",
            distinct.len() == SLOW_MESSAGES,
            format!("{} distinct of {}", distinct.len(), received.len()),
        );
        Ok(())
    }
}
