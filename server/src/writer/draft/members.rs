//! Membership commands: AddMembers, RemoveMember, SetRole, Leave.

use std::collections::BTreeSet;
use std::sync::Arc;

use chatwire_protocol::v1::{self, room_event::Kind};

use super::Draft;
use crate::backend::store::Write;
use crate::chat::command::Outcome;
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;

impl Draft<'_> {
    pub(super) fn add_members(
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
        if matches!(role, v1::Role::Admin | v1::Role::Moderator)
            && self.acting_role(state, actor) != Some(v1::Role::Owner)
        {
            return Err(ChatError::PermissionDenied(
                "only owners add admins and moderators",
            ));
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

    pub(super) fn remove_member(
        &mut self,
        actor: &UserId,
        user: &UserId,
    ) -> Result<Outcome, ChatError> {
        let state = self.require_group_role(actor, &[v1::Role::Owner, v1::Role::Admin])?;
        if user == actor {
            return Err(ChatError::invalid("user_id", "use LeaveRoom to leave"));
        }
        let target = state.role_of(user).ok_or(ChatError::NotFound)?;
        let can = match self.acting_role(state, actor) {
            Some(v1::Role::Owner) => true,
            Some(v1::Role::Admin) => matches!(target, v1::Role::Member | v1::Role::Moderator),
            _ => false,
        };
        if !can {
            return Err(ChatError::PermissionDenied(
                "admins remove only members and moderators",
            ));
        }
        Ok(Outcome::Seq(self.remove(
            actor,
            user,
            v1::LeaveReason::Removed,
        )?))
    }

    pub(super) fn set_role(
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

    pub(super) fn leave(&mut self, actor: &UserId) -> Result<Outcome, ChatError> {
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
}
