//! Every case of the server suite, one file per group, and the helpers they share.
//!
//! | group | spec sections |
//! |---|---|
//! | `handshake` | 2.3, 2.5, 3, 4.1, 4.3, 22 |
//! | `framing` | 2.1, 2.2, 2.3, 5.1 |
//! | `auth` | 4.2, 4.4 |
//! | `requests` | 3.3, 4.6, 5 |
//! | `rooms` | 6, 11, 16 |
//! | `messages` | 7, 8 |
//! | `history` | 9 |
//! | `subscribe` | 10 |
//! | `receipts`, `typing`, `presence`, `calls`, `account` | 12, 13, 14, 15, 17 |
//! | `limits` | 18, 21 |
//! | `moderation` | 5.7, 6.6, 8.9 |
//! | `quic` | 2.5 |
//! | `search` | 24 (capability `search`) |
//! | `contacts` | 25 (capability `contacts`) |

mod account;
mod auth;
mod contacts;
mod framing;
mod handshake;
mod history;
mod messages;
mod moderation;
mod quic;
mod requests;
mod rooms;
mod search;
mod social;
mod subscribe;

use chatwire_protocol::v1::{self, event};

use super::Case;
use super::check::{Check, Failure, within};
use crate::client::Client;

/// Declares a case: `case!(ID, group, LEVEL, [reqs], [rpcs], only, needs_key, title, fn)`.
macro_rules! case {
    ($id:literal, $group:literal, $level:ident, [$($req:literal),*], [$($rpc:literal),*],
     $only:expr, $key:expr, $title:literal, $f:path) => {
        $crate::suite::Case {
            id: $id,
            group: $group,
            title: $title,
            reqs: &[$($req),*],
            level: $crate::suite::Level::$level,
            rpcs: &[$($rpc),*],
            only: $only,
            needs_key: $key,
            run: |ctx| Box::pin($f(ctx)),
        }
    };
}
pub(crate) use case;

/// Every case, in report order.
pub fn all() -> Vec<Case> {
    [
        handshake::cases(),
        framing::cases(),
        auth::cases(),
        requests::cases(),
        rooms::cases(),
        messages::cases(),
        history::cases(),
        subscribe::cases(),
        social::cases(),
        account::cases(),
        moderation::cases(),
        search::cases(),
        contacts::cases(),
        quic::cases(),
    ]
    .concat()
}

/// Creates a group owned by `owner` with `members`; its id.
pub(super) async fn group(owner: &Client, members: &[&str]) -> Check<String> {
    let response = within(
        "CreateGroupResponse",
        owner.create_group(v1::CreateGroupRequest {
            name: "conformance".into(),
            member_ids: members.iter().map(|m| (*m).to_owned()).collect(),
            ..Default::default()
        }),
    )
    .await??;
    response
        .room
        .map(|room| room.id)
        .ok_or_else(|| Failure::new("CreateGroupResponse.room set", "no room"))
}

/// A text message.
pub(super) fn text(body: &str) -> Option<v1::Content> {
    Some(v1::Content {
        text: body.to_owned(),
        ..Default::default()
    })
}

/// A `SendRequest` with a text message.
pub(super) fn send_req(room: &str, client_msg_id: &str, body: &str) -> v1::SendRequest {
    v1::SendRequest {
        room_id: room.to_owned(),
        client_msg_id: client_msg_id.to_owned(),
        content: text(body),
        ..Default::default()
    }
}

/// Sends a text message and returns its response.
pub(super) async fn send(
    client: &Client,
    room: &str,
    client_msg_id: &str,
    body: &str,
) -> Check<v1::SendResponse> {
    Ok(within(
        "SendResponse",
        client.send(send_req(room, client_msg_id, body)),
    )
    .await??)
}

/// The next `count` room events of `room`, skipping every other event.
pub(super) async fn room_events(
    client: &Client,
    room: &str,
    count: usize,
) -> Check<Vec<v1::RoomEvent>> {
    let mut events = Vec::new();
    while events.len() < count {
        let event = within("a room event", client.next_event()).await??;
        if let Some(event::Kind::Room(room_event)) = event.kind
            && room_event.room_id == room
        {
            events.push(room_event);
        }
    }
    Ok(events)
}

/// Subscribes from `after_seq`, paging until `complete`; every replayed event.
pub(super) async fn subscribe_all(
    client: &Client,
    room: &str,
    after_seq: u64,
) -> Check<(Vec<v1::RoomEvent>, v1::SubscribeResponse)> {
    let mut events = Vec::new();
    let mut after = after_seq;
    loop {
        let page = within(
            "SubscribeResponse",
            client.subscribe(v1::SubscribeRequest {
                room_id: room.to_owned(),
                after_seq: after,
                limit: 0,
            }),
        )
        .await??;
        after = page.events.last().map_or(after, |e| e.seq);
        events.extend(page.events.iter().cloned());
        if page.complete {
            return Ok((events, page));
        }
        if page.events.is_empty() {
            return Err(Failure::new(
                "a page that is not complete holds at least one event (R-10.1.2)",
                format!("{page:?}"),
            ));
        }
    }
}

/// Checks that seqs are contiguous from `first`.
pub(super) fn contiguous(events: &[v1::RoomEvent], first: u64) -> Check {
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    let want: Vec<u64> = (first..first + seqs.len() as u64).collect();
    super::check::ensure(seqs == want, format!("contiguous seqs from {first}"), seqs)
}

/// A ping round trip: a barrier after which every reply and event sent before it has arrived.
pub(super) async fn barrier(client: &Client) -> Check {
    within("PingResponse", client.ping(v1::PingRequest::default())).await??;
    Ok(())
}
