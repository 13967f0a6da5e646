//! Contacts (docs/protocol.md §25, issue 22): requests, their answers, removal and the list.
//! Every change goes through [`crate::contacts::change`]: both users' sessions get
//! `ContactChanged`, and the cached accepted ids of both are invalidated when needed.

use chatwire_protocol::v1;
use v1::reply::Result as Reply;

use super::{Ctx, after_user};
use crate::chat::contacts::{ContactOp, ContactUpdate, to_contact};
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;
use crate::chat::validate;

/// ListContacts' page size when `limit` is 0.
const DEFAULT_PAGE: usize = 100;

/// The other user of a request: a valid id that is not the caller.
fn other(ctx: &Ctx<'_>, raw: &str) -> Result<UserId, ChatError> {
    let other = validate::user_id("user_id", raw)?;
    if &other == ctx.user {
        return Err(ChatError::invalid(
            "user_id",
            "a contact must be another user",
        ));
    }
    Ok(other)
}

async fn apply(ctx: &Ctx<'_>, other: &UserId, op: ContactOp) -> Result<ContactUpdate, ChatError> {
    crate::contacts::change(ctx.services, ctx.user, other, op).await
}

pub(super) async fn send_request(
    ctx: Ctx<'_>,
    r: v1::SendContactRequestRequest,
) -> Result<Reply, ChatError> {
    let other = other(&ctx, &r.user_id)?;
    ctx.services
        .rate_limit(
            "contact-requests",
            ctx.user,
            ctx.services.rates.contact_requests,
        )
        .await?;
    // with a block either way the request stays on the caller's side; the reply is
    // the same as for anyone else.
    let deliver = !ctx.services.store.either_blocked(ctx.user, &other).await?;
    let update = apply(&ctx, &other, ContactOp::Request { deliver }).await?;
    Ok(Reply::SendContactRequest(v1::SendContactRequestResponse {
        contact: Some(to_contact(other.as_str(), update.actor_after)),
    }))
}

pub(super) async fn accept_request(
    ctx: Ctx<'_>,
    r: v1::AcceptContactRequestRequest,
) -> Result<Reply, ChatError> {
    let other = other(&ctx, &r.user_id)?;
    let update = apply(&ctx, &other, ContactOp::Accept).await?;
    if update
        .actor_after
        .is_none_or(|row| row.state != v1::ContactState::Accepted)
    {
        // no request from that user (never sent, cancelled, or not delivered).
        return Err(ChatError::MessageNotFound { field: "user_id" });
    }
    Ok(Reply::AcceptContactRequest(
        v1::AcceptContactRequestResponse {
            contact: Some(to_contact(other.as_str(), update.actor_after)),
        },
    ))
}

pub(super) async fn decline_request(
    ctx: Ctx<'_>,
    r: v1::DeclineContactRequestRequest,
) -> Result<Reply, ChatError> {
    let other = other(&ctx, &r.user_id)?;
    apply(&ctx, &other, ContactOp::Decline).await?;
    Ok(Reply::DeclineContactRequest(
        v1::DeclineContactRequestResponse {},
    ))
}

pub(super) async fn cancel_request(
    ctx: Ctx<'_>,
    r: v1::CancelContactRequestRequest,
) -> Result<Reply, ChatError> {
    let other = other(&ctx, &r.user_id)?;
    apply(&ctx, &other, ContactOp::Cancel).await?;
    Ok(Reply::CancelContactRequest(
        v1::CancelContactRequestResponse {},
    ))
}

pub(super) async fn remove(ctx: Ctx<'_>, r: v1::RemoveContactRequest) -> Result<Reply, ChatError> {
    let other = other(&ctx, &r.user_id)?;
    apply(&ctx, &other, ContactOp::Remove).await?;
    Ok(Reply::RemoveContact(v1::RemoveContactResponse {}))
}

pub(super) async fn list(ctx: Ctx<'_>, r: v1::ListContactsRequest) -> Result<Reply, ChatError> {
    let state = match v1::ContactState::try_from(r.state) {
        Ok(v1::ContactState::Unspecified) => None,
        Ok(state) => Some(state),
        Err(_) => return Err(ChatError::UnknownValue { field: "state" }),
    };
    let after = after_user(&r.after_user_id)?;
    let limit = ctx.services.page_limit(r.limit, DEFAULT_PAGE);
    let mut rows = ctx
        .services
        .store
        .list_contacts(ctx.user, state, after.as_ref(), limit + 1)
        .await?;
    let has_more = rows.len() > limit;
    rows.truncate(limit);
    let contacts = rows
        .into_iter()
        .map(|(user, row)| to_contact(user.as_str(), Some(row)))
        .collect();
    Ok(Reply::ListContacts(v1::ListContactsResponse {
        contacts,
        has_more,
    }))
}
