//! A room batch in the making: commands applied one by one to a copy of the room's state,
//! producing log events, materialization writes, user-stream events and replies. Nothing is
//! visible to anyone until the writer appends the batch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chatwire_protocol::v1::{self, room_event::Kind};

use crate::backend::fanout::Audience;
use crate::backend::store::{Batch, DedupeEntry, Head, RoomSnapshot, Store, Write};
use crate::chat::command::{Outcome, RoomCommand, RoomOp};
use crate::chat::error::ChatError;
use crate::chat::ids::{RoomId, UserId};

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
            RoomOp::Send(send) => self.send(actor, send).await,
            RoomOp::Edit {
                target_seq,
                content,
            } => self.edit(actor, *target_seq, content).await,
            RoomOp::Delete { target_seq } => self.delete(actor, *target_seq).await,
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

    // ----- rooms ----------------------------------------------------------------------------

    fn create_group(
        &mut self,
        actor: &UserId,
        create: &crate::chat::command::CreateGroup,
    ) -> Result<Outcome, ChatError> {
        if let Some(state) = &self.state {
            // A retry of the same creation (the id derives from the creator's request id).
            return match state.members.get(actor) {
                Some(me) if state.room.created_by == actor.as_str() => Ok(Outcome::Room {
                    room: state.public_room(),
                    me: Some(me.clone()),
                    created: false,
                }),
                _ => Err(ChatError::Conflict("room already exists")),
            };
        }
        let cap = create.member_cap.min(self.config.max_group_members);
        // Request order, without the creator and duplicates (docs/protocol.md ).
        let mut seen = BTreeSet::from([actor]);
        let others: Vec<&UserId> = create.members.iter().filter(|u| seen.insert(*u)).collect();
        if others.len() + 1 > cap as usize {
            return Err(ChatError::TooLarge {
                field: "member_ids",
                reason: format!("more than the member cap of {cap}"),
            });
        }
        let room = v1::Room {
            id: self.room_id.to_string(),
            kind: v1::RoomKind::Group.into(),
            name: create.name.clone(),
            topic: create.topic.clone(),
            history_visibility: create.history_visibility.into(),
            created_by: actor.to_string(),
            created_at_ms: self.now_ms,
            member_count: 0,
            member_cap: cap,
            last_seq: 0,
            app_data: create.app_data.clone(),
        };
        self.create(actor, room, &[(actor.clone(), v1::Role::Owner)])?;
        for user in others {
            self.add_member(actor, user, v1::Role::Member, Some(1))?;
        }
        self.finish_creation(actor)
    }

    async fn open_direct(&mut self, actor: &UserId, other: &UserId) -> Result<Outcome, ChatError> {
        if let Some(state) = &self.state {
            let me = state
                .members
                .get(actor)
                .cloned()
                .ok_or(ChatError::NotFound)?;
            return Ok(Outcome::Room {
                room: state.public_room(),
                me: Some(me),
                created: false,
            });
        }
        if self.store.either_blocked(actor, other).await? {
            return Err(ChatError::PermissionDenied(
                "one of the users blocked the other",
            ));
        }
        let room = v1::Room {
            id: self.room_id.to_string(),
            kind: v1::RoomKind::Direct.into(),
            history_visibility: v1::HistoryVisibility::Full.into(),
            created_by: actor.to_string(),
            created_at_ms: self.now_ms,
            member_cap: 2,
            ..v1::Room::default()
        };
        self.create(
            actor,
            room,
            &[
                (actor.clone(), v1::Role::Member),
                (other.clone(), v1::Role::Member),
            ],
        )?;
        self.finish_creation(actor)
    }

    /// Starts a room: RoomCreated (seq 1) and the first members, who see it from seq 1.
    fn create(
        &mut self,
        actor: &UserId,
        room: v1::Room,
        members: &[(UserId, v1::Role)],
    ) -> Result<(), ChatError> {
        self.state = Some(RoomState {
            head: Head {
                seq: 0,
                ordinal: 0,
                ts_ms: self.now_ms,
            },
            room: room.clone(),
            members: Arc::default(),
        });
        self.push(
            actor,
            Kind::RoomCreated(v1::RoomCreated { room: Some(room) }),
        )?;
        for (user, role) in members {
            self.add_member(actor, user, *role, Some(1))?;
        }
        Ok(())
    }

    fn finish_creation(&mut self, actor: &UserId) -> Result<Outcome, ChatError> {
        self.write_room()?;
        let state = self.state.as_ref().ok_or(ChatError::Internal)?;
        let room = state.public_room();
        let members: Vec<v1::Member> = state.members.values().cloned().collect();
        let me = state.members.get(actor).cloned();
        for member in members {
            if let Ok(user) = UserId::parse(&member.user_id) {
                self.user_event(
                    &user,
                    v1::event::Kind::RoomAdded(v1::RoomAdded {
                        room: Some(room.clone()),
                        me: Some(member),
                    }),
                );
            }
        }
        Ok(Outcome::Room {
            room,
            me,
            created: true,
        })
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

    fn update_room(
        &mut self,
        actor: &UserId,
        settings: &crate::chat::command::RoomSettings,
    ) -> Result<Outcome, ChatError> {
        let state = self.require_group_role(actor, &[v1::Role::Owner, v1::Role::Admin])?;
        let mut room = state.room.clone();
        if let Some(cap) = settings.member_cap {
            if (cap as usize) < state.members.len() || cap > self.config.max_group_members {
                return Err(ChatError::invalid(
                    "member_cap",
                    "below the member count or above the largest cap",
                ));
            }
            room.member_cap = cap;
        }
        if let Some(name) = &settings.name {
            room.name = name.clone();
        }
        if let Some(topic) = &settings.topic {
            room.topic = topic.clone();
        }
        if let Some(visibility) = settings.history_visibility {
            room.history_visibility = visibility.into();
        }
        if let Some(app_data) = &settings.app_data {
            room.app_data = app_data.clone();
        }
        if room == state.room {
            return Ok(Outcome::Updated {
                room: state.public_room(),
                seq: 0,
            });
        }
        self.state_mut()?.room = room;
        let public = self.state_mut()?.public_room();
        let seq = self.push(
            actor,
            Kind::RoomUpdated(v1::RoomUpdated {
                room: Some(public.clone()),
            }),
        )?;
        self.write_room()?;
        let members: Vec<UserId> = self.state_mut()?.members.keys().cloned().collect();
        for user in members {
            self.user_event(
                &user,
                v1::event::Kind::RoomChanged(v1::RoomChanged {
                    room: Some(public.clone()),
                }),
            );
        }
        Ok(Outcome::Updated { room: public, seq })
    }

    fn add_members(
        &mut self,
        actor: &UserId,
        users: &[UserId],
        role: v1::Role,
    ) -> Result<Outcome, ChatError> {
        let state = self.require_group_role(actor, &[v1::Role::Owner, v1::Role::Admin])?;
        let role = if role == v1::Role::Unspecified {
            v1::Role::Member
        } else {
            role
        };
        if role == v1::Role::Owner {
            return Err(ChatError::invalid("role", "owners are made by SetRole"));
        }
        if role == v1::Role::Admin && self.acting_role(state, actor) != Some(v1::Role::Owner) {
            return Err(ChatError::PermissionDenied("only owners add admins"));
        }
        let new: BTreeSet<&UserId> = users
            .iter()
            .filter(|u| !state.members.contains_key(*u))
            .collect();
        if state.members.len() + new.len() > state.room.member_cap as usize {
            return Err(ChatError::TooLarge {
                field: "user_ids",
                reason: "the room would exceed its member cap".into(),
            });
        }
        let mut added = Vec::new();
        for user in new {
            added.push(self.add_member(actor, user, role, None)?);
        }
        if !added.is_empty() {
            self.write_room()?;
            let room = self.state_mut()?.public_room();
            for member in &added {
                if let Ok(user) = UserId::parse(&member.user_id) {
                    self.user_event(
                        &user,
                        v1::event::Kind::RoomAdded(v1::RoomAdded {
                            room: Some(room.clone()),
                            me: Some(member.clone()),
                        }),
                    );
                }
            }
        }
        Ok(Outcome::Added(added))
    }

    fn remove(
        &mut self,
        actor: &UserId,
        user: &UserId,
        reason: v1::LeaveReason,
    ) -> Result<u64, ChatError> {
        let seq = self.push(
            actor,
            Kind::MemberLeft(v1::MemberLeft {
                user_id: user.to_string(),
                reason: reason.into(),
            }),
        )?;
        if Arc::make_mut(&mut self.state_mut()?.members)
            .remove(user)
            .is_some()
        {
            self.removed.insert(user.clone());
        }
        self.writes.push(Write::RemoveMember(user.clone()));
        self.write_room()?;
        let room_id = self.room_id.to_string();
        self.user_event(
            user,
            v1::event::Kind::RoomRemoved(v1::RoomRemoved {
                room_id,
                reason: reason.into(),
                seq,
            }),
        );
        Ok(seq)
    }

    fn remove_member(&mut self, actor: &UserId, user: &UserId) -> Result<Outcome, ChatError> {
        let state = self.require_group_role(actor, &[v1::Role::Owner, v1::Role::Admin])?;
        if user == actor {
            return Err(ChatError::invalid("user_id", "use LeaveRoom to leave"));
        }
        let target = state.role_of(user).ok_or(ChatError::NotFound)?;
        let can = match self.acting_role(state, actor) {
            Some(v1::Role::Owner) => true,
            Some(v1::Role::Admin) => target == v1::Role::Member,
            _ => false,
        };
        if !can {
            return Err(ChatError::PermissionDenied(
                "admins remove only plain members",
            ));
        }
        Ok(Outcome::Seq(self.remove(
            actor,
            user,
            v1::LeaveReason::Removed,
        )?))
    }

    fn set_role(
        &mut self,
        actor: &UserId,
        user: &UserId,
        role: v1::Role,
    ) -> Result<Outcome, ChatError> {
        let state = self.require_group_role(actor, &[v1::Role::Owner])?;
        if role == v1::Role::Unspecified {
            return Err(ChatError::invalid("role", "a role is required"));
        }
        let current = state.role_of(user).ok_or(ChatError::NotFound)?;
        if current == role {
            return Ok(Outcome::Seq(0));
        }
        let owners = state
            .members
            .values()
            .filter(|m| m.role() == v1::Role::Owner)
            .count();
        if current == v1::Role::Owner && owners == 1 {
            return Err(ChatError::FailedPrecondition(
                "a group keeps at least one owner",
            ));
        }
        let seq = self.push(
            actor,
            Kind::MemberRoleChanged(v1::MemberRoleChanged {
                user_id: user.to_string(),
                role: role.into(),
            }),
        )?;
        let state = self.state_mut()?;
        let member = Arc::make_mut(&mut state.members)
            .get_mut(user)
            .ok_or(ChatError::Internal)?;
        member.role = role.into();
        let member = member.clone();
        self.writes.push(Write::Member(member));
        Ok(Outcome::Seq(seq))
    }

    fn leave(&mut self, actor: &UserId) -> Result<Outcome, ChatError> {
        let state = self.member_state(actor)?;
        if state.room.kind() != v1::RoomKind::Group {
            return Err(ChatError::FailedPrecondition("direct rooms cannot be left"));
        }
        let owners = state
            .members
            .values()
            .filter(|m| m.role() == v1::Role::Owner)
            .count();
        let last_owner = self.acting_role(state, actor) == Some(v1::Role::Owner) && owners == 1;
        if last_owner && state.members.len() > 1 {
            return Err(ChatError::FailedPrecondition(
                "the last owner hands over before leaving",
            ));
        }
        Ok(Outcome::Seq(self.remove(
            actor,
            actor,
            v1::LeaveReason::Left,
        )?))
    }

    // ----- messages -------------------------------------------------------------------------

    async fn send(
        &mut self,
        actor: &UserId,
        send: &crate::chat::command::SendOp,
    ) -> Result<Outcome, ChatError> {
        let state = self.member_state(actor)?;
        let is_direct = state.room.kind() == v1::RoomKind::Direct;
        let peer = state.members.keys().find(|u| *u != actor).cloned();
        let hash = content_hash(send);
        let key = (actor.clone(), send.client_msg_id.clone());
        let known = match self.sent.get(&key) {
            Some(entry) => Some(entry.clone()),
            None => {
                self.store
                    .dedupe(&self.room_id, actor, &send.client_msg_id, self.now_ms)
                    .await?
            }
        };
        if let Some(entry) = known {
            if entry.content_hash != hash {
                return Err(ChatError::Conflict(
                    "client_msg_id was used for different content",
                ));
            }
            return Ok(Outcome::Sent(v1::SendResponse {
                seq: entry.seq,
                ordinal: entry.ordinal,
                created_at_ms: entry.ts_ms,
                duplicate: true,
            }));
        }
        if let (true, Some(peer)) = (is_direct, &peer)
            && self.store.either_blocked(actor, peer).await?
        {
            return Err(ChatError::PermissionDenied(
                "one of the users blocked the other",
            ));
        }
        if send.reply_to_seq != 0 {
            self.visible_message(actor, send.reply_to_seq, "reply_to_seq")
                .await?;
        }
        let root = match send.thread_root_seq {
            0 => None,
            seq => {
                let root = self.visible_message(actor, seq, "thread_root_seq").await?;
                if root.thread_root_seq != 0 {
                    return Err(ChatError::invalid("thread_root_seq", "threads do not nest"));
                }
                Some(root)
            }
        };
        let ordinal = self.state_mut()?.head.ordinal + 1;
        let seq = self.push(
            actor,
            Kind::MessageCreated(v1::MessageCreated {
                ordinal,
                client_msg_id: send.client_msg_id.clone(),
                content: Some(send.content.clone()),
                reply_to_seq: send.reply_to_seq,
                thread_root_seq: send.thread_root_seq,
                redacted: false,
            }),
        )?;
        self.state_mut()?.head.ordinal = ordinal;
        let ts_ms = self.now_ms;
        self.put_message(v1::Message {
            room_id: self.room_id.to_string(),
            seq,
            ordinal,
            sender: actor.to_string(),
            client_msg_id: send.client_msg_id.clone(),
            content: Some(send.content.clone()),
            created_at_ms: ts_ms,
            reply_to_seq: send.reply_to_seq,
            thread_root_seq: send.thread_root_seq,
            ..v1::Message::default()
        });
        if let Some(mut root) = root {
            root.thread_reply_count += 1;
            self.put_message(root);
        }
        let entry = DedupeEntry {
            seq,
            ordinal,
            ts_ms,
            content_hash: hash,
            expires_at_ms: ts_ms + self.config.idempotency_window_ms,
        };
        self.sent.insert(key, entry.clone());
        self.writes.push(Write::Dedupe {
            sender: actor.clone(),
            client_msg_id: send.client_msg_id.clone(),
            entry,
        });
        self.writes.push(Write::ReadUpTo {
            user: actor.clone(),
            seq,
            ordinal,
        });
        Ok(Outcome::Sent(v1::SendResponse {
            seq,
            ordinal,
            created_at_ms: ts_ms,
            duplicate: false,
        }))
    }

    async fn edit(
        &mut self,
        actor: &UserId,
        target_seq: u64,
        content: &v1::Content,
    ) -> Result<Outcome, ChatError> {
        let mut message = self
            .visible_message(actor, target_seq, "target_seq")
            .await?;
        if message.sender != actor.as_str() {
            return Err(ChatError::PermissionDenied(
                "only the author edits a message",
            ));
        }
        if message.deleted {
            return Err(ChatError::FailedPrecondition("the message was deleted"));
        }
        if message.content.as_ref() == Some(content) {
            return Ok(Outcome::Edited {
                seq: 0,
                edited_at_ms: message.edited_at_ms,
            });
        }
        let seq = self.push(
            actor,
            Kind::MessageEdited(v1::MessageEdited {
                target_seq,
                content: Some(content.clone()),
                redacted: false,
            }),
        )?;
        message.content = Some(content.clone());
        message.edited_at_ms = self.now_ms;
        self.put_message(message);
        Ok(Outcome::Edited {
            seq,
            edited_at_ms: self.now_ms,
        })
    }

    async fn delete(&mut self, actor: &UserId, target_seq: u64) -> Result<Outcome, ChatError> {
        let mut message = self
            .visible_message(actor, target_seq, "target_seq")
            .await?;
        let state = self.member_state(actor)?;
        // The admin API moderates every room; in groups, owners and admins do too.
        let moderator = self.privileged
            || state.room.kind() == v1::RoomKind::Group
                && matches!(
                    self.acting_role(state, actor),
                    Some(v1::Role::Owner | v1::Role::Admin)
                );
        if message.sender != actor.as_str() && !moderator {
            return Err(ChatError::PermissionDenied(
                "only the author or a group admin deletes a message",
            ));
        }
        if message.deleted {
            return Ok(Outcome::Seq(0));
        }
        let seq = self.push(
            actor,
            Kind::MessageDeleted(v1::MessageDeleted { target_seq }),
        )?;
        message.deleted = true;
        message.content = None;
        message.reactions.clear();
        self.messages.insert(target_seq, message);
        self.writes.push(Write::Redact { target_seq });
        Ok(Outcome::Seq(seq))
    }

    async fn react(
        &mut self,
        actor: &UserId,
        target_seq: u64,
        emoji: &str,
        add: bool,
    ) -> Result<Outcome, ChatError> {
        let mut message = self
            .visible_message(actor, target_seq, "target_seq")
            .await?;
        if message.deleted {
            return Err(ChatError::FailedPrecondition("the message was deleted"));
        }
        if !apply_reaction(&mut message.reactions, actor, emoji, add)? {
            return Ok(Outcome::Seq(0));
        }
        let seq = self.push(
            actor,
            Kind::ReactionChanged(v1::ReactionChanged {
                target_seq,
                emoji: emoji.to_owned(),
                added: add,
            }),
        )?;
        self.put_message(message);
        Ok(Outcome::Seq(seq))
    }
}

/// Most distinct emoji on one message.
pub const MAX_EMOJI_PER_MESSAGE: usize = 50;

/// Adds or removes `user`'s reaction; false when nothing changed. Stored summaries keep every
/// reacting user (readers cut the list to 10 and set `me`).
fn apply_reaction(
    reactions: &mut Vec<v1::ReactionSummary>,
    user: &UserId,
    emoji: &str,
    add: bool,
) -> Result<bool, ChatError> {
    let position = reactions.iter().position(|r| r.emoji == emoji);
    match (position, add) {
        (Some(index), true) => {
            let Some(entry) = reactions.get_mut(index) else {
                return Ok(false);
            };
            if entry.user_ids.iter().any(|u| u == user.as_str()) {
                return Ok(false);
            }
            entry.user_ids.push(user.to_string());
            entry.count = u32::try_from(entry.user_ids.len()).unwrap_or(u32::MAX);
        }
        (None, true) => {
            if reactions.len() >= MAX_EMOJI_PER_MESSAGE {
                return Err(ChatError::TooLarge {
                    field: "emoji",
                    reason: format!("at most {MAX_EMOJI_PER_MESSAGE} distinct emoji per message"),
                });
            }
            reactions.push(v1::ReactionSummary {
                emoji: emoji.to_owned(),
                count: 1,
                me: false,
                user_ids: vec![user.to_string()],
            });
        }
        (Some(index), false) => {
            let Some(entry) = reactions.get_mut(index) else {
                return Ok(false);
            };
            let before = entry.user_ids.len();
            entry.user_ids.retain(|u| u != user.as_str());
            if entry.user_ids.len() == before {
                return Ok(false);
            }
            entry.count = u32::try_from(entry.user_ids.len()).unwrap_or(u32::MAX);
            if entry.user_ids.is_empty() {
                reactions.remove(index);
            }
        }
        (None, false) => return Ok(false),
    }
    Ok(true)
}

/// The lowest seq `user` may read in the room.
pub fn first_visible_seq(state: &RoomState, user: &UserId) -> u64 {
    match (state.room.history_visibility(), state.members.get(user)) {
        (v1::HistoryVisibility::Full, _) => 1,
        (_, Some(member)) => member.joined_seq.max(1),
        (_, None) => u64::MAX,
    }
}

/// What tells a retry from a conflicting reuse of a client_msg_id.
fn content_hash(send: &crate::chat::command::SendOp) -> [u8; 32] {
    use prost::Message as _;
    use sha2::Digest as _;
    let mut hasher = sha2::Sha256::new();
    hasher.update(send.content.encode_to_vec());
    hasher.update(send.reply_to_seq.to_be_bytes());
    hasher.update(send.thread_root_seq.to_be_bytes());
    hasher.finalize().into()
}
