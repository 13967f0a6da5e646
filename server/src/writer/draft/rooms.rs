//! Room commands: CreateGroup, OpenDirect, UpdateRoom.

use std::collections::BTreeSet;
use std::sync::Arc;

use chatwire_protocol::v1::{self, room_event::Kind};

use super::{Draft, RoomState};
use crate::backend::store::Head;
use crate::chat::command::Outcome;
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;

impl Draft<'_> {
    pub(super) fn create_group(
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

    pub(super) async fn open_direct(
        &mut self,
        actor: &UserId,
        other: &UserId,
    ) -> Result<Outcome, ChatError> {
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

    pub(super) fn update_room(
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
}
