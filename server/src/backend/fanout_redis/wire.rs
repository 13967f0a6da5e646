//! What travels through Redis: key and channel names, and the prost messages on the channels
//! and in the tail streams. Encoded with prost so a newer node can add fields that an older
//! one skips (the protocol's own evolution rules).

use chatwire_protocol::v1;

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// The tail stream of a room: one entry per event, id `<seq>-0`.
    pub(super) fn tail(&self, room: &str) -> String {
        format!("{}tail:{room}", self.prefix)
    }

    /// The pub/sub channel of a room's batches.
    pub(super) fn room_channel(&self, room: &str) -> String {
        format!("{}room:{room}", self.prefix)
    }

    /// The pattern matching every room channel (the prefix's glob characters escaped).
    pub(super) fn room_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 6);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str("room:*");
        pattern
    }

    /// The room id of a room channel, if it is one.
    pub(super) fn room_of_channel<'a>(&self, channel: &'a str) -> Option<&'a str> {
        channel.strip_prefix(&self.prefix)?.strip_prefix("room:")
    }

    /// The cluster channel: user events, session events, closes, presence changes.
    pub(super) fn cluster_channel(&self) -> String {
        format!("{}cluster", self.prefix)
    }

    /// Sorted set of nodes, scored by their last heartbeat (the injected clock's ms).
    pub(super) fn nodes(&self) -> String {
        format!("{}nodes", self.prefix)
    }

    /// Hash of a node's live sessions (`session -> user`) plus its version field; it expires
    /// unless the node heartbeats, which is how a dead node's sessions vanish.
    pub(super) fn sessions(&self, node: &str) -> String {
        format!("{}sessions:{node}", self.prefix)
    }

    /// Sorted set of users scored by the time they were last seen (ms), trimmed to the most
    /// recent `last_seen_cap` on every write. (It was a hash that grew with every user ever
    /// seen, under `lastseen`; the new name keeps the two types apart.)
    pub(super) fn last_seen(&self) -> String {
        format!("{}lastseen:z", self.prefix)
    }
}

/// The version field in a node's sessions hash (session fields are decimal numbers).
pub(super) const VERSION_FIELD: &str = "v";

/// A room batch on the room's channel.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RoomBatch {
    /// The publishing node (it delivered locally already and skips its own batch).
    #[prost(string, tag = "1")]
    pub node: String,
    /// Contiguous events in seq order.
    #[prost(message, repeated, tag = "2")]
    pub events: Vec<v1::RoomEvent>,
    /// Users whose sessions get the batch.
    #[prost(string, repeated, tag = "3")]
    pub audience: Vec<String>,
}

/// The audience stored with each tail-stream entry.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct Audience {
    /// User ids.
    #[prost(string, repeated, tag = "1")]
    pub users: Vec<String>,
}

/// A message on the cluster channel.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct ClusterMessage {
    /// The sending node.
    #[prost(string, tag = "1")]
    pub node: String,
    /// What it says.
    #[prost(oneof = "Kind", tags = "2, 3, 4, 5")]
    pub kind: Option<Kind>,
}

/// The cases of [`ClusterMessage`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub(super) enum Kind {
    /// An event for every session of a user.
    #[prost(message, tag = "2")]
    User(UserEvent),
    /// An event for one session on one node.
    #[prost(message, tag = "3")]
    Session(SessionEvent),
    /// Close every session of a user.
    #[prost(message, tag = "4")]
    Close(CloseUser),
    /// A session of the sending node came or went.
    #[prost(message, tag = "5")]
    Presence(PresenceChange),
}

/// An event for every session of `user` except `except`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct UserEvent {
    /// The user.
    #[prost(string, tag = "1")]
    pub user: String,
    /// The session left out.
    #[prost(uint64, optional, tag = "2")]
    pub except: Option<u64>,
    /// The event.
    #[prost(message, optional, tag = "3")]
    pub event: Option<v1::Event>,
}

/// An event for one session.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct SessionEvent {
    /// The node holding the session.
    #[prost(string, tag = "1")]
    pub target_node: String,
    /// The session.
    #[prost(uint64, tag = "2")]
    pub session: u64,
    /// The event.
    #[prost(message, optional, tag = "3")]
    pub event: Option<v1::Event>,
}

/// Close every session of `user` with `code`.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct CloseUser {
    /// The user.
    #[prost(string, tag = "1")]
    pub user: String,
    /// A `v1::CloseCode`.
    #[prost(int32, tag = "2")]
    pub code: i32,
}

/// A session of the sending node was attached (`online`) or detached.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct PresenceChange {
    /// The node's registry version after the change.
    #[prost(uint64, tag = "1")]
    pub version: u64,
    /// Attached (true) or detached.
    #[prost(bool, tag = "2")]
    pub online: bool,
    /// The session.
    #[prost(uint64, tag = "3")]
    pub session: u64,
    /// Its user.
    #[prost(string, tag = "4")]
    pub user: String,
    /// When, by the node's clock.
    #[prost(int64, tag = "5")]
    pub ts_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_pattern_escapes_the_prefix() {
        let keys = Keys::new("a*b[1]:");
        assert_eq!(keys.room_pattern(), "a\\*b\\[1\\]:room:*");
        assert_eq!(keys.room_of_channel("a*b[1]:room:g.x"), Some("g.x"));
        assert_eq!(keys.room_of_channel("other:room:g.x"), None);
    }
}
