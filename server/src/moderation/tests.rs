//! The stage as a whole: word lists per server and per room, spam scores on an injected clock,
//! thresholds, and the external scorer's timeout on an injected clock, failing open or closed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatwire_protocol::v1;

use super::scorer::Scorer;
use super::{Stage, Subject, Timer};
use crate::chat::error::ChatError;
use crate::config::{ModerationConfig, SpamConfig, WordAction, WordRule};

fn content(text: &str) -> v1::Content {
    v1::Content {
        text: text.into(),
        ..Default::default()
    }
}

fn send<'a>(room: &'a str, id: &'a str, content: &'a v1::Content) -> Subject<'a> {
    Subject {
        room,
        sender: "mallory",
        client_msg_id: Some(id),
        content,
    }
}

fn config() -> ModerationConfig {
    ModerationConfig {
        words: vec![
            WordRule {
                word: "heck".into(),
                action: WordAction::Mask,
            },
            WordRule {
                word: "scam".into(),
                action: WordAction::Reject,
            },
        ],
        rooms: BTreeMap::from([(
            "g.kids".to_owned(),
            vec![WordRule {
                word: "bet".into(),
                action: WordAction::Flag,
            }],
        )]),
        spam: SpamConfig {
            repeat_window_ms: 1_000,
            max_repeats: 1,
            ..SpamConfig::default()
        },
        ..ModerationConfig::default()
    }
}

#[tokio::test]
async fn word_lists_reject_mask_and_flag_per_server_and_per_room() {
    let stage = Stage::with_scorer(config(), None);
    let scam = content("a scam, obviously");
    let err = stage
        .check(send("g.any", "1", &scam), 0)
        .await
        .expect_err("rejected");
    assert!(matches!(err, ChatError::ContentRejected(_)), "{err:?}");
    assert_eq!(err.to_proto().code(), v1::ErrorCode::ContentRejected);
    assert_eq!(err.to_proto().field, "content.text");
    let heck = content("what the heck");
    let verdict = stage
        .check(send("g.any", "2", &heck), 0)
        .await
        .expect("passes");
    assert_eq!(
        verdict.masked.map(|c| c.text),
        Some("what the ****".to_owned())
    );
    assert!(!verdict.flagged);
    // The room's own list applies in that room only.
    let bet = content("place a bet");
    let other = stage
        .check(send("g.any", "3", &bet), 0)
        .await
        .expect("passes");
    assert!(!other.flagged);
    let kids = stage
        .check(send("g.kids", "4", &bet), 0)
        .await
        .expect("passes");
    assert!(kids.flagged);
    assert_eq!(kids.reasons, vec!["words.flag".to_owned()]);
}

#[tokio::test]
async fn spam_scores_flag_and_over_the_reject_score_reject_on_the_injected_clock() {
    let stage = Stage::with_scorer(config(), None);
    let text = content("join my channel");
    let first = stage
        .check(send("g.r", "1", &text), 1_000)
        .await
        .expect("first");
    assert_eq!((first.score, first.flagged), (0, false));
    let second = stage
        .check(send("g.r", "2", &text), 1_500)
        .await
        .expect("second");
    assert_eq!((second.score, second.flagged), (60, true));
    assert_eq!(second.reasons, vec!["spam.repeat".to_owned()]);
    // Past the window the text counts afresh.
    let later = stage
        .check(send("g.r", "3", &text), 3_000)
        .await
        .expect("later");
    assert_eq!(later.score, 0);
    let strict = Stage::with_scorer(
        ModerationConfig {
            reject_score: 60,
            ..config()
        },
        None,
    );
    strict
        .check(send("g.r", "1", &text), 0)
        .await
        .expect("first");
    let err = strict
        .check(send("g.r", "2", &text), 10)
        .await
        .expect_err("rejected");
    assert!(matches!(err, ChatError::ContentRejected(_)), "{err:?}");
    // An Edit is not a send: no repeat or burst counting.
    let edit = Subject {
        client_msg_id: None,
        ..send("g.r", "", &text)
    };
    assert_eq!(strict.check(edit, 20).await.expect("edit").score, 0);
}

/// A scorer that answers `score` at once, or never (`None`).
#[derive(Debug)]
struct FixedScorer(Option<u32>);

#[async_trait]
impl Scorer for FixedScorer {
    async fn score(&self, _room: &str, _sender: &str, _text: &str) -> Result<u32, String> {
        match self.0 {
            Some(score) => Ok(score),
            None => std::future::pending().await,
        }
    }
}

/// The injected clock of the scorer's timeout: the deadline has passed (`fired`) or never
/// comes. Records the durations it was asked to wait.
#[derive(Debug)]
struct ManualTimer {
    fired: bool,
    asked: std::sync::Mutex<Vec<Duration>>,
}

#[async_trait]
impl Timer for ManualTimer {
    async fn sleep(&self, duration: Duration) {
        self.asked.lock().expect("lock").push(duration);
        if !self.fired {
            std::future::pending::<()>().await;
        }
    }
}

fn with_scorer(
    score: Option<u32>,
    deadline_passed: bool,
    fail_open: bool,
) -> (Stage, Arc<ManualTimer>) {
    let mut config = config();
    config.scorer.timeout_ms = 500;
    config.scorer.fail_open = fail_open;
    config.flag_score = 50;
    let timer = Arc::new(ManualTimer {
        fired: deadline_passed,
        asked: std::sync::Mutex::new(Vec::new()),
    });
    let stage = Stage::with_scorer(config, Some(Arc::new(FixedScorer(score))))
        .with_timer(Arc::clone(&timer) as Arc<dyn Timer>);
    (stage, timer)
}

#[tokio::test]
async fn the_scorer_adds_its_score_before_the_deadline() {
    let text = content("hello");
    let (stage, timer) = with_scorer(Some(70), false, true);
    let verdict = stage
        .check(send("g.r", "1", &text), 0)
        .await
        .expect("scored");
    assert_eq!((verdict.score, verdict.flagged), (70, true));
    assert_eq!(
        *timer.asked.lock().expect("lock"),
        vec![Duration::from_millis(500)]
    );
}

#[tokio::test]
async fn a_scorer_past_its_timeout_fails_open_or_closed_as_configured() {
    let text = content("hello");
    let (open, _) = with_scorer(None, true, true);
    let verdict = open
        .check(send("g.r", "1", &text), 0)
        .await
        .expect("fail open: unscored");
    assert_eq!((verdict.score, verdict.flagged), (0, false));
    let (closed, _) = with_scorer(None, true, false);
    let err = closed
        .check(send("g.r", "2", &text), 0)
        .await
        .expect_err("fail closed");
    assert!(matches!(err, ChatError::Unavailable(_)), "{err:?}");
    assert!(err.to_proto().retryable);
    assert_eq!(err.to_proto().code(), v1::ErrorCode::Unavailable);
}
