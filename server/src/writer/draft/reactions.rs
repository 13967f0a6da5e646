//! React: adding and removing a user's reaction to a message.

use chatwire_protocol::v1::{self, room_event::Kind};

use super::Draft;
use crate::chat::command::Outcome;
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;

impl Draft<'_> {
    pub(super) async fn react(
        &mut self,
        actor: &UserId,
        target_seq: u64,
        emoji: &str,
        add: bool,
    ) -> Result<Outcome, ChatError> {
        let mut message = self
            .visible_message(actor, target_seq, "target_seq")
            .await?;
        self.check_not_restricted(self.member_state(actor)?, actor)?;
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
