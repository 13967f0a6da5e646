//! A room batch in the making: commands applied one by one to a copy of the room's state,
//! producing log events, materialization writes, user-stream events and replies. Nothing is
//! visible to anyone until the writer appends the batch.
//!
//! One file per command family, each an `impl Draft` block over the shared helpers here:
//! `rooms.rs` (CreateGroup, OpenDirect, UpdateRoom), `members.rs` (AddMembers, RemoveMember,
//! SetRole, Leave), `messages.rs` (Send, Edit, Delete), `reactions.rs` (React) and
//! `moderation.rs` (RestrictMember, the moderator checks).

mod members;
mod messages;
mod moderation;
mod reactions;
mod rooms;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chatwire_protocol::v1::{self, room_event::Kind};

use crate::backend::fanout::Audience;
use crate::backend::store::{Batch, DedupeEntry, Head, RoomSnapshot, Store, Write};
use crate::chat::command::{Outcome, RoomCommand, RoomOp};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

pub use self::reactions::{MAX_EMOJI_PER_MESSAGE, REACTION_SAMPLE};

/// Writer settings that shape batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterConfig {
    /// How long a client_msg_id is remembered, in milliseconds.
    pub idempotency_window_ms: i64,
    /// The member cap of groups created without one.
    pub default_member_cap: u32,
    /// The largest member cap.
    pub max_group_members: u32,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            idempotency_window_ms: chatwire_protocol::limits::DEFAULT_IDEMPOTENCY_WINDOW_MS as i64,
            default_member_cap: chatwire_protocol::limits::DEFAULT_MAX_GROUP_MEMBERS as u32,
            max_group_members: chatwire_protocol::limits::DEFAULT_MAX_GROUP_MEMBERS as u32,
        }
    }
}

/// A room's state as its writer holds it. Cloning it is cheap: the members are shared, and a
/// batch copies them only when it changes membership (copy on write), so a commit costs
/// O(its events), not O(members).
#[derive(Debug, Clone, PartialEq)]
pub struct RoomState {
    /// The head.
    pub head: Head,
    /// The settings.
    pub room: v1::Room,
    /// The members by user id.
    pub members: Arc<BTreeMap<UserId, v1::Member>>,
}

impl RoomState {
    /// The state loaded from the store.
    pub fn from_snapshot(snapshot: RoomSnapshot) -> Self {
        let members = snapshot
            .members
            .into_iter()
            .filter_map(|m| UserId::parse(&m.user_id).ok().map(|id| (id, m)))
            .collect::<BTreeMap<_, _>>()
            .into();
        Self {
            head: snapshot.head,
            room: snapshot.room,
            members,
        }
    }

    /// The room as clients see it, with the head's seq and the member count filled in.
    pub fn public_room(&self) -> v1::Room {
        let mut room = self.room.clone();
        room.last_seq = self.head.seq;
        room.member_count = u32::try_from(self.members.len()).unwrap_or(u32::MAX);
        room
    }

    fn role_of(&self, user: &UserId) -> Option<v1::Role> {
        self.members.get(user).map(|m| m.role())
    }
}

/// A finished draft.
#[derive(Debug)]
pub struct Sealed {
    /// The batch to append.
    pub batch: Batch,
    /// The users who see its events: members before and after.
    pub audience: Audience,
    /// The room's state after the batch.
    pub state: RoomState,
    /// Events for users' own streams.
    pub user_events: Vec<(UserId, v1::Event)>,
}

/// A batch being built for one room.
#[derive(Debug)]
pub struct Draft<'a> {
    store: &'a dyn Store,
    config: WriterConfig,
    room_id: RoomId,
    now_ms: i64,
    base_seq: u64,
    /// The state as of the commands applied so far; `None` while the room does not exist.
    pub state: Option<RoomState>,
    events: Vec<v1::RoomEvent>,
    writes: Vec<Write>,
    /// Events for users' own streams, sent after the batch is durable.
    pub user_events: Vec<(UserId, v1::Event)>,
    /// Members before the batch that it removed: they still see its events (their own
    /// MemberLeft included).
    removed: BTreeSet<UserId>,
    messages: HashMap<u64, v1::Message>,
    /// Reactions this batch recorded (true) or forgot (false): `(message seq, user, emoji)`.
    reactions: HashMap<(u64, UserId, String), bool>,
    sent: HashMap<(UserId, String), DedupeEntry>,
    /// The command being applied comes from the admin API.
    privileged: bool,
}

impl<'a> Draft<'a> {
    /// A draft on top of `state` (`None` for a room that does not exist yet).
    pub fn new(
        store: &'a dyn Store,
        config: WriterConfig,
        room_id: RoomId,
        state: Option<RoomState>,
        now_ms: i64,
    ) -> Self {
        let base_seq = state.as_ref().map_or(0, |s| s.head.seq);
        // Timestamps never go backwards within a room.
        let now_ms = state.as_ref().map_or(now_ms, |s| now_ms.max(s.head.ts_ms));
        Self {
            store,
            config,
            room_id,
            now_ms,
            base_seq,
            state,
            events: Vec::new(),
            writes: Vec::new(),
            user_events: Vec::new(),
            removed: BTreeSet::new(),
            messages: HashMap::new(),
            reactions: HashMap::new(),
            sent: HashMap::new(),
            privileged: false,
        }
    }

    /// The seq the head must still be at for the batch to apply.
    pub fn base_seq(&self) -> u64 {
        self.base_seq
    }

    /// True when no command produced an event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The finished batch, or `None` when the room still does not exist.
    pub fn seal(self) -> Option<Sealed> {
        let state = self.state?;
        let audience = Audience::new(Arc::clone(&state.members), self.removed);
        let batch = Batch {
            head: state.head,
            events: self.events,
            writes: self.writes,
            mark_outbox: false,
        };
        Some(Sealed {
            batch,
            audience,
            state,
            user_events: self.user_events,
        })
    }

    /// Applies one command, returning its outcome (events stay in the draft).
    pub async fn apply(&mut self, command: &RoomCommand) -> Result<Outcome, ChatError> {
        let actor = &command.actor;
        self.privileged = command.privileged;
        match &command.op {
            RoomOp::CreateGroup(create) => self.create_group(actor, create),
            RoomOp::OpenDirect { other } => self.open_direct(actor, other).await,
            RoomOp::UpdateRoom(settings) => self.update_room(actor, settings),
            RoomOp::AddMembers { users, role } => self.add_members(actor, users, *role),
            RoomOp::RemoveMember { user } => self.remove_member(actor, user),
            RoomOp::SetRole { user, role } => self.set_role(actor, user, *role),
            RoomOp::Leave => self.leave(actor),
            RoomOp::Send(send) => self.send(actor, send, None).await,
            RoomOp::ModeratedSend { send, verdict } => {
                self.send(actor, send, verdict.masked.as_ref()).await
            }
            RoomOp::Edit {
                target_seq,
                content,
            } => self.edit(actor, *target_seq, content).await,
            RoomOp::Delete { target_seq, reason } => self.delete(actor, *target_seq, reason).await,
            RoomOp::Restrict {
                user,
                until_ms,
                reason,
            } => self.restrict(actor, user, *until_ms, reason),
            RoomOp::React {
                target_seq,
                emoji,
                add,
            } => self.react(actor, *target_seq, emoji, *add).await,
        }
    }

    // ----- shared helpers -------------------------------------------------------------------

    /// The state, for a command that needs the actor to be a member.
    fn member_state(&self, actor: &UserId) -> Result<&RoomState, ChatError> {
        match &self.state {
            Some(state) if self.privileged || state.members.contains_key(actor) => Ok(state),
            _ => Err(ChatError::NotFound),
        }
    }

    /// The actor's role; the admin API acts as an owner.
    fn acting_role(&self, state: &RoomState, actor: &UserId) -> Option<v1::Role> {
        if self.privileged {
            Some(v1::Role::Owner)
        } else {
            state.role_of(actor)
        }
    }

    fn state_mut(&mut self) -> Result<&mut RoomState, ChatError> {
        self.state.as_mut().ok_or(ChatError::NotFound)
    }

    /// Appends an event with the next seq and returns the seq.
    fn push(&mut self, sender: &UserId, kind: Kind) -> Result<u64, ChatError> {
        let ts_ms = self.now_ms;
        let room_id = self.room_id.to_string();
        let state = self.state_mut()?;
        state.head.seq += 1;
        state.head.ts_ms = ts_ms;
        let seq = state.head.seq;
        self.events.push(v1::RoomEvent {
            room_id,
            seq,
            ts_ms,
            sender: sender.to_string(),
            kind: Some(kind),
        });
        Ok(seq)
    }

    fn add_member(
        &mut self,
        by: &UserId,
        user: &UserId,
        role: v1::Role,
        joined_seq: Option<u64>,
    ) -> Result<v1::Member, ChatError> {
        let seq = self.push(
            by,
            Kind::MemberJoined(v1::MemberJoined {
                user_id: user.to_string(),
                role: role.into(),
            }),
        )?;
        let member = v1::Member {
            user_id: user.to_string(),
            role: role.into(),
            joined_seq: joined_seq.unwrap_or(seq),
            joined_at_ms: self.now_ms,
            restricted_until_ms: 0,
        };
        Arc::make_mut(&mut self.state_mut()?.members).insert(user.clone(), member.clone());
        self.writes.push(Write::Member(member.clone()));
        Ok(member)
    }

    fn write_room(&mut self) -> Result<(), ChatError> {
        let room = self.state_mut()?.public_room();
        self.writes.push(Write::Room(room));
        Ok(())
    }

    fn user_event(&mut self, user: &UserId, kind: v1::event::Kind) {
        self.user_events
            .push((user.clone(), v1::Event { kind: Some(kind) }));
    }

    /// A message as of this draft (changes made earlier in the batch included).
    async fn message(&mut self, seq: u64) -> Result<Option<v1::Message>, ChatError> {
        if let Some(message) = self.messages.get(&seq) {
            return Ok(Some(message.clone()));
        }
        if seq == 0 || seq > self.base_seq {
            return Ok(None);
        }
        Ok(self.store.message(&self.room_id, seq).await?)
    }

    /// A live message the actor may see, or NotFound naming `field`.
    async fn visible_message(
        &mut self,
        actor: &UserId,
        seq: u64,
        field: &'static str,
    ) -> Result<v1::Message, ChatError> {
        let state = self.member_state(actor)?;
        let min_seq = if self.privileged {
            1
        } else {
            first_visible_seq(state, actor)
        };
        match self.message(seq).await? {
            Some(message) if seq >= min_seq => Ok(message),
            _ => Err(ChatError::MessageNotFound { field }),
        }
    }

    fn put_message(&mut self, message: v1::Message) {
        self.messages.insert(message.seq, message.clone());
        self.writes.push(Write::Message(message));
    }

    fn require_group_role(
        &self,
        actor: &UserId,
        allowed: &[v1::Role],
    ) -> Result<&RoomState, ChatError> {
        let state = self.member_state(actor)?;
        if state.room.kind() != v1::RoomKind::Group {
            return Err(ChatError::FailedPrecondition(
                "direct rooms have fixed members and settings",
            ));
        }
        match self.acting_role(state, actor) {
            Some(role) if allowed.contains(&role) => Ok(state),
            _ => Err(ChatError::PermissionDenied("needs a higher role")),
        }
    }
}

/// The lowest seq `user` may read in the room.
pub fn first_visible_seq(state: &RoomState, user: &UserId) -> u64 {
    match (state.room.history_visibility(), state.members.get(user)) {
        (v1::HistoryVisibility::Full, _) => 1,
        (_, Some(member)) => member.joined_seq.max(1),
        (_, None) => u64::MAX,
    }
}
