//! Validation of client-supplied content, at the edge: a `Content` that passes is within
//! every limit advertised in `Limits`.

use chatwire_protocol::{limits, v1};
use prost::Message;

use super::error::ChatError;
use super::ids::UserId;

/// The content limits in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentLimits {
    /// Longest text, in Unicode scalar values.
    pub max_text_chars: usize,
    /// Largest app payload.
    pub max_app_payload_bytes: usize,
    /// Most attachments.
    pub max_attachments: usize,
    /// Most mentions.
    pub max_mentions: usize,
    /// Largest encoded content.
    pub max_content_bytes: usize,
}

impl Default for ContentLimits {
    fn default() -> Self {
        Self {
            max_text_chars: limits::DEFAULT_MAX_TEXT_CHARS,
            max_app_payload_bytes: limits::DEFAULT_MAX_APP_PAYLOAD_BYTES,
            max_attachments: limits::DEFAULT_MAX_ATTACHMENTS,
            max_mentions: limits::DEFAULT_MAX_MENTIONS,
            // Leaves room in the event for ids and metadata under the 16 KiB payload cap.
            max_content_bytes: limits::DEFAULT_MAX_CONTENT_BYTES,
        }
    }
}

/// Longest client_msg_id, in bytes.
pub const MAX_CLIENT_MSG_ID_BYTES: usize = 64;

/// Longest emoji, in bytes.
pub const MAX_EMOJI_BYTES: usize = 64;

/// Longest group name, in characters.
pub const MAX_ROOM_NAME_CHARS: usize = 200;

/// Longest topic, in characters.
pub const MAX_TOPIC_CHARS: usize = 1000;

/// Checks a message's content; an empty message (no text, attachment or payload) is refused.
pub fn content(
    content: Option<v1::Content>,
    limits: &ContentLimits,
) -> Result<v1::Content, ChatError> {
    let content = content.ok_or_else(|| ChatError::invalid("content", "missing"))?;
    if content.text.chars().count() > limits.max_text_chars {
        return Err(ChatError::TooLarge {
            field: "content.text",
            reason: format!("more than {} characters", limits.max_text_chars),
        });
    }
    if content.app_payload.len() > limits.max_app_payload_bytes {
        return Err(ChatError::TooLarge {
            field: "content.app_payload",
            reason: format!("more than {} bytes", limits.max_app_payload_bytes),
        });
    }
    if content.attachments.len() > limits.max_attachments {
        return Err(ChatError::TooLarge {
            field: "content.attachments",
            reason: format!("more than {}", limits.max_attachments),
        });
    }
    if content.mentions.len() > limits.max_mentions {
        return Err(ChatError::TooLarge {
            field: "content.mentions",
            reason: format!("more than {}", limits.max_mentions),
        });
    }
    if let Some(bad) = content.mentions.iter().find(|m| UserId::parse(m).is_err()) {
        return Err(ChatError::invalid(
            "content.mentions",
            format!("{:?} is not a user id", truncate(bad)),
        ));
    }
    if content.encoded_len() > limits.max_content_bytes {
        return Err(ChatError::TooLarge {
            field: "content",
            reason: format!("more than {} bytes encoded", limits.max_content_bytes),
        });
    }
    let empty = content.text.trim().is_empty()
        && content.attachments.is_empty()
        && content.app_payload.is_empty();
    if empty {
        return Err(ChatError::invalid("content", "empty message"));
    }
    Ok(content)
}

/// Checks a client_msg_id: 1 to 64 bytes of printable ASCII.
pub fn client_msg_id(raw: &str) -> Result<(), ChatError> {
    let printable = raw.bytes().all(|b| b.is_ascii_graphic());
    if raw.is_empty() || raw.len() > MAX_CLIENT_MSG_ID_BYTES || !printable {
        return Err(ChatError::invalid(
            "client_msg_id",
            "1 to 64 printable ASCII characters required",
        ));
    }
    Ok(())
}

/// Checks an emoji: 1 to 64 bytes, no whitespace or control characters.
pub fn emoji(raw: &str) -> Result<(), ChatError> {
    let clean = !raw.chars().any(|c| c.is_whitespace() || c.is_control());
    if raw.is_empty() || raw.len() > MAX_EMOJI_BYTES || !clean {
        return Err(ChatError::invalid(
            "emoji",
            "1 to 64 bytes without spaces required",
        ));
    }
    Ok(())
}

/// The longest moderation reason (Delete, RestrictMember), in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Checks a free-text field against a character limit.
pub fn text(field: &'static str, raw: &str, max_chars: usize) -> Result<(), ChatError> {
    if raw.chars().count() > max_chars {
        return Err(ChatError::TooLarge {
            field,
            reason: format!("more than {max_chars} characters"),
        });
    }
    if raw.chars().any(char::is_control) {
        return Err(ChatError::invalid(
            field,
            "control characters are not allowed",
        ));
    }
    Ok(())
}

/// Parses a user id from a request field.
pub fn user_id(field: &'static str, raw: &str) -> Result<UserId, ChatError> {
    UserId::parse(raw).map_err(|err| ChatError::invalid(field, err.to_string()))
}

/// At most 32 characters of a peer-supplied string, for error messages and logs.
pub fn truncate(raw: &str) -> String {
    raw.chars().take(32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text_content(text: &str) -> Option<v1::Content> {
        Some(v1::Content {
            text: text.to_owned(),
            ..Default::default()
        })
    }

    #[test]
    fn content_limits_are_enforced() {
        let limits = ContentLimits {
            max_text_chars: 3,
            ..ContentLimits::default()
        };
        assert!(content(text_content("héé"), &limits).is_ok());
        assert!(matches!(
            content(text_content("four"), &limits),
            Err(ChatError::TooLarge {
                field: "content.text",
                ..
            })
        ));
        assert!(matches!(
            content(text_content("  "), &limits),
            Err(ChatError::InvalidArgument {
                field: "content",
                ..
            })
        ));
        assert!(matches!(
            content(None, &limits),
            Err(ChatError::InvalidArgument { .. })
        ));
        let mention = Some(v1::Content {
            text: "hi".into(),
            mentions: vec!["a b".into()],
            ..Default::default()
        });
        assert!(matches!(
            content(mention, &limits),
            Err(ChatError::InvalidArgument {
                field: "content.mentions",
                ..
            })
        ));
    }

    #[test]
    fn ids_and_emoji_are_checked() {
        assert!(client_msg_id("7d1c-11").is_ok());
        assert!(client_msg_id("").is_err());
        assert!(client_msg_id("a b").is_err());
        assert!(client_msg_id(&"x".repeat(65)).is_err());
        assert!(emoji("👍").is_ok());
        assert!(emoji("👍 ").is_err());
    }
}
