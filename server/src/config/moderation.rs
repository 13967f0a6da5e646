//! The moderation stage's settings (docs/operations.md "Moderation"): word lists per server and
//! per room, spam rules, score thresholds and an optional external scorer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a listed word does to a message that contains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordAction {
    /// The Send or Edit fails with ERROR_CODE_CONTENT_REJECTED.
    Reject,
    /// The word is replaced by as many `*` as it has characters.
    Mask,
    /// The message is posted and flagged for review.
    Flag,
}

/// One listed word: matched case-insensitively as a whole word of the text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WordRule {
    /// The word (letters and digits; matched whole, ignoring case).
    pub word: String,
    /// What it does.
    pub action: WordAction,
}

/// Spam rules: each one broken adds `points` to the message's score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpamConfig {
    /// The window in which the same text from the same user in the same room counts as a
    /// repeat, ms. Default 60000.
    pub repeat_window_ms: u64,
    /// Sends of the same text within the window before the rule breaks. Default 3.
    pub max_repeats: u32,
    /// Links (`http://`, `https://`, `www.`) one message may hold. Default 5.
    pub max_links: u32,
    /// The window of the burst rule, ms. Default 10000.
    pub burst_window_ms: u64,
    /// Sends one room takes (from everyone) within the burst window before the rule breaks.
    /// Default 200.
    pub max_room_burst: u32,
    /// Score points per broken rule. Default 60.
    pub points: u32,
}

impl Default for SpamConfig {
    fn default() -> Self {
        Self {
            repeat_window_ms: 60_000,
            max_repeats: 3,
            max_links: 5,
            burst_window_ms: 10_000,
            max_room_burst: 200,
            points: 60,
        }
    }
}

/// An external scorer: `POST {url}` with `{"room_id", "sender", "text"}`, answered with
/// `{"score": 0..100}`, added to the message's score.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScorerConfig {
    /// `https://…` (plain `http://` only to loopback). Unset: no external scorer.
    pub url: Option<String>,
    /// How long a scoring may take, ms. Default 500.
    pub timeout_ms: u64,
    /// On a timeout or error: true posts the message unscored (fail open); false refuses it
    /// with ERROR_CODE_UNAVAILABLE, retryable (fail closed). Default true.
    pub fail_open: bool,
}

impl Default for ScorerConfig {
    fn default() -> Self {
        Self {
            url: None,
            timeout_ms: 500,
            fail_open: true,
        }
    }
}

/// The moderation stage (docs/operations.md "Moderation").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModerationConfig {
    /// Word rules for every room.
    pub words: Vec<WordRule>,
    /// Word rules for one room each, by room id, on top of the server's.
    pub rooms: BTreeMap<String, Vec<WordRule>>,
    /// Spam rules.
    pub spam: SpamConfig,
    /// The external scorer.
    pub scorer: ScorerConfig,
    /// A score at or above this flags the message (0: never). Default 50.
    pub flag_score: u32,
    /// A score at or above this rejects the message (0: never). Default 0.
    pub reject_score: u32,
}

impl Default for ModerationConfig {
    fn default() -> Self {
        Self {
            words: Vec::new(),
            rooms: BTreeMap::new(),
            spam: SpamConfig::default(),
            scorer: ScorerConfig::default(),
            flag_score: 50,
            reject_score: 0,
        }
    }
}
