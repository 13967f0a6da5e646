//! Contacts (issue 22, docs/protocol.md §25): the relationship of two users as two rows, one per
//! side, and the one transition function every store applies, so both stores behave the same.
//!
//! A user's row about another says where the user stands: `Outgoing` (asked), `Incoming` (was
//! asked), `Accepted`. A request that must not reach the other user (a block either way,
//! ) writes only the sender's row: the sender sees it pending like any other, the other
//! user never sees it.

use chatwire_protocol::v1;

/// One side's row about another user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactRow {
    /// Outgoing, incoming or accepted (never unspecified).
    pub state: v1::ContactState,
    /// When the row entered this state, Unix milliseconds.
    pub since_ms: i64,
}

/// A change one user (the actor) asks for about another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactOp {
    /// Send a request; `deliver` false keeps it on the actor's side only (a block either way).
    Request {
        /// Whether the other user may learn of it.
        deliver: bool,
    },
    /// Accept the other user's request.
    Accept,
    /// Decline the other user's request.
    Decline,
    /// Withdraw the actor's request.
    Cancel,
    /// End an accepted relationship.
    Remove,
}

/// Both rows before and after an operation: `actor` is the actor's row about the other user,
/// `other` the other user's row about the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContactUpdate {
    /// The actor's row before.
    pub actor_before: Option<ContactRow>,
    /// The other user's row before.
    pub other_before: Option<ContactRow>,
    /// The actor's row after.
    pub actor_after: Option<ContactRow>,
    /// The other user's row after.
    pub other_after: Option<ContactRow>,
}

impl ContactUpdate {
    /// Whether the actor's row changed.
    pub fn actor_changed(&self) -> bool {
        self.actor_before != self.actor_after
    }

    /// Whether the other user's row changed.
    pub fn other_changed(&self) -> bool {
        self.other_before != self.other_after
    }
}

fn row(state: v1::ContactState, since_ms: i64) -> Option<ContactRow> {
    Some(ContactRow { state, since_ms })
}

fn is(row: Option<ContactRow>, state: v1::ContactState) -> bool {
    row.is_some_and(|r| r.state == state)
}

/// The rows after `op`, from the rows before (`actor`: the actor's row about the other user;
/// `other`: the other's about the actor). Every operation is idempotent: applied twice, the
/// second changes nothing. An operation that does not fit the rows changes nothing.
pub fn transition(
    op: ContactOp,
    actor: Option<ContactRow>,
    other: Option<ContactRow>,
    now_ms: i64,
) -> (Option<ContactRow>, Option<ContactRow>) {
    use v1::ContactState::{Accepted, Incoming, Outgoing};
    match op {
        ContactOp::Request { .. } if is(actor, Accepted) => (actor, other),
        // Asking someone who asked first (or whose undelivered request waits) accepts.
        ContactOp::Request { deliver: true } if is(actor, Incoming) || is(other, Outgoing) => {
            (row(Accepted, now_ms), row(Accepted, now_ms))
        }
        ContactOp::Request { .. } if is(actor, Outgoing) => (actor, other),
        ContactOp::Request { deliver: true } => (row(Outgoing, now_ms), row(Incoming, now_ms)),
        ContactOp::Request { deliver: false } => (row(Outgoing, now_ms), other),
        ContactOp::Accept if is(actor, Incoming) => (row(Accepted, now_ms), row(Accepted, now_ms)),
        ContactOp::Decline if is(actor, Incoming) => {
            (None, if is(other, Outgoing) { None } else { other })
        }
        ContactOp::Cancel if is(actor, Outgoing) => {
            (None, if is(other, Incoming) { None } else { other })
        }
        ContactOp::Remove if is(actor, Accepted) => {
            (None, if is(other, Accepted) { None } else { other })
        }
        ContactOp::Accept | ContactOp::Decline | ContactOp::Cancel | ContactOp::Remove => {
            (actor, other)
        }
    }
}

/// A row as the protocol's `Contact` about `user_id` (`None`: state unspecified, since 0).
pub fn to_contact(user_id: &str, row: Option<ContactRow>) -> v1::Contact {
    v1::Contact {
        user_id: user_id.to_owned(),
        state: row.map_or(v1::ContactState::Unspecified, |r| r.state) as i32,
        since_ms: row.map_or(0, |r| r.since_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use v1::ContactState::{Accepted, Incoming, Outgoing};

    fn r(state: v1::ContactState) -> Option<ContactRow> {
        row(state, 1)
    }

    #[test]
    fn every_operation_is_idempotent_from_every_pair_of_rows() {
        let states = [None, r(Outgoing), r(Incoming), r(Accepted)];
        let ops = [
            ContactOp::Request { deliver: true },
            ContactOp::Request { deliver: false },
            ContactOp::Accept,
            ContactOp::Decline,
            ContactOp::Cancel,
            ContactOp::Remove,
        ];
        for op in ops {
            for a in states {
                for b in states {
                    let once = transition(op, a, b, 5);
                    assert_eq!(
                        transition(op, once.0, once.1, 9),
                        once,
                        "{op:?} {a:?} {b:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_request_life_cycle() {
        let sent = transition(ContactOp::Request { deliver: true }, None, None, 5);
        assert_eq!(sent, (row(Outgoing, 5), row(Incoming, 5)));
        // Seen from the other side: accepting makes both accepted.
        let (b, a) = transition(ContactOp::Accept, sent.1, sent.0, 7);
        assert_eq!((a, b), (row(Accepted, 7), row(Accepted, 7)));
        let (a, b) = transition(ContactOp::Remove, a, b, 9);
        assert_eq!((a, b), (None, None));
        // A crossed request accepts; an undelivered one reaches nobody.
        let (b, a) = transition(ContactOp::Request { deliver: true }, sent.1, sent.0, 8);
        assert_eq!((a, b), (row(Accepted, 8), row(Accepted, 8)));
        let hidden = transition(ContactOp::Request { deliver: false }, None, None, 5);
        assert_eq!(hidden, (row(Outgoing, 5), None));
        // Accepting without a request, declining or cancelling the wrong way change nothing.
        assert_eq!(
            transition(ContactOp::Accept, hidden.1, hidden.0, 6),
            (None, r(Outgoing).map(|x| ContactRow { since_ms: 5, ..x }))
        );
        assert_eq!(
            transition(ContactOp::Cancel, sent.1, sent.0, 6),
            (sent.1, sent.0)
        );
        assert_eq!(transition(ContactOp::Decline, sent.0, sent.1, 6), sent);
        assert_eq!(
            transition(ContactOp::Decline, sent.1, sent.0, 6),
            (None, None)
        );
        assert_eq!(
            transition(ContactOp::Cancel, sent.0, sent.1, 6),
            (None, None)
        );
    }
}
