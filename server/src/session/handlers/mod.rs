//! Request handlers: one file per request family. Each handler parses its request into typed
//! values (errors name the field), checks what the gateway can check early (membership), and
//! either asks the room's writer (changes) or reads the store (queries).

mod account;
mod calls;
mod contacts;
mod messages;
mod moderation;
mod reads;
mod receipts;
mod rooms;
mod search;

use chatwire_protocol::v1;
use v1::client_frame::Request;
use v1::reply::Result as Reply;

use super::core::SessionCore;
use super::services::Services;
use crate::backend::fanout::SessionKey;
use crate::chat::command::{Outcome, RoomCommand, RoomOp};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

/// Who is asking, on which session.
#[derive(Debug, Clone, Copy)]
pub struct Ctx<'a> {
    /// The backends.
    pub services: &'a Services,
    /// The session's user.
    pub user: &'a UserId,
    /// The session's key.
    pub session: SessionKey,
    /// The request's trace id.
    pub trace_id: &'a str,
}

/// A room change ready for its writer: the command, and how the writer's outcome becomes the
/// reply.
#[derive(Debug)]
pub struct Prepared {
    command: RoomCommand,
    reply: fn(Outcome) -> Result<Reply, ChatError>,
    /// The moderation stage flagged the content (crate::moderation).
    flagged: Option<crate::chat::command::Verdict>,
}

impl Prepared {
    /// Hands the command to its room's writer and waits for the reply. The command takes its
    /// place in the room's order on the first poll (see [`crate::backend::pipeline::Pipeline`]).
    pub async fn run(self, services: &Services) -> Result<Reply, ChatError> {
        let flagged = self.flagged.map(|verdict| {
            let edited = match &self.command.op {
                RoomOp::Edit { target_seq, .. } => Some(*target_seq),
                _ => None,
            };
            let (room, actor) = (self.command.room.clone(), self.command.actor.clone());
            (room, actor, edited, verdict)
        });
        let outcome = services.pipeline.execute(self.command).await?;
        if let Some((room, actor, edited, verdict)) = flagged {
            // The review item is the message's: a flagged edit flags the message it edits.
            let seq = match (&outcome, edited) {
                (Outcome::Sent(sent), _) if !sent.duplicate => sent.seq,
                (Outcome::Edited { seq, .. }, Some(target)) if *seq != 0 => target,
                _ => 0,
            };
            if seq != 0 {
                crate::moderation::review::record_flag(services, &room, seq, &actor, &verdict)
                    .await;
            }
        }
        (self.reply)(outcome)
    }
}

impl Ctx<'_> {
    /// Runs a room command on the room's writer.
    async fn write(&self, room: RoomId, op: RoomOp) -> Result<Outcome, ChatError> {
        let command = self.command(room, op);
        self.services.pipeline.execute(command).await
    }

    fn command(&self, room: RoomId, op: RoomOp) -> RoomCommand {
        RoomCommand {
            room,
            actor: self.user.clone(),
            op,
            trace_id: self.trace_id.to_owned(),
            privileged: false,
        }
    }

    fn prepare(
        &self,
        room: RoomId,
        op: RoomOp,
        reply: fn(Outcome) -> Result<Reply, ChatError>,
    ) -> Prepared {
        Prepared {
            command: self.command(room, op),
            reply,
            flagged: None,
        }
    }

    /// The caller's membership, or NotFound.
    async fn member(&self, room: &RoomId) -> Result<v1::Member, ChatError> {
        self.services
            .store
            .member(room, self.user)
            .await?
            .ok_or(ChatError::NotFound)
    }
}

/// Parses the `after_user_id` cursor of a member page (empty: from the start).
fn after_user(raw: &str) -> Result<Option<UserId>, ChatError> {
    match raw {
        "" => Ok(None),
        raw => crate::chat::validate::user_id("after_user_id", raw).map(Some),
    }
}

/// Parses a room id field.
fn room_id(raw: &str) -> Result<RoomId, ChatError> {
    RoomId::parse(raw).map_err(|_| ChatError::NotFound)
}

/// Whether a request is a message change (Send, Edit, Delete, React): prepared with
/// [`prepare`], then run while the session goes on with its later requests.
pub fn is_message_change(request: &Request) -> bool {
    matches!(
        request,
        Request::Send(_) | Request::Edit(_) | Request::Delete(_) | Request::React(_)
    )
}

/// Prepares a message change (see [`is_message_change`]); anything else is an internal error.
pub async fn prepare(ctx: Ctx<'_>, request: Request) -> Result<Prepared, ChatError> {
    match request {
        Request::Send(r) => messages::send(ctx, r).await,
        Request::Edit(r) => messages::edit(ctx, r).await,
        Request::Delete(r) => messages::delete(ctx, r),
        Request::React(r) => messages::react(ctx, r).await,
        _ => Err(ChatError::Internal),
    }
}

/// Executes one request of a connected session (everything but Connect and Refresh).
pub async fn execute(
    ctx: Ctx<'_>,
    core: &mut SessionCore,
    request: Request,
) -> Result<Reply, ChatError> {
    match request {
        Request::Connect(_) | Request::Refresh(_) => Err(ChatError::Internal),
        Request::Ping(ping) => Ok(Reply::Ping(v1::PingResponse {
            client_time_ms: ping.client_time_ms,
            server_time_ms: ctx.services.clock.now_ms(),
        })),
        Request::CreateGroup(r) => rooms::create_group(ctx, r).await,
        Request::OpenDirect(r) => rooms::open_direct(ctx, r).await,
        Request::GetRoom(r) => rooms::get_room(ctx, r).await,
        Request::UpdateRoom(r) => rooms::update_room(ctx, r).await,
        Request::ListMembers(r) => rooms::list_members(ctx, r).await,
        Request::AddMembers(r) => rooms::add_members(ctx, r).await,
        Request::RemoveMember(r) => rooms::remove_member(ctx, r).await,
        Request::SetRole(r) => rooms::set_role(ctx, r).await,
        Request::LeaveRoom(r) => rooms::leave_room(ctx, r).await,
        request
        @ (Request::Send(_) | Request::Edit(_) | Request::Delete(_) | Request::React(_)) => {
            prepare(ctx, request).await?.run(ctx.services).await
        }
        Request::History(r) => reads::history(ctx, r).await,
        Request::Subscribe(r) => reads::subscribe(ctx, core, r).await,
        Request::Unsubscribe(r) => reads::unsubscribe(ctx, core, r).await,
        Request::Sync(r) => reads::sync(ctx, r).await,
        Request::MarkDelivered(r) => receipts::mark_delivered(ctx, r).await,
        Request::MarkRead(r) => receipts::mark_read(ctx, r).await,
        Request::GetReceipts(r) => receipts::get_receipts(ctx, r).await,
        Request::Typing(r) => calls::typing(ctx, core, r).await,
        Request::WatchPresence(r) => calls::watch_presence(ctx, r).await,
        Request::UnwatchPresence(r) => calls::unwatch_presence(ctx, r).await,
        Request::CallSignal(r) => calls::call_signal(ctx, r).await,
        Request::BlockUser(r) => account::block(ctx, r).await,
        Request::UnblockUser(r) => account::unblock(ctx, r).await,
        Request::ListBlocked(_) => account::list_blocked(ctx).await,
        Request::RegisterPushToken(r) => account::register_push_token(ctx, r).await,
        Request::UnregisterPushToken(r) => account::unregister_push_token(ctx, r).await,
        Request::MuteRoom(r) => account::mute_room(ctx, r).await,
        Request::RestrictMember(r) => moderation::restrict_member(ctx, r).await,
        Request::GetEditHistory(r) => moderation::get_edit_history(ctx, r).await,
        Request::ReportMessage(r) => moderation::report_message(ctx, r).await,
        Request::ListReviews(r) => moderation::list_reviews(ctx, r).await,
        Request::ResolveReview(r) => moderation::resolve_review(ctx, r).await,
        Request::Search(r) => search::search(ctx, r).await,
        Request::SendContactRequest(r) => contacts::send_request(ctx, r).await,
        Request::AcceptContactRequest(r) => contacts::accept_request(ctx, r).await,
        Request::DeclineContactRequest(r) => contacts::decline_request(ctx, r).await,
        Request::CancelContactRequest(r) => contacts::cancel_request(ctx, r).await,
        Request::RemoveContact(r) => contacts::remove(ctx, r).await,
        Request::ListContacts(r) => contacts::list(ctx, r).await,
    }
}
