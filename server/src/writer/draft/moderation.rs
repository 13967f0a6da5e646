//! Moderation in the writer: who moderates a room (deletes others' messages, restricts
//! members), RestrictMember, and the restriction check of Send and React (docs/protocol.md
//! section 6.6).

use std::sync::Arc;

use chatwire_protocol::v1::{self, room_event::Kind};

use super::{Draft, RoomState};
use crate::backend::store::Write;
use crate::chat::command::Outcome;
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;

impl Draft<'_> {
    /// Whether the actor moderates the room: the admin API everywhere; owners, admins and
    /// moderators in groups.
    pub(super) fn moderates(&self, state: &RoomState, actor: &UserId) -> bool {
        self.privileged
            || state.room.kind() == v1::RoomKind::Group
                && matches!(
                    self.acting_role(state, actor),
                    Some(v1::Role::Owner | v1::Role::Admin | v1::Role::Moderator)
                )
    }

    /// Refuses Send and React from a member under a restriction.
    pub(super) fn check_not_restricted(
        &self,
        state: &RoomState,
        actor: &UserId,
    ) -> Result<(), ChatError> {
        if self.privileged {
            return Ok(());
        }
        match state.members.get(actor) {
            Some(member) if member.restricted_until_ms > self.now_ms => {
                let left = member.restricted_until_ms - self.now_ms;
                Err(ChatError::Restricted {
                    retry_after_ms: u32::try_from(left).unwrap_or(u32::MAX),
                    until_ms: member.restricted_until_ms,
                })
            }
            _ => Ok(()),
        }
    }

    /// RestrictMember: a moderator stops a plain member from sending and reacting
    /// until `until_ms`, or lifts the restriction with 0.
    pub(super) fn restrict(
        &mut self,
        actor: &UserId,
        user: &UserId,
        until_ms: i64,
        reason: &str,
    ) -> Result<Outcome, ChatError> {
        let state = self.member_state(actor)?;
        if state.room.kind() != v1::RoomKind::Group {
            return Err(ChatError::FailedPrecondition(
                "direct rooms have no moderators",
            ));
        }
        if !self.moderates(state, actor) {
            return Err(ChatError::PermissionDenied(
                "only moderators restrict members",
            ));
        }
        if user == actor {
            return Err(ChatError::invalid(
                "user_id",
                "moderators cannot restrict themselves",
            ));
        }
        let member = state.members.get(user).ok_or(ChatError::NotFound)?;
        if member.role() != v1::Role::Member {
            return Err(ChatError::PermissionDenied(
                "only plain members can be restricted",
            ));
        }
        if until_ms != 0 && until_ms <= self.now_ms {
            return Err(ChatError::invalid("until_ms", "the time is in the past"));
        }
        let current = if member.restricted_until_ms > self.now_ms {
            member.restricted_until_ms
        } else {
            0
        };
        if current == until_ms {
            return Ok(Outcome::Seq(0));
        }
        let seq = self.push(
            actor,
            Kind::MemberRestricted(v1::MemberRestricted {
                user_id: user.to_string(),
                until_ms,
                reason: reason.to_owned(),
            }),
        )?;
        let state = self.state_mut()?;
        let member = Arc::make_mut(&mut state.members)
            .get_mut(user)
            .ok_or(ChatError::Internal)?;
        member.restricted_until_ms = until_ms;
        let member = member.clone();
        self.writes.push(Write::Member(member));
        Ok(Outcome::Seq(seq))
    }
}
