//! The behavioural suite of the contact store (issue 22, `Contacts` in
//! server/src/backend/store.rs), run against every store with the store suite's factory:
//!
//! ```ignore
//! support::contacts_suite::contacts_suite_tests!(factory);
//! ```

use chatwire_protocol::v1::ContactState::{self, Accepted, Incoming, Outgoing};
use chatwire_server::backend::store::Store;
use chatwire_server::chat::contacts::{ContactOp, ContactRow};
use chatwire_server::chat::ids::UserId;

use super::store_suite::StoreFactory;

/// One `#[tokio::test]`, `contacts_suite`, running every behaviour in turn on one `$factory()`
/// (one store, one CQL keyspace: each behaviour names its users apart), so the suite costs one
/// store set-up.
#[allow(unused_macros)]
macro_rules! contacts_suite_tests {
    ($factory:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn contacts_suite() {
            let factory = $factory();
            $crate::support::contacts_suite::run_all(&factory).await;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use contacts_suite_tests;

const T: i64 = 1_700_000_000_000;

/// Every behaviour, in turn, on one factory.
pub async fn run_all(factory: &dyn StoreFactory) {
    contact_request_accept_and_remove(factory, "a").await;
    undelivered_requests_stay_with_the_sender(factory, "b").await;
    contact_operations_are_idempotent(factory, "c").await;
    decline_and_cancel_clear_both_sides(factory, "d").await;
    contacts_page_by_id_and_state(factory, "e").await;
    contacts_are_durable_across_reopen(factory, "f").await;
}

/// `name` in the namespace of one behaviour.
fn named(ns: &str, name: &str) -> UserId {
    UserId::parse(&format!("{ns}.{name}")).expect("user id")
}

fn row(state: ContactState, since_ms: i64) -> Option<ContactRow> {
    Some(ContactRow { state, since_ms })
}

async fn rows(
    store: &dyn Store,
    a: &UserId,
    b: &UserId,
) -> (Option<ContactRow>, Option<ContactRow>) {
    (
        store.contact(a, b).await.expect("contact"),
        store.contact(b, a).await.expect("contact"),
    )
}

const SEND: ContactOp = ContactOp::Request { deliver: true };

pub async fn contact_request_accept_and_remove(factory: &dyn StoreFactory, ns: &str) {
    let user = |name: &str| named(ns, name);
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    let update = store
        .update_contact(&alice, &bob, SEND, T)
        .await
        .expect("send");
    assert_eq!(update.actor_before, None);
    assert_eq!(update.actor_after, row(Outgoing, T));
    assert_eq!(update.other_after, row(Incoming, T));
    assert_eq!(
        rows(store.as_ref(), &alice, &bob).await,
        (row(Outgoing, T), row(Incoming, T))
    );
    assert!(
        store
            .accepted_contacts(&alice)
            .await
            .expect("accepted")
            .is_empty()
    );

    let update = store
        .update_contact(&bob, &alice, ContactOp::Accept, T + 5)
        .await
        .expect("accept");
    assert_eq!(update.actor_before, row(Incoming, T));
    assert_eq!(update.actor_after, row(Accepted, T + 5));
    assert_eq!(update.other_after, row(Accepted, T + 5));
    assert_eq!(
        store.accepted_contacts(&alice).await.expect("accepted"),
        vec![bob.clone()]
    );
    assert_eq!(
        store.accepted_contacts(&bob).await.expect("accepted"),
        vec![alice.clone()]
    );

    let update = store
        .update_contact(&alice, &bob, ContactOp::Remove, T + 9)
        .await
        .expect("remove");
    assert_eq!((update.actor_after, update.other_after), (None, None));
    assert_eq!(rows(store.as_ref(), &alice, &bob).await, (None, None));
    assert!(
        store
            .accepted_contacts(&bob)
            .await
            .expect("accepted")
            .is_empty()
    );
}

pub async fn undelivered_requests_stay_with_the_sender(factory: &dyn StoreFactory, ns: &str) {
    let user = |name: &str| named(ns, name);
    let store = factory.open().await;
    let (alice, mallory) = (user("alice"), user("mallory"));
    let hidden = ContactOp::Request { deliver: false };
    let update = store
        .update_contact(&mallory, &alice, hidden, T)
        .await
        .expect("send");
    assert_eq!(update.actor_after, row(Outgoing, T));
    assert_eq!(update.other_after, None);
    assert_eq!(
        rows(store.as_ref(), &mallory, &alice).await,
        (row(Outgoing, T), None)
    );
    // Alice has nothing to accept.
    let update = store
        .update_contact(&alice, &mallory, ContactOp::Accept, T + 1)
        .await
        .expect("accept");
    assert_eq!(
        (update.actor_after, update.other_after),
        (None, row(Outgoing, T))
    );
    assert!(
        store
            .list_contacts(&alice, None, None, 10)
            .await
            .expect("list")
            .is_empty()
    );
}

pub async fn contact_operations_are_idempotent(factory: &dyn StoreFactory, ns: &str) {
    let user = |name: &str| named(ns, name);
    let store = factory.open().await;
    let (alice, bob) = (user("alice"), user("bob"));
    store
        .update_contact(&alice, &bob, SEND, T)
        .await
        .expect("send");
    let again = store
        .update_contact(&alice, &bob, SEND, T + 3)
        .await
        .expect("send again");
    assert!(
        !again.actor_changed() && !again.other_changed(),
        "{again:?}"
    );
    assert_eq!(
        again.actor_after,
        row(Outgoing, T),
        "the first time is kept"
    );
    // Bob asking back accepts.
    let crossed = store
        .update_contact(&bob, &alice, SEND, T + 4)
        .await
        .expect("cross");
    assert_eq!(
        (crossed.actor_after, crossed.other_after),
        (row(Accepted, T + 4), row(Accepted, T + 4))
    );
    for op in [
        SEND,
        ContactOp::Accept,
        ContactOp::Decline,
        ContactOp::Cancel,
    ] {
        let update = store
            .update_contact(&alice, &bob, op, T + 6)
            .await
            .expect("repeat");
        assert!(
            !update.actor_changed() && !update.other_changed(),
            "{op:?}: {update:?}"
        );
    }
    store
        .update_contact(&bob, &alice, ContactOp::Remove, T + 7)
        .await
        .expect("remove");
    let repeat = store
        .update_contact(&bob, &alice, ContactOp::Remove, T + 8)
        .await
        .expect("remove again");
    assert_eq!(repeat, Default::default());
}

pub async fn decline_and_cancel_clear_both_sides(factory: &dyn StoreFactory, ns: &str) {
    let user = |name: &str| named(ns, name);
    let store = factory.open().await;
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    store
        .update_contact(&alice, &bob, SEND, T)
        .await
        .expect("send");
    store
        .update_contact(&alice, &carol, SEND, T)
        .await
        .expect("send");
    // The sender cannot decline its own request, nor the receiver cancel it.
    let wrong = store
        .update_contact(&alice, &bob, ContactOp::Decline, T + 1)
        .await
        .expect("decline");
    assert!(!wrong.actor_changed() && !wrong.other_changed());
    let wrong = store
        .update_contact(&carol, &alice, ContactOp::Cancel, T + 1)
        .await
        .expect("cancel");
    assert!(!wrong.actor_changed() && !wrong.other_changed());

    store
        .update_contact(&bob, &alice, ContactOp::Decline, T + 2)
        .await
        .expect("decline");
    assert_eq!(rows(store.as_ref(), &alice, &bob).await, (None, None));
    store
        .update_contact(&alice, &carol, ContactOp::Cancel, T + 2)
        .await
        .expect("cancel");
    assert_eq!(rows(store.as_ref(), &alice, &carol).await, (None, None));
}

pub async fn contacts_page_by_id_and_state(factory: &dyn StoreFactory, ns: &str) {
    let user = |name: &str| named(ns, name);
    let store = factory.open().await;
    let me = user("m");
    // Accepted: a, c, e; outgoing: b, d; incoming: f.
    for name in ["a", "b", "c", "d", "e"] {
        store
            .update_contact(&me, &user(name), SEND, T)
            .await
            .expect("send");
    }
    for name in ["a", "c", "e"] {
        store
            .update_contact(&user(name), &me, ContactOp::Accept, T + 1)
            .await
            .expect("accept");
    }
    store
        .update_contact(&user("f"), &me, SEND, T + 2)
        .await
        .expect("send to me");
    // A neighbour's rows never show up in mine.
    store
        .update_contact(&user("ma"), &user("zz"), SEND, T)
        .await
        .expect("send");
    store
        .update_contact(&user("l"), &user("zz"), SEND, T)
        .await
        .expect("send");

    let ids = |page: Vec<(UserId, ContactRow)>| {
        page.into_iter()
            .map(|(u, r)| (u.as_str()[ns.len() + 1..].to_owned(), r.state))
            .collect::<Vec<_>>()
    };
    let first = store.list_contacts(&me, None, None, 4).await.expect("page");
    assert_eq!(
        ids(first),
        [
            ("a", Accepted),
            ("b", Outgoing),
            ("c", Accepted),
            ("d", Outgoing)
        ]
        .map(|(u, s)| (u.to_owned(), s))
    );
    let next = store
        .list_contacts(&me, None, Some(&user("d")), 4)
        .await
        .expect("page");
    assert_eq!(
        ids(next),
        [("e", Accepted), ("f", Incoming)].map(|(u, s)| (u.to_owned(), s))
    );
    let accepted = store
        .list_contacts(&me, Some(Accepted), Some(&user("a")), 1)
        .await
        .expect("page");
    assert_eq!(ids(accepted), [("c".to_owned(), Accepted)]);
    let incoming = store
        .list_contacts(&me, Some(Incoming), None, 10)
        .await
        .expect("page");
    assert_eq!(ids(incoming), [("f".to_owned(), Incoming)]);
    assert_eq!(
        store.accepted_contacts(&me).await.expect("accepted"),
        vec![user("a"), user("c"), user("e")]
    );
}

pub async fn contacts_are_durable_across_reopen(factory: &dyn StoreFactory, ns: &str) {
    let user = |name: &str| named(ns, name);
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    {
        let store = factory.open().await;
        store
            .update_contact(&alice, &bob, SEND, T)
            .await
            .expect("send");
        store
            .update_contact(&bob, &alice, ContactOp::Accept, T + 1)
            .await
            .expect("accept");
        store
            .update_contact(&carol, &alice, SEND, T + 2)
            .await
            .expect("send");
    }
    let store = factory.open().await;
    assert_eq!(
        rows(store.as_ref(), &alice, &bob).await,
        (row(Accepted, T + 1), row(Accepted, T + 1))
    );
    assert_eq!(
        rows(store.as_ref(), &alice, &carol).await,
        (row(Incoming, T + 2), row(Outgoing, T + 2))
    );
}
