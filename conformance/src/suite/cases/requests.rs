//! Requests and replies: correlation by id, exactly one reply per request, unknown request
//! cases, every request of the service answered, pings, trace ids.

use bytes::{BufMut, BytesMut};
use chatwire_protocol::v1::{self, ClientFrame, ErrorCode, client_frame::Request, reply};

use super::case;
use crate::client::{CALLS, ClientError};
use crate::suite::check::{
    Check, Failure, ensure, ensure_eq, ensure_error, ensure_retryable, within,
};
use crate::suite::{Case, Ctx};

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "RQ-01",
            "requests",
            Must,
            ["R-5.2.1", "R-5.2.2"],
            ["Ping", "GetRoom", "ListBlocked"],
            None,
            false,
            "requests in one write, ids out of order: exactly one matching reply each",
            correlation
        ),
        case!(
            "RQ-02",
            "requests",
            Must,
            ["R-3.3.2"],
            [],
            None,
            false,
            "an unknown request case gets UNSUPPORTED with the frame's id",
            unknown_request
        ),
        case!(
            "RQ-03",
            "requests",
            Must,
            ["R-4.6.1"],
            ["Ping"],
            None,
            false,
            "Ping echoes client_time_ms and sets server_time_ms",
            ping_echo
        ),
        case!(
            "RQ-04",
            "requests",
            Must,
            ["R-5.5.1"],
            ["Ping"],
            None,
            false,
            "a malformed trace_id does not fail the request",
            bad_trace_id
        ),
        case!(
            "RQ-05",
            "requests",
            Must,
            ["R-5.7.1", "R-5.2.1", "R-5.6.1"],
            [
                "Connect",
                "Refresh",
                "Ping",
                "CreateGroup",
                "OpenDirect",
                "GetRoom",
                "UpdateRoom",
                "ListMembers",
                "AddMembers",
                "RemoveMember",
                "SetRole",
                "LeaveRoom",
                "Send",
                "Edit",
                "Delete",
                "React",
                "History",
                "Subscribe",
                "Unsubscribe",
                "Sync",
                "MarkDelivered",
                "MarkRead",
                "GetReceipts",
                "Typing",
                "WatchPresence",
                "UnwatchPresence",
                "CallSignal",
                "BlockUser",
                "UnblockUser",
                "ListBlocked",
                "RegisterPushToken",
                "UnregisterPushToken",
                "MuteRoom",
                "Search",
                "RestrictMember",
                "GetEditHistory",
                "ReportMessage",
                "ListReviews",
                "ResolveReview"
            ],
            None,
            false,
            "every request of the service is answered: its own result case or a defined error",
            every_request
        ),
        case!(
            "RQ-06",
            "requests",
            Must,
            ["R-5.4.2"],
            ["Send", "Subscribe"],
            None,
            false,
            "requests over the limit (in flight or rate) get RATE_LIMITED, retryable, with retry_after_ms, and are not processed",
            over_the_limit
        ),
        case!(
            "RQ-07",
            "requests",
            Must,
            ["R-3.3.3"],
            ["SetRole", "AddMembers", "UpdateRoom"],
            None,
            false,
            "an enum value unknown to the server that changes a request's meaning gets UNSUPPORTED with field",
            unknown_enum
        ),
        case!(
            "RQ-08",
            "requests",
            Must,
            ["R-1.3.1"],
            ["OpenDirect"],
            None,
            false,
            "a 128-byte id of every allowed character is accepted; other ids are INVALID_ARGUMENT naming the field",
            id_syntax
        ),
    ]
}

fn frame(id: u64, request: Request) -> ClientFrame {
    ClientFrame {
        id,
        trace_id: String::new(),
        request: Some(request),
    }
}

/// The result case name of a reply, for comparing with the request case.
fn result_name(result: &reply::Result) -> String {
    let debug = format!("{result:?}");
    debug.split('(').next().unwrap_or_default().to_owned()
}

fn request_name(request: &Request) -> String {
    let debug = format!("{request:?}");
    debug.split('(').next().unwrap_or_default().to_owned()
}

async fn correlation(ctx: Ctx) -> Check {
    let client = ctx.client(&ctx.user("alice")).await?;
    let frames = [
        frame(900, Request::Ping(v1::PingRequest { client_time_ms: 1 })),
        frame(
            3,
            Request::GetRoom(v1::GetRoomRequest {
                room_id: "g.00000000000000000000000000000000".into(),
            }),
        ),
        frame(77, Request::ListBlocked(v1::ListBlockedRequest {})),
    ];
    client.send_batch(&frames).await?;
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(within("three replies", client.next_reply()).await??);
    }
    let mut ids: Vec<u64> = replies.iter().map(|r| r.request_id).collect();
    ids.sort_unstable();
    ensure_eq("reply ids", vec![3, 77, 900], ids)?;
    for reply in &replies {
        let result = reply
            .result
            .as_ref()
            .ok_or_else(|| Failure::new("a result", "none"))?;
        let want = match reply.request_id {
            900 => "Ping",
            3 => "Error",
            _ => "ListBlocked",
        };
        ensure_eq("result case", want.to_owned(), result_name(result))?;
    }
    super::barrier(&client).await?;
    let extra = tokio::time::timeout(std::time::Duration::ZERO, client.next_reply()).await;
    ensure(extra.is_err(), "no further reply", extra.ok())
}

async fn unknown_request(ctx: Ctx) -> Check {
    let client = ctx.client(&ctx.user("alice")).await?;
    // ClientFrame { id: 31, <field 999: empty message> }: a request case no v1 server knows.
    let mut body = BytesMut::new();
    prost::encoding::uint64::encode(1, &31u64, &mut body);
    prost::encoding::encode_key(999, prost::encoding::WireType::LengthDelimited, &mut body);
    body.put_u8(0);
    let mut bytes = BytesMut::new();
    prost::encoding::encode_varint(body.len() as u64, &mut bytes);
    bytes.put_slice(&body);
    client.send_raw(bytes.freeze()).await?;
    let reply = within("the reply to id 31", client.next_reply()).await??;
    ensure_eq("reply.request_id", 31, reply.request_id)?;
    let result = match reply.result {
        Some(reply::Result::Error(err)) => Err(ClientError::Server(err)),
        other => Ok(other),
    };
    ensure_error(result, ErrorCode::Unsupported, None)
}

async fn ping_echo(ctx: Ctx) -> Check {
    let client = ctx.client(&ctx.user("alice")).await?;
    let sent = 1_700_000_000_123;
    let response = within(
        "PingResponse",
        client.ping(v1::PingRequest {
            client_time_ms: sent,
        }),
    )
    .await??;
    ensure_eq("client_time_ms", sent, response.client_time_ms)?;
    ensure(
        response.server_time_ms > 0,
        "server_time_ms set",
        response.server_time_ms,
    )
}

async fn bad_trace_id(ctx: Ctx) -> Check {
    let client = ctx.client(&ctx.user("alice")).await?;
    let result = within(
        "PingResponse",
        client.call_traced(
            Request::Ping(v1::PingRequest::default()),
            "NOT A TRACE ID \u{1f600}",
        ),
    )
    .await??;
    ensure_eq("result case", "Ping".to_owned(), result_name(&result))
}

fn empty_request(name: &str) -> Option<Request> {
    use v1::*;
    Some(match name {
        "Connect" => Request::Connect(ConnectRequest::default()),
        "Refresh" => Request::Refresh(RefreshRequest::default()),
        "Ping" => Request::Ping(PingRequest::default()),
        "CreateGroup" => Request::CreateGroup(CreateGroupRequest::default()),
        "OpenDirect" => Request::OpenDirect(OpenDirectRequest::default()),
        "GetRoom" => Request::GetRoom(GetRoomRequest::default()),
        "UpdateRoom" => Request::UpdateRoom(UpdateRoomRequest::default()),
        "ListMembers" => Request::ListMembers(ListMembersRequest::default()),
        "AddMembers" => Request::AddMembers(AddMembersRequest::default()),
        "RemoveMember" => Request::RemoveMember(RemoveMemberRequest::default()),
        "SetRole" => Request::SetRole(SetRoleRequest::default()),
        "LeaveRoom" => Request::LeaveRoom(LeaveRoomRequest::default()),
        "Send" => Request::Send(SendRequest::default()),
        "Edit" => Request::Edit(EditRequest::default()),
        "Delete" => Request::Delete(DeleteRequest::default()),
        "React" => Request::React(ReactRequest::default()),
        "History" => Request::History(HistoryRequest::default()),
        "Subscribe" => Request::Subscribe(SubscribeRequest::default()),
        "Unsubscribe" => Request::Unsubscribe(UnsubscribeRequest::default()),
        "Sync" => Request::Sync(SyncRequest::default()),
        "MarkDelivered" => Request::MarkDelivered(MarkDeliveredRequest::default()),
        "MarkRead" => Request::MarkRead(MarkReadRequest::default()),
        "GetReceipts" => Request::GetReceipts(GetReceiptsRequest::default()),
        "Typing" => Request::Typing(TypingRequest::default()),
        "WatchPresence" => Request::WatchPresence(WatchPresenceRequest::default()),
        "UnwatchPresence" => Request::UnwatchPresence(UnwatchPresenceRequest::default()),
        "CallSignal" => Request::CallSignal(CallSignalRequest::default()),
        "BlockUser" => Request::BlockUser(BlockUserRequest::default()),
        "UnblockUser" => Request::UnblockUser(UnblockUserRequest::default()),
        "ListBlocked" => Request::ListBlocked(ListBlockedRequest::default()),
        "RegisterPushToken" => Request::RegisterPushToken(RegisterPushTokenRequest::default()),
        "UnregisterPushToken" => {
            Request::UnregisterPushToken(UnregisterPushTokenRequest::default())
        }
        "MuteRoom" => Request::MuteRoom(MuteRoomRequest::default()),
        "RestrictMember" => Request::RestrictMember(RestrictMemberRequest::default()),
        "GetEditHistory" => Request::GetEditHistory(GetEditHistoryRequest::default()),
        "ReportMessage" => Request::ReportMessage(ReportMessageRequest::default()),
        "ListReviews" => Request::ListReviews(ListReviewsRequest::default()),
        "ResolveReview" => Request::ResolveReview(ResolveReviewRequest::default()),
        "Search" => Request::Search(SearchRequest::default()),
        "SendContactRequest" => {
            Request::SendContactRequest(v1::SendContactRequestRequest::default())
        }
        "AcceptContactRequest" => {
            Request::AcceptContactRequest(v1::AcceptContactRequestRequest::default())
        }
        "DeclineContactRequest" => {
            Request::DeclineContactRequest(v1::DeclineContactRequestRequest::default())
        }
        "CancelContactRequest" => {
            Request::CancelContactRequest(v1::CancelContactRequestRequest::default())
        }
        "RemoveContact" => Request::RemoveContact(v1::RemoveContactRequest::default()),
        "ListContacts" => Request::ListContacts(v1::ListContactsRequest::default()),
        _ => return None,
    })
}

async fn every_request(ctx: Ctx) -> Check {
    let client = ctx.client(&ctx.user("alice")).await?;
    for name in CALLS {
        let request = empty_request(name)
            .ok_or_else(|| Failure::new(format!("a request for {name}"), "none built"))?;
        let want = request_name(&request);
        let result = within(&format!("the reply to {name}"), client.call(request)).await??;
        match &result {
            reply::Result::Error(err) => {
                ensure(
                    err.code() != ErrorCode::Unspecified,
                    format!("{name}: a defined error code"),
                    err,
                )?;
                ensure_retryable(err)?;
            }
            other => ensure_eq(
                &format!("{name}: result case"),
                want.clone(),
                result_name(other),
            )?,
        }
    }
    Ok(())
}

/// `max_in_flight_requests + 1` Sends in one write. Which of them a server refuses depends on
/// how fast it answers, so only the refused ones are checked: each RATE_LIMITED reply is
/// retryable with a non-zero `retry_after_ms`, and its message was not created.
async fn over_the_limit(ctx: Ctx) -> Check {
    let (client, session) = ctx.session(&ctx.user("alice")).await?;
    let room = super::group(&client, &[]).await?;
    let limit = session.limits.map_or(64, |l| l.max_in_flight_requests);
    let count = u64::from(limit) + 1;
    let frames: Vec<ClientFrame> = (1..=count)
        .map(|n| {
            let request = Request::Send(super::send_req(&room, &format!("ol-{n}"), "x"));
            frame(10_000 + n, request)
        })
        .collect();
    client.send_batch(&frames).await?;
    let mut created = Vec::new();
    for _ in 0..count {
        let reply = within("a reply to each Send", client.next_reply()).await??;
        match reply.result {
            Some(reply::Result::Send(_)) => {
                created.push(format!("ol-{}", reply.request_id - 10_000))
            }
            Some(reply::Result::Error(err)) if err.code() == ErrorCode::RateLimited => {
                ensure(
                    err.retryable && err.retry_after_ms > 0,
                    "RATE_LIMITED with retryable true and retry_after_ms > 0",
                    &err,
                )?;
            }
            other => {
                return Err(Failure::new(
                    "SendResponse or RATE_LIMITED",
                    format!("{other:?}"),
                ));
            }
        }
    }
    let (events, _) = super::subscribe_all(&client, &room, 0).await?;
    let mut posted: Vec<String> = events
        .iter()
        .filter_map(|e| match &e.kind {
            Some(v1::room_event::Kind::MessageCreated(m)) => Some(m.client_msg_id.clone()),
            _ => None,
        })
        .collect();
    posted.sort();
    created.sort();
    ensure_eq(
        "the messages created (only the Sends answered with SendResponse)",
        created,
        posted,
    )
}

async fn unknown_enum(ctx: Ctx) -> Check {
    let (alice, bob, carol) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let a = ctx.client(&alice).await?;
    let room = super::group(&a, &[&bob]).await?;
    let role = within(
        "the reply",
        a.set_role(v1::SetRoleRequest {
            room_id: room.clone(),
            user_id: bob,
            role: 99,
        }),
    )
    .await?;
    ensure_error(role, ErrorCode::Unsupported, Some("role"))?;
    let add = within(
        "the reply",
        a.add_members(v1::AddMembersRequest {
            room_id: room.clone(),
            user_ids: vec![carol],
            role: 99,
        }),
    )
    .await?;
    ensure_error(add, ErrorCode::Unsupported, Some("role"))?;
    let update = within(
        "the reply",
        a.update_room(v1::UpdateRoomRequest {
            room_id: room,
            history_visibility: Some(99),
            ..Default::default()
        }),
    )
    .await?;
    ensure_error(update, ErrorCode::Unsupported, Some("history_visibility"))
}

async fn id_syntax(ctx: Ctx) -> Check {
    let a = ctx.client(&ctx.user("alice")).await?;
    let prefix = ctx.user("AZaz09._:@-");
    let valid = format!("{prefix}{}", "x".repeat(128 - prefix.len()));
    let open = |user: String| a.open_direct(v1::OpenDirectRequest { user_id: user });
    within("OpenDirectResponse", open(valid.clone())).await??;
    for bad in [
        format!("{valid}y"),
        "has space".to_owned(),
        "slash/".to_owned(),
        "é".to_owned(),
        String::new(),
    ] {
        let result = within("the reply", open(bad)).await?;
        ensure_error(result, ErrorCode::InvalidArgument, Some("user_id"))?;
    }
    Ok(())
}
