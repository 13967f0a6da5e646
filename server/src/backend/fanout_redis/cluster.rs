//! This node's mirror of the other nodes' sessions (sans IO), so the sync questions of the
//! fan-out trait (`sessions_of`, `presence`, where a session lives) are answered without a
//! round trip.
//!
//! The mirror follows two sources: the presence changes each node publishes on the cluster
//! channel (fast, may be lost), and a periodic reload of every node's sessions hash (slow,
//! complete). Each node numbers its changes; a change or a reload older than what the mirror
//! holds is ignored, so a late reload never undoes a newer change.

use std::collections::HashMap;

use crate::backend::fanout::{LastSeen, SessionKey};
use crate::chat::ids::UserId;

#[derive(Debug, Default)]
struct Remote {
    version: u64,
    sessions: HashMap<SessionKey, UserId>,
}

/// The other nodes' sessions and the last-seen times this node knows of.
#[derive(Debug, Default)]
pub(super) struct Cluster {
    nodes: HashMap<String, Remote>,
    /// Remote sessions per user.
    users: HashMap<UserId, usize>,
    last_seen: LastSeen,
}

impl Cluster {
    /// Applies one numbered change of `node`; false when it is not newer than the mirror.
    pub(super) fn change(
        &mut self,
        node: &str,
        version: u64,
        session: SessionKey,
        user: Option<UserId>,
    ) -> bool {
        let remote = self.nodes.entry(node.to_owned()).or_default();
        if version <= remote.version {
            return false;
        }
        remote.version = version;
        let old = match user {
            Some(user) => {
                let old = remote.sessions.insert(session, user.clone());
                *self.users.entry(user).or_default() += 1;
                old
            }
            None => remote.sessions.remove(&session),
        };
        if let Some(old) = old {
            self.forget_one(&old);
        }
        true
    }

    /// Replaces `node`'s sessions by a reload at `version`; returns every user whose remote
    /// sessions may have changed (empty when the reload is older than the mirror).
    pub(super) fn replace(
        &mut self,
        node: &str,
        version: u64,
        sessions: HashMap<SessionKey, UserId>,
    ) -> Vec<UserId> {
        if self.nodes.get(node).is_some_and(|r| r.version > version) {
            return Vec::new();
        }
        let mut touched = self.drop_node(node);
        touched.extend(sessions.values().cloned());
        for user in sessions.values() {
            *self.users.entry(user.clone()).or_default() += 1;
        }
        self.nodes
            .insert(node.to_owned(), Remote { version, sessions });
        touched
    }

    /// Forgets `node` (it stopped heartbeating); returns the users it had sessions of.
    pub(super) fn drop_node(&mut self, node: &str) -> Vec<UserId> {
        let Some(remote) = self.nodes.remove(node) else {
            return Vec::new();
        };
        let users: Vec<UserId> = remote.sessions.into_values().collect();
        for user in &users {
            self.forget_one(user);
        }
        users
    }

    /// The users `node` has sessions of.
    pub(super) fn users_of(&self, node: &str) -> Vec<UserId> {
        self.nodes
            .get(node)
            .map(|r| r.sessions.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The nodes in the mirror.
    pub(super) fn nodes(&self) -> Vec<String> {
        self.nodes.keys().cloned().collect()
    }

    fn forget_one(&mut self, user: &UserId) {
        if let Some(count) = self.users.get_mut(user) {
            *count -= 1;
            if *count == 0 {
                self.users.remove(user);
            }
        }
    }

    /// True while `user` has a session on another node.
    pub(super) fn online(&self, user: &UserId) -> bool {
        self.users.contains_key(user)
    }

    /// `user`'s sessions on other nodes.
    pub(super) fn sessions_of(&self, user: &UserId) -> Vec<SessionKey> {
        let mut keys: Vec<SessionKey> = self
            .nodes
            .values()
            .flat_map(|r| r.sessions.iter())
            .filter(|(_, u)| *u == user)
            .map(|(key, _)| *key)
            .collect();
        keys.sort_unstable();
        keys
    }

    /// The node holding `session`, if another node does.
    pub(super) fn node_of(&self, session: SessionKey) -> Option<&str> {
        self.nodes
            .iter()
            .find(|(_, r)| r.sessions.contains_key(&session))
            .map(|(node, _)| node.as_str())
    }

    /// How many sessions the other nodes have.
    pub(super) fn session_count(&self) -> usize {
        self.nodes.values().map(|r| r.sessions.len()).sum()
    }

    /// Records a last-seen time (the newest wins).
    pub(super) fn saw(&mut self, user: &UserId, ms: i64) {
        self.last_seen.saw(user, ms);
    }

    /// The last-seen time of `user`, 0 when unknown.
    pub(super) fn last_seen(&self, user: &UserId) -> i64 {
        self.last_seen.get(user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> UserId {
        UserId::parse("alice").unwrap()
    }

    #[test]
    fn changes_and_reloads_apply_in_version_order() {
        let mut cluster = Cluster::default();
        assert!(cluster.change("b", 1, 7, Some(alice())));
        assert!(cluster.online(&alice()));
        assert!(!cluster.change("b", 1, 7, None), "not newer");
        // A reload taken before change 1 is ignored.
        assert!(cluster.replace("b", 0, HashMap::new()).is_empty());
        assert_eq!(cluster.sessions_of(&alice()), vec![7]);
        assert_eq!(cluster.node_of(7), Some("b"));
        assert!(cluster.change("b", 2, 7, None));
        assert!(!cluster.online(&alice()));
        cluster.replace("b", 5, HashMap::from([(8, alice()), (9, alice())]));
        assert_eq!(cluster.session_count(), 2);
        assert_eq!(cluster.drop_node("b").len(), 2);
        assert!(!cluster.online(&alice()));
    }
}
