//! The moderation stage of Send and Edit (docs/operations.md "Moderation", issue 21). It runs in
//! the session, after validation and before the command is handed to the room's shard queue,
//! never inside the writer's batch, so a slow check (the external scorer) stalls only its own
//! request. Its [`Verdict`] travels with the command: the writer stores the masked content but
//! dedupes on the content the client sent.
//!
//! ```text
//!  Send/Edit ─▶ validate ─▶ Stage::check ─▶ word lists (server, room): reject | mask | flag
//!                                         ├▶ spam rules (repeat, links, burst): score points
//!                                         ├▶ external scorer (timeout; fail open or closed)
//!                                         └▶ Verdict {score, flagged, masked} ─▶ shard queue
//! ```

pub mod review;
pub mod scorer;
pub mod spam;
mod words;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatwire_protocol::v1;

use crate::chat::command::Verdict;
use crate::chat::error::ChatError;
use crate::config::ModerationConfig;
use scorer::Scorer;
use spam::SpamState;

/// What is checked.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The room id.
    pub room: &'a str,
    /// The sender's user id.
    pub sender: &'a str,
    /// The Send's client_msg_id; `None` for an Edit (spam rules of sends do not apply).
    pub client_msg_id: Option<&'a str>,
    /// The content as the client sent it.
    pub content: &'a v1::Content,
}

/// The clock of the scorer's timeout: tokio's timer in the server, a test's own in tests.
#[async_trait::async_trait]
pub trait Timer: Send + Sync + std::fmt::Debug {
    /// Completes once `duration` has passed.
    async fn sleep(&self, duration: Duration);
}

/// [`Timer`] on tokio's clock.
#[derive(Debug, Default)]
pub struct TokioTimer;

#[async_trait::async_trait]
impl Timer for TokioTimer {
    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// The moderation stage.
#[derive(Debug)]
pub struct Stage {
    config: ModerationConfig,
    spam: Mutex<SpamState>,
    scorer: Option<Arc<dyn Scorer>>,
    timer: Arc<dyn Timer>,
}

impl Default for Stage {
    fn default() -> Self {
        Self::with_scorer(ModerationConfig::default(), None)
    }
}

impl Stage {
    /// The stage `config` describes (its scorer built from `scorer.url`).
    pub fn from_config(config: &ModerationConfig) -> Result<Self, String> {
        let scorer: Option<Arc<dyn Scorer>> = match &config.scorer.url {
            Some(url) => Some(Arc::new(scorer::HttpScorer::new(
                url,
                Duration::from_millis(config.scorer.timeout_ms),
            )?)),
            None => None,
        };
        Ok(Self::with_scorer(config.clone(), scorer))
    }

    /// The stage with a given scorer (tests inject one).
    pub fn with_scorer(config: ModerationConfig, scorer: Option<Arc<dyn Scorer>>) -> Self {
        Self {
            config,
            spam: Mutex::new(SpamState::default()),
            scorer,
            timer: Arc::new(TokioTimer),
        }
    }

    /// The stage with the scorer's timeout on `timer` (tests inject a clock).
    pub fn with_timer(mut self, timer: Arc<dyn Timer>) -> Self {
        self.timer = timer;
        self
    }

    /// Checks a Send or an Edit at `now_ms`: a verdict, or ERROR_CODE_CONTENT_REJECTED (a
    /// listed word with the action reject, or a score at or above `reject_score`), or
    /// ERROR_CODE_UNAVAILABLE when the scorer failed and the stage fails closed.
    pub async fn check(&self, subject: Subject<'_>, now_ms: i64) -> Result<Verdict, ChatError> {
        let text = subject.content.text.as_str();
        let rules = self
            .config
            .words
            .iter()
            .chain(self.config.rooms.get(subject.room).into_iter().flatten());
        let hits = words::check(rules, text);
        if hits.reject {
            return Err(ChatError::ContentRejected("the text holds a listed word"));
        }
        let mut verdict = Verdict {
            flagged: hits.flag,
            ..Verdict::default()
        };
        if hits.flag {
            verdict.reasons.push("words.flag".to_owned());
        }
        if let Some(masked) = hits.masked {
            verdict.masked = Some(v1::Content {
                text: masked,
                ..subject.content.clone()
            });
            verdict.reasons.push("words.mask".to_owned());
        }
        let broken = match subject.client_msg_id {
            Some(id) => self.lock_spam().observe_send(
                &self.config.spam,
                subject.room,
                subject.sender,
                id,
                text,
                now_ms,
            ),
            None if spam::links(text) > self.config.spam.max_links as usize => {
                vec![spam::Rule::Links]
            }
            None => Vec::new(),
        };
        for rule in broken {
            verdict.score = verdict.score.saturating_add(self.config.spam.points);
            verdict.reasons.push(rule.name().to_owned());
        }
        if let Some(scorer) = &self.scorer
            && !text.is_empty()
        {
            verdict.score = verdict
                .score
                .saturating_add(self.external_score(scorer.as_ref(), subject, text).await?);
        }
        let reject = self.config.reject_score;
        if reject > 0 && verdict.score >= reject {
            return Err(ChatError::ContentRejected(
                "the message's score is too high",
            ));
        }
        let flag = self.config.flag_score;
        if flag > 0 && verdict.score >= flag {
            verdict.flagged = true;
        }
        Ok(verdict)
    }

    /// The scorer's score within the timeout; on a failure, 0 (fail open) or UNAVAILABLE.
    async fn external_score(
        &self,
        scorer: &dyn Scorer,
        subject: Subject<'_>,
        text: &str,
    ) -> Result<u32, ChatError> {
        let timeout = Duration::from_millis(self.config.scorer.timeout_ms);
        // Biased, the deadline first: the timer always starts (a random pick could skip it when
        // the scorer answers at once), and a deadline already passed wins.
        let outcome = tokio::select! {
            biased;
            () = self.timer.sleep(timeout) => Err(format!("the scorer timed out after {timeout:?}")),
            outcome = scorer.score(subject.room, subject.sender, text) => outcome,
        };
        match outcome {
            Ok(score) => Ok(score.min(100)),
            Err(why) if self.config.scorer.fail_open => {
                tracing::warn!(error = %why, "moderation scorer failed; the message goes on unscored (fail open)");
                Ok(0)
            }
            Err(why) => {
                tracing::warn!(error = %why, "moderation scorer failed; the message is refused (fail closed)");
                Err(ChatError::Unavailable(format!("moderation scorer: {why}")))
            }
        }
    }

    fn lock_spam(&self) -> std::sync::MutexGuard<'_, SpamState> {
        self.spam
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests;
