//! Contacts (section 25), offered under the capability `contacts`. Without it only CO-01 runs
//! (the requests are UNSUPPORTED); the other cases skip with that reason.

use chatwire_protocol::v1::{self, ContactState, ErrorCode, event};

use super::case;
use crate::client::Client;
use crate::suite::check::{Check, Failure, ensure, ensure_eq, ensure_error, within};
use crate::suite::{Case, Ctx};

/// Why the cases other than CO-01 do not run on a server without the capability.
const NO_CONTACTS: &str = "the server does not offer `contacts`";

pub(super) fn cases() -> Vec<Case> {
    vec![
        case!(
            "CO-01",
            "contacts",
            Must,
            ["R-25.1.1", "R-5.7.2"],
            ["ListContacts"],
            None,
            false,
            "contact requests are answered exactly when `contacts` is listed, UNSUPPORTED otherwise",
            offered
        ),
        case!(
            "CO-02",
            "contacts",
            Must,
            ["R-25.2.2", "R-25.2.4", "R-25.3.1", "R-25.5.1"],
            ["SendContactRequest", "AcceptContactRequest", "ListContacts"],
            None,
            false,
            "a request and its accept reach both users' sessions, each from its side, and the lists",
            request_and_accept
        ),
        case!(
            "CO-03",
            "contacts",
            Must,
            ["R-25.2.5", "R-25.3.1"],
            [
                "DeclineContactRequest",
                "CancelContactRequest",
                "RemoveContact"
            ],
            None,
            false,
            "decline, cancel and remove end the relationship for both users; repeats succeed",
            endings
        ),
        case!(
            "CO-04",
            "contacts",
            Must,
            ["R-25.2.1", "R-25.2.3", "R-25.2.4"],
            ["SendContactRequest", "AcceptContactRequest", "BlockUser"],
            None,
            false,
            "a request to oneself is INVALID_ARGUMENT; one to a blocking user gets the usual reply and never arrives",
            no_probing
        ),
        case!(
            "CO-05",
            "contacts",
            Must,
            ["R-25.2.6"],
            ["SendContactRequest"],
            None,
            false,
            "contact requests past the advertised burst are RATE_LIMITED with retry_after_ms",
            rate_limited
        ),
    ]
}

/// A session for `user` on a server that offers contacts (with its limits), or a skip.
async fn session(ctx: &Ctx, user: &str) -> Check<(Client, v1::Limits)> {
    let (client, connected) = ctx.session(user).await?;
    if connected.capabilities.iter().any(|c| c == "contacts") {
        Ok((client, connected.limits.unwrap_or_default()))
    } else {
        Err(Failure::Skip(NO_CONTACTS.to_owned()))
    }
}

fn request(user: &str) -> v1::SendContactRequestRequest {
    v1::SendContactRequestRequest {
        user_id: user.to_owned(),
    }
}

fn state_of(contact: Option<&v1::Contact>) -> ContactState {
    contact.map_or(ContactState::Unspecified, v1::Contact::state)
}

/// The next ContactChanged of `client`: (other user, state, actor).
async fn next_change(client: &Client) -> Check<(String, ContactState, String)> {
    loop {
        let event = within("a ContactChanged event", client.next_event()).await??;
        if let Some(event::Kind::ContactChanged(changed)) = event.kind {
            let contact = changed.contact.unwrap_or_default();
            return Ok((contact.user_id.clone(), contact.state(), changed.actor));
        }
    }
}

async fn listed(client: &Client) -> Check<Vec<(String, ContactState)>> {
    let page = within(
        "ListContactsResponse",
        client.list_contacts(v1::ListContactsRequest::default()),
    )
    .await??;
    Ok(page
        .contacts
        .iter()
        .map(|c| (c.user_id.clone(), c.state()))
        .collect())
}

async fn offered(ctx: Ctx) -> Check {
    let (client, connected) = ctx.session(&ctx.user("alice")).await?;
    let result = within(
        "the reply",
        client.list_contacts(v1::ListContactsRequest::default()),
    )
    .await?;
    if connected.capabilities.iter().any(|c| c == "contacts") {
        ensure(result.is_ok(), "ListContacts answered (R-25.1.1)", &result)
    } else {
        ensure_error(result, ErrorCode::Unsupported, None)
    }
}

async fn request_and_accept(ctx: Ctx) -> Check {
    let (alice_id, bob_id) = (ctx.user("alice"), ctx.user("bob"));
    let (alice, _) = session(&ctx, &alice_id).await?;
    let alice_phone = ctx.client(&alice_id).await?;
    let (bob, _) = session(&ctx, &bob_id).await?;
    let sent = within(
        "SendContactRequestResponse",
        alice.send_contact_request(request(&bob_id)),
    )
    .await??;
    ensure_eq(
        "the sender's state",
        ContactState::Outgoing,
        state_of(sent.contact.as_ref()),
    )?;
    ensure_eq(
        "ContactChanged on the sender's other session",
        (bob_id.clone(), ContactState::Outgoing, alice_id.clone()),
        next_change(&alice_phone).await?,
    )?;
    ensure_eq(
        "ContactChanged on the receiver's session",
        (alice_id.clone(), ContactState::Incoming, alice_id.clone()),
        next_change(&bob).await?,
    )?;
    ensure_eq(
        "the receiver's list",
        vec![(alice_id.clone(), ContactState::Incoming)],
        listed(&bob).await?,
    )?;
    let accepted = within(
        "AcceptContactRequestResponse",
        bob.accept_contact_request(v1::AcceptContactRequestRequest {
            user_id: alice_id.clone(),
        }),
    )
    .await??;
    ensure_eq(
        "the accepter's state",
        ContactState::Accepted,
        state_of(accepted.contact.as_ref()),
    )?;
    ensure_eq(
        "ContactChanged on the sender's session after the accept",
        (bob_id.clone(), ContactState::Accepted, bob_id.clone()),
        next_change(&alice_phone).await?,
    )?;
    ensure_eq(
        "the sender's list",
        vec![(bob_id.clone(), ContactState::Accepted)],
        listed(&alice).await?,
    )?;
    let again = within(
        "SendContactRequestResponse",
        alice.send_contact_request(request(&bob_id)),
    )
    .await??;
    ensure_eq(
        "a repeated request says ACCEPTED (R-25.2.2)",
        ContactState::Accepted,
        state_of(again.contact.as_ref()),
    )
}

async fn endings(ctx: Ctx) -> Check {
    let (alice_id, bob_id, carol_id) = (ctx.user("alice"), ctx.user("bob"), ctx.user("carol"));
    let (alice, _) = session(&ctx, &alice_id).await?;
    let bob = ctx.client(&bob_id).await?;
    let carol = ctx.client(&carol_id).await?;
    for user in [&bob_id, &carol_id] {
        within(
            "SendContactRequestResponse",
            alice.send_contact_request(request(user)),
        )
        .await??;
    }
    for _ in 0..2 {
        within(
            "DeclineContactRequestResponse",
            bob.decline_contact_request(v1::DeclineContactRequestRequest {
                user_id: alice_id.clone(),
            }),
        )
        .await??;
        within(
            "CancelContactRequestResponse",
            alice.cancel_contact_request(v1::CancelContactRequestRequest {
                user_id: carol_id.clone(),
            }),
        )
        .await??;
    }
    ensure_eq(
        "the sender's list after decline and cancel",
        vec![],
        listed(&alice).await?,
    )?;
    ensure_eq("the decliner's list", vec![], listed(&bob).await?)?;
    ensure_eq(
        "the list of the one whose request was cancelled",
        vec![],
        listed(&carol).await?,
    )?;
    within(
        "SendContactRequestResponse",
        alice.send_contact_request(request(&bob_id)),
    )
    .await??;
    within(
        "AcceptContactRequestResponse",
        bob.accept_contact_request(v1::AcceptContactRequestRequest {
            user_id: alice_id.clone(),
        }),
    )
    .await??;
    for _ in 0..2 {
        within(
            "RemoveContactResponse",
            bob.remove_contact(v1::RemoveContactRequest {
                user_id: alice_id.clone(),
            }),
        )
        .await??;
    }
    ensure_eq(
        "the other user's list after a removal",
        vec![],
        listed(&alice).await?,
    )?;
    ensure_eq("the remover's list", vec![], listed(&bob).await?)
}

async fn no_probing(ctx: Ctx) -> Check {
    let (alice_id, carol_id) = (ctx.user("alice"), ctx.user("carol"));
    let (alice, _) = session(&ctx, &alice_id).await?;
    let carol = ctx.client(&carol_id).await?;
    let to_self = within("the reply", alice.send_contact_request(request(&alice_id))).await?;
    ensure_error(to_self, ErrorCode::InvalidArgument, Some("user_id"))?;
    within(
        "BlockUserResponse",
        carol.block_user(v1::BlockUserRequest {
            user_id: alice_id.clone(),
        }),
    )
    .await??;
    let blocked = within("the reply", alice.send_contact_request(request(&carol_id))).await??;
    let unknown = within(
        "the reply",
        alice.send_contact_request(request(&ctx.user("nobody"))),
    )
    .await??;
    ensure_eq(
        "the same reply for a blocking and an unknown user (R-25.2.3)",
        (ContactState::Outgoing, ContactState::Outgoing),
        (
            state_of(blocked.contact.as_ref()),
            state_of(unknown.contact.as_ref()),
        ),
    )?;
    ensure_eq("the blocking user's list", vec![], listed(&carol).await?)?;
    let accept = within(
        "the reply",
        carol.accept_contact_request(v1::AcceptContactRequestRequest {
            user_id: alice_id.clone(),
        }),
    )
    .await?;
    ensure_error(accept, ErrorCode::NotFound, Some("user_id"))
}

async fn rate_limited(ctx: Ctx) -> Check {
    let (alice, limits) = session(&ctx, &ctx.user("alice")).await?;
    let burst = limits.contact_requests_burst;
    if burst == 0 || burst > 200 {
        return Err(Failure::Skip(format!(
            "contact_requests_burst {burst}: too large to exhaust in a case"
        )));
    }
    // The burst, then a few more (a token may come back while they are sent).
    for n in 0..burst + 5 {
        let result = within(
            "the reply",
            alice.send_contact_request(request(&ctx.user("target"))),
        )
        .await?;
        match result {
            Ok(_) if n < burst + 4 => {}
            Ok(ok) => {
                return Err(Failure::new(
                    format!("RATE_LIMITED within {} requests", burst + 5),
                    format!("{ok:?}"),
                ));
            }
            Err(crate::client::ClientError::Server(err))
                if err.code() == ErrorCode::RateLimited =>
            {
                return ensure(
                    err.retry_after_ms > 0 && n >= burst,
                    "RATE_LIMITED after the burst, with retry_after_ms",
                    &err,
                );
            }
            Err(other) => return Err(other.into()),
        }
    }
    Ok(())
}
