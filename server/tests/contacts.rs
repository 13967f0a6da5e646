//! Contacts (issue 22, docs/protocol.md §25) over real sessions: requests and their answers,
//! the events both sides' sessions get, the paged list, bad input, the per-user request rate
//! limit, presence of contacts watched from Connect, and the `contacts` presence visibility.
//!
//! ```sh
//! cargo test -p chatwire-server --test contacts
//! ```

mod support;

use chatwire_conformance::client::Client;
use chatwire_protocol::v1;
use support::server::{TestServer, code_of, refused, wait_for, within};
use v1::ContactState::{Accepted, Incoming, Outgoing, Unspecified};

fn req(user: &str) -> v1::SendContactRequestRequest {
    v1::SendContactRequestRequest {
        user_id: user.to_owned(),
    }
}

fn accept(user: &str) -> v1::AcceptContactRequestRequest {
    v1::AcceptContactRequestRequest {
        user_id: user.to_owned(),
    }
}

/// The next ContactChanged event of `client`: (other user, state, actor).
async fn next_change(client: &Client) -> (String, v1::ContactState, String) {
    let (_, changed) = wait_for(client, |kind| match kind {
        v1::event::Kind::ContactChanged(changed) => Some(changed.clone()),
        _ => None,
    })
    .await;
    let contact = changed.contact.expect("contact");
    (contact.user_id.clone(), contact.state(), changed.actor)
}

/// The next Presence event of `client` about `user`.
async fn next_presence_of(client: &Client, user: &str) -> v1::Presence {
    let (_, presence) = wait_for(client, |kind| match kind {
        v1::event::Kind::Presence(p) if p.user_id == user => Some(p.clone()),
        _ => None,
    })
    .await;
    presence
}

async fn list(client: &Client, state: v1::ContactState) -> Vec<(String, v1::ContactState)> {
    let page = client
        .list_contacts(v1::ListContactsRequest {
            state: state as i32,
            ..Default::default()
        })
        .await
        .expect("list");
    page.contacts
        .iter()
        .map(|c| (c.user_id.clone(), c.state()))
        .collect()
}

fn pair(user: &str, state: v1::ContactState) -> (String, v1::ContactState) {
    (user.to_owned(), state)
}

#[tokio::test]
async fn a_request_accepted_reaches_both_sides_sessions_and_the_list() {
    let server = TestServer::start().await;
    let connected = server.open().await;
    let response = connected
        .connect(&server.token("alice"))
        .await
        .expect("connect");
    assert!(
        response.capabilities.iter().any(|c| c == "contacts"),
        "{:?}",
        response.capabilities
    );
    let limits = response.limits.expect("limits");
    assert_eq!(
        (
            limits.contact_requests_per_minute,
            limits.contact_requests_burst
        ),
        (1_000_000, 100_000),
        "the configured rate is advertised"
    );
    let (alice, alice_phone, bob) = (
        connected,
        server.client("alice").await,
        server.client("bob").await,
    );
    let sent = alice.send_contact_request(req("bob")).await.expect("send");
    assert_eq!(sent.contact.expect("contact").state(), Outgoing);
    // Every session of each side hears of it, from its own side.
    assert_eq!(
        next_change(&alice_phone).await,
        ("bob".into(), Outgoing, "alice".into())
    );
    assert_eq!(
        next_change(&bob).await,
        ("alice".into(), Incoming, "alice".into())
    );
    assert_eq!(list(&bob, Unspecified).await, [pair("alice", Incoming)]);

    let accepted = bob
        .accept_contact_request(accept("alice"))
        .await
        .expect("accept");
    assert_eq!(accepted.contact.expect("contact").state(), Accepted);
    for client in [&alice, &alice_phone] {
        // The sender's first event (Outgoing) came first on this session, then the accept.
        let change = loop {
            let change = next_change(client).await;
            if change.1 == Accepted {
                break change;
            }
        };
        assert_eq!(change, ("bob".into(), Accepted, "bob".into()));
    }
    assert_eq!(list(&alice, Accepted).await, [pair("bob", Accepted)]);
    assert_eq!(list(&alice, Incoming).await, []);

    // A repeat changes nothing and says where things stand.
    let again = alice.send_contact_request(req("bob")).await.expect("again");
    assert_eq!(again.contact.expect("contact").state(), Accepted);

    alice
        .remove_contact(v1::RemoveContactRequest {
            user_id: "bob".into(),
        })
        .await
        .expect("remove");
    // Bob's own accept came to his session too, before the removal.
    assert_eq!(
        next_change(&bob).await,
        ("alice".into(), Accepted, "bob".into())
    );
    assert_eq!(
        next_change(&bob).await,
        ("alice".into(), Unspecified, "alice".into())
    );
    assert_eq!(list(&bob, Unspecified).await, []);
    assert_eq!(list(&alice, Unspecified).await, []);
    server.stop().await;
}

#[tokio::test]
async fn decline_cancel_and_paging() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    for user in ["u1", "u2", "u3", "u4", "u5"] {
        alice.send_contact_request(req(user)).await.expect("send");
    }
    let u1 = server.client("u1").await;
    u1.decline_contact_request(v1::DeclineContactRequestRequest {
        user_id: "alice".into(),
    })
    .await
    .expect("decline");
    u1.decline_contact_request(v1::DeclineContactRequestRequest {
        user_id: "alice".into(),
    })
    .await
    .expect("a repeat succeeds");
    alice
        .cancel_contact_request(v1::CancelContactRequestRequest {
            user_id: "u2".into(),
        })
        .await
        .expect("cancel");
    let u2 = server.client("u2").await;
    assert_eq!(list(&u2, Unspecified).await, []);
    assert_eq!(
        code_of(u2.accept_contact_request(accept("alice")).await),
        v1::ErrorCode::NotFound,
        "a cancelled request cannot be accepted"
    );
    let first = alice
        .list_contacts(v1::ListContactsRequest {
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("page");
    let ids = |page: &v1::ListContactsResponse| {
        page.contacts
            .iter()
            .map(|c| c.user_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        (ids(&first), first.has_more),
        (vec!["u3".into(), "u4".into()], true)
    );
    let second = alice
        .list_contacts(v1::ListContactsRequest {
            after_user_id: "u4".into(),
            limit: 2,
            ..Default::default()
        })
        .await
        .expect("page");
    assert_eq!((ids(&second), second.has_more), (vec!["u5".into()], false));
    server.stop().await;
}

#[tokio::test]
async fn bad_input_and_blocks_reveal_nothing() {
    let server = TestServer::start_with(|config| {
        config.limits.rate_contact_requests = chatwire_server::config::RateLimit {
            rate_per_minute: 1,
            burst: 3,
        };
    })
    .await;
    let alice = server.client("alice").await;
    let error = refused(alice.send_contact_request(req("alice")).await);
    assert_eq!(
        (error.code(), error.field.as_str()),
        (v1::ErrorCode::InvalidArgument, "user_id")
    );
    let error = refused(alice.send_contact_request(req("not a user id")).await);
    assert_eq!(error.code(), v1::ErrorCode::InvalidArgument);
    let error = refused(
        alice
            .list_contacts(v1::ListContactsRequest {
                state: 99,
                ..Default::default()
            })
            .await,
    );
    assert_eq!(
        (error.code(), error.field.as_str()),
        (v1::ErrorCode::Unsupported, "state")
    );

    // Carol blocks alice: alice's request looks like any other, and never reaches carol.
    let carol = server.client("carol").await;
    carol
        .block_user(v1::BlockUserRequest {
            user_id: "alice".into(),
        })
        .await
        .expect("block");
    let to_carol = alice
        .send_contact_request(req("carol"))
        .await
        .expect("send");
    let to_nobody = alice
        .send_contact_request(req("nobody"))
        .await
        .expect("send");
    let state = |r: v1::SendContactRequestResponse| r.contact.expect("contact").state();
    assert_eq!((state(to_carol), state(to_nobody)), (Outgoing, Outgoing));
    assert_eq!(list(&carol, Unspecified).await, []);
    assert_eq!(
        code_of(carol.accept_contact_request(accept("alice")).await),
        v1::ErrorCode::NotFound
    );
    // The fourth request within the burst of 3 is refused, with a time to retry (refused
    // requests did not count: they were checked first).
    alice
        .send_contact_request(req("dave"))
        .await
        .expect("third");
    let error = refused(alice.send_contact_request(req("erin")).await);
    assert_eq!(error.code(), v1::ErrorCode::RateLimited);
    assert!(error.retry_after_ms > 0);
    server.stop().await;
}

#[tokio::test]
async fn contacts_presence_is_watched_from_connect_and_on_accept() {
    let server = TestServer::start().await;
    let alice = server.client("alice").await;
    let bob = server.client("bob").await;
    alice.send_contact_request(req("bob")).await.expect("send");
    bob.accept_contact_request(accept("alice"))
        .await
        .expect("accept");
    // Accepted mid-session: each side now watches the other and is told its presence.
    assert!(next_presence_of(&alice, "bob").await.online);
    assert!(next_presence_of(&bob, "alice").await.online);

    // A new session of alice watches bob from Connect, without WatchPresence.
    let alice_laptop = server.client("alice").await;
    assert!(next_presence_of(&alice_laptop, "bob").await.online);
    bob.close(4012, "bye").await;
    let gone = next_presence_of(&alice_laptop, "bob").await;
    assert!(!gone.online && gone.last_seen_ms > 0, "{gone:?}");
    let back = server.client("bob").await;
    assert!(next_presence_of(&alice_laptop, "bob").await.online);

    // Removed: no more presence of bob; the next presence alice's laptop gets is carol's,
    // whom it watches by hand after bob went and came back.
    back.remove_contact(v1::RemoveContactRequest {
        user_id: "alice".into(),
    })
    .await
    .expect("remove");
    next_change(&alice_laptop).await;
    back.close(4012, "bye").await;
    alice_laptop
        .watch_presence(v1::WatchPresenceRequest {
            user_ids: vec!["carol".into()],
            room_id: String::new(),
        })
        .await
        .expect("watch");
    let _carol = server.client("carol").await;
    let (before, presence) = wait_for(&alice_laptop, |kind| match kind {
        v1::event::Kind::Presence(p) => Some(p.clone()),
        _ => None,
    })
    .await;
    assert_eq!(presence.user_id, "carol", "{before:?}");
    server.stop().await;
}

#[tokio::test]
async fn contacts_visibility_shows_presence_to_contacts_only() {
    let server = TestServer::start_with(|config| {
        config.contacts.presence_visibility = chatwire_server::config::PresenceVisibility::Contacts;
    })
    .await;
    let alice = server.client("alice").await;
    let _bob = server.client("bob").await;
    let _carol = server.client("carol").await;
    alice.send_contact_request(req("bob")).await.expect("send");
    _bob.accept_contact_request(accept("alice"))
        .await
        .expect("accept");
    let seen = within(alice.watch_presence(v1::WatchPresenceRequest {
        user_ids: vec!["bob".into(), "carol".into(), "alice".into()],
        room_id: String::new(),
    }))
    .await
    .expect("watch");
    let online: Vec<(String, bool, i64)> = seen
        .presences
        .iter()
        .map(|p| (p.user_id.clone(), p.online, p.last_seen_ms))
        .collect();
    assert!(online[0].1, "a contact is seen: {online:?}");
    assert_eq!(
        online[1],
        ("carol".to_owned(), false, 0),
        "a non-contact looks offline, never seen"
    );
    assert!(online[2].1, "oneself is seen");
    server.stop().await;
}

#[tokio::test]
async fn erasing_a_user_ends_their_contacts_and_requests_for_everyone() {
    let server = TestServer::start().await;
    let (alice, bob, carol) = (
        server.client("alice").await,
        server.client("bob").await,
        server.client("carol").await,
    );
    alice.send_contact_request(req("bob")).await.expect("send");
    bob.accept_contact_request(accept("alice"))
        .await
        .expect("accept");
    carol.send_contact_request(req("bob")).await.expect("send");
    bob.send_contact_request(req("dave")).await.expect("send");
    let (status, erased) = server
        .admin(reqwest::Method::POST, "/admin/users/bob/erase")
        .await;
    assert_eq!(status, 200, "{erased}");
    assert_eq!(erased["contacts_removed"], 3, "{erased}");
    // Alice hears that bob is no longer her contact; nobody lists bob any more.
    loop {
        let change = next_change(&alice).await;
        if change.1 == Unspecified {
            assert_eq!(change, ("bob".into(), Unspecified, "bob".into()));
            break;
        }
    }
    assert_eq!(list(&alice, Unspecified).await, []);
    assert_eq!(list(&carol, Unspecified).await, []);
    let dave = server.client("dave").await;
    assert_eq!(list(&dave, Unspecified).await, []);
    server.stop().await;
}
