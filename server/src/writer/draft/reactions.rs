//! React: adding and removing a user's reaction to a message.
//!
//! Who reacted is kept one row per reaction ([`Write::Reaction`]); the message's state keeps
//! per emoji a count and at most [`REACTION_SAMPLE`] user ids for display (issue 15 M7: it
//! kept every reacting user, so a popular message grew without bound and every reaction
//! rewrote all of them). Messages stored before that keep their longer lists until their next
//! reaction; a user listed there counts as having reacted.

use chatwire_protocol::v1::{self, room_event::Kind};

use super::Draft;
use crate::backend::store::Write;
use crate::chat::command::Outcome;
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;

/// Most distinct emoji on one message.
pub const MAX_EMOJI_PER_MESSAGE: usize = 50;

/// Most user ids a message's state keeps per emoji (readers see them; `count` is the total).
pub const REACTION_SAMPLE: usize = 10;

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
        let reacted = self.has_reacted(&message, actor, emoji).await?;
        if !apply_reaction(&mut message.reactions, actor, emoji, add, reacted)? {
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
        self.reactions
            .insert((target_seq, actor.clone(), emoji.to_owned()), add);
        self.writes.push(Write::Reaction {
            user: actor.clone(),
            target_seq,
            emoji: emoji.to_owned(),
            added: add,
        });
        self.put_message(message);
        Ok(Outcome::Seq(seq))
    }

    /// Whether `user` has reacted to `message` with `emoji`: this batch's own changes first,
    /// then the stored rows, then (for messages stored before the rows) the message's list.
    async fn has_reacted(
        &self,
        message: &v1::Message,
        user: &UserId,
        emoji: &str,
    ) -> Result<bool, ChatError> {
        let key = (message.seq, user.clone(), emoji.to_owned());
        if let Some(reacted) = self.reactions.get(&key) {
            return Ok(*reacted);
        }
        let listed = message
            .reactions
            .iter()
            .any(|r| r.emoji == emoji && r.user_ids.iter().any(|u| u == user.as_str()));
        if listed {
            return Ok(true);
        }
        let stored = self
            .store
            .reactions_of(&self.room_id, user, message.seq, message.seq)
            .await?;
        Ok(stored.iter().any(|(_, e)| e == emoji))
    }
}

/// Adds or removes `user`'s reaction (`reacted`: whether it is there now); false when nothing
/// changed. Keeps the count and a sample of at most [`REACTION_SAMPLE`] user ids.
fn apply_reaction(
    reactions: &mut Vec<v1::ReactionSummary>,
    user: &UserId,
    emoji: &str,
    add: bool,
    reacted: bool,
) -> Result<bool, ChatError> {
    if add == reacted {
        return Ok(false);
    }
    let position = reactions.iter().position(|r| r.emoji == emoji);
    match (position, add) {
        (Some(index), true) => {
            let Some(entry) = reactions.get_mut(index) else {
                return Ok(false);
            };
            entry.count = entry.count.saturating_add(1);
            if entry.user_ids.len() < REACTION_SAMPLE {
                entry.user_ids.push(user.to_string());
            }
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
            entry.user_ids.retain(|u| u != user.as_str());
            // A list from before the sample (every user) shrinks to the sample.
            entry.user_ids.truncate(REACTION_SAMPLE);
            entry.count = entry.count.saturating_sub(1);
            if entry.count == 0 {
                reactions.remove(index);
            }
        }
        (None, false) => return Ok(false),
    }
    Ok(true)
}
