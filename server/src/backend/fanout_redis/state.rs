//! Everything a node holds in memory behind one lock: its own sessions and presence watches
//! (as in the embedded fan-out), the rooms it delivers and its mirror of the other nodes.
//! Deliveries happen under the lock: they never block (`SessionLink::deliver` only tries), and
//! holding it keeps each session's deliveries in the order the node decided them.

use std::collections::HashMap;
use std::sync::Arc;

use chatwire_protocol::v1;

use super::cluster::Cluster;
use super::rooms::{Ready, Rooms};
use crate::backend::fanout::{Delivery, PresenceWatches, RoomBatch, SessionKey, SessionLink};
use crate::chat::ids::UserId;

/// A node's in-memory state.
#[derive(Debug)]
pub(super) struct State {
    pub sessions: HashMap<SessionKey, (UserId, SessionLink)>,
    pub by_user: HashMap<UserId, Vec<SessionKey>>,
    /// This node's sessions' presence watches.
    pub watches: PresenceWatches,
    pub rooms: Rooms,
    pub cluster: Cluster,
}

impl State {
    pub(super) fn new(ring: usize) -> Self {
        Self {
            sessions: HashMap::new(),
            by_user: HashMap::new(),
            watches: PresenceWatches::default(),
            rooms: Rooms::new(ring),
            cluster: Cluster::default(),
        }
    }

    /// Online anywhere in the cluster, as far as this node knows.
    pub(super) fn online(&self, user: &UserId) -> bool {
        self.by_user.contains_key(user) || self.cluster.online(user)
    }

    /// True when some user of `audience` has a session here.
    pub(super) fn any_local(&self, audience: &[UserId]) -> bool {
        audience.iter().any(|user| self.by_user.contains_key(user))
    }

    /// The links of `user`'s sessions here.
    pub(super) fn links_of(&self, user: &UserId) -> Vec<(SessionKey, &SessionLink)> {
        self.by_user
            .get(user)
            .into_iter()
            .flatten()
            .filter_map(|key| self.sessions.get(key).map(|(_, link)| (*key, link)))
            .collect()
    }

    /// Hands ready room events to the local sessions of their audience.
    pub(super) fn deliver_rooms(&self, ready: Vec<Ready>) {
        for ready in ready {
            let batch = RoomBatch::new(Arc::clone(&ready.events));
            let mut reached = 0;
            for user in ready.audience.iter() {
                for (_, link) in self.links_of(user) {
                    link.deliver(Delivery::Room(Arc::clone(&batch)));
                    reached += 1;
                }
            }
            crate::telemetry::fanned_out(reached);
        }
    }

    /// Hands a user event to `user`'s sessions here, except `except`.
    pub(super) fn deliver_user(
        &self,
        user: &UserId,
        event: &Arc<v1::Event>,
        except: Option<SessionKey>,
    ) {
        for (key, link) in self.links_of(user) {
            if Some(key) != except {
                link.deliver(Delivery::User(Arc::clone(event)));
            }
        }
    }

    /// Closes `user`'s sessions here; returns how many.
    pub(super) fn close_user(&self, user: &UserId, code: v1::CloseCode) -> usize {
        let links = self.links_of(user);
        for (_, link) in &links {
            link.deliver(Delivery::Close(code));
        }
        links.len()
    }

    /// Tells this node's watchers of `user` its presence, if `was_online` differs from now.
    /// `at_ms` is the time of the change (last seen, for both directions: online users are
    /// seen now).
    pub(super) fn presence_moved(&mut self, user: &UserId, was_online: bool, at_ms: i64) {
        let online = self.online(user);
        if online == was_online {
            return;
        }
        if !online {
            self.cluster.saw(user, at_ms);
        }
        let event = Arc::new(v1::Event {
            kind: Some(v1::event::Kind::Presence(v1::Presence {
                user_id: user.to_string(),
                online,
                last_seen_ms: at_ms,
            })),
        });
        for session in self.watches.watchers_of(user) {
            if let Some((_, link)) = self.sessions.get(&session) {
                link.deliver(Delivery::User(Arc::clone(&event)));
            }
        }
    }

    /// Forgets `session`'s presence watches.
    pub(super) fn unwatch_all(&mut self, session: SessionKey) {
        self.watches.end(session);
    }
}

/// A user event as a delivery.
pub(super) fn user_delivery(event: v1::Event) -> Delivery {
    Delivery::User(Arc::new(event))
}
