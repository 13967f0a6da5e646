//! Message commands: Send, Edit, Delete.

use chatwire_protocol::v1::{self, room_event::Kind};

use super::Draft;
use crate::backend::store::{DedupeEntry, Write};
use crate::chat::command::Outcome;
use crate::chat::error::ChatError;
use crate::chat::ids::UserId;

impl Draft<'_> {
    pub(super) async fn send(
        &mut self,
        actor: &UserId,
        send: &crate::chat::command::SendOp,
        masked: Option<&v1::Content>,
    ) -> Result<Outcome, ChatError> {
        // The moderation stage's masked content is what is stored; dedupe (below) compares the
        // content the client sent.
        let stored = masked.unwrap_or(&send.content);
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
        // A restricted member's retries still learn their outcome.
        self.check_not_restricted(self.member_state(actor)?, actor)?;
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
                content: Some(stored.clone()),
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
            content: Some(stored.clone()),
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

    pub(super) async fn edit(
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

    pub(super) async fn delete(
        &mut self,
        actor: &UserId,
        target_seq: u64,
        reason: &str,
    ) -> Result<Outcome, ChatError> {
        let mut message = self
            .visible_message(actor, target_seq, "target_seq")
            .await?;
        let state = self.member_state(actor)?;
        // The admin API moderates every room; in groups, owners, admins and moderators do too.
        if message.sender != actor.as_str() && !self.moderates(state, actor) {
            return Err(ChatError::PermissionDenied(
                "only the author or a group moderator deletes a message",
            ));
        }
        if message.deleted {
            return Ok(Outcome::Seq(0));
        }
        let seq = self.push(
            actor,
            Kind::MessageDeleted(v1::MessageDeleted {
                target_seq,
                reason: reason.to_owned(),
            }),
        )?;
        message.deleted = true;
        message.content = None;
        message.reactions.clear();
        self.messages.insert(target_seq, message);
        self.writes.push(Write::Redact { target_seq });
        Ok(Outcome::Seq(seq))
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
