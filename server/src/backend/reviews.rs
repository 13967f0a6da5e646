//! The moderation review queue (issue 21 part 2; docs/operations.md "Review queue"): one item
//! per reported or flagged message, holding the moderation stage's flag (score and rules) and
//! every member's report (reporter, reason, time), open until a moderator approves the message
//! (it stays) or removes it (it is deleted, with a reason).
//!
//! ```text
//!  Send ─▶ stage flags it ─┐                          GET  /admin/reviews        (open items)
//!                          ├─▶ Reviews::update_review ─▶ item (room, seq): open ─▶ approve | remove
//!  ReportMessage ──────────┘        (compare-and-set)                         (resolution: who, why, when)
//! ```
//!
//! The rules of an item are the pure functions [`with_flag`], [`with_report`] and
//! [`resolved`]; the stores only apply them atomically ([`Reviews::update_review`]: one redb
//! transaction, or a compare-and-set loop of lightweight transactions on ScyllaDB), so both
//! stores behave the same (`server/tests/support/reviews_suite.rs`). Items are stored as
//! [`ReviewItem`] encoded with prost. No message content is kept here: a moderator reads it
//! from the log, and a removal redacts it there (R-8.6.2).

use async_trait::async_trait;
use chatwire_protocol::v1;

use super::store::StoreError;
use crate::chat::ids::RoomId;

/// One review item: a message with its flag, its reports and, once reviewed, its resolution.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReviewItem {
    /// The room.
    #[prost(string, tag = "1")]
    pub room_id: String,
    /// The message's seq (its MessageCreated).
    #[prost(uint64, tag = "2")]
    pub seq: u64,
    /// The message's author.
    #[prost(string, tag = "3")]
    pub sender: String,
    /// When the item was opened (its first flag or report), Unix ms.
    #[prost(int64, tag = "4")]
    pub opened_ms: i64,
    /// The moderation stage flagged the message.
    #[prost(bool, tag = "5")]
    pub flagged: bool,
    /// The stage's score of the message (0 when it was only reported).
    #[prost(uint32, tag = "6")]
    pub score: u32,
    /// The stage's rules that flagged or scored it (`words.flag`, `spam.repeat`, ...).
    #[prost(string, repeated, tag = "7")]
    pub reasons: Vec<String>,
    /// Members' reports, one per reporter (the first), in the order they came.
    #[prost(message, repeated, tag = "8")]
    pub reports: Vec<ReviewReport>,
    /// How the item was reviewed; `None` while it is open.
    #[prost(message, optional, tag = "9")]
    pub resolution: Option<Resolution>,
}

/// A member's report of a message.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct ReviewReport {
    /// Who reported it.
    #[prost(string, tag = "1")]
    pub reporter: String,
    /// Why (1 to 500 characters).
    #[prost(string, tag = "2")]
    pub reason: String,
    /// When, Unix ms.
    #[prost(int64, tag = "3")]
    pub at_ms: i64,
}

/// The outcome of a review.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct Resolution {
    /// True: removed (the message was deleted); false: approved (it stays).
    #[prost(bool, tag = "1")]
    pub removed: bool,
    /// Who reviewed it (`system` for the admin API, else the moderator's user id).
    #[prost(string, tag = "2")]
    pub by: String,
    /// The reviewer's reason (required for a removal).
    #[prost(string, tag = "3")]
    pub reason: String,
    /// When, Unix ms.
    #[prost(int64, tag = "4")]
    pub at_ms: i64,
    /// The seq of the MessageDeleted of a removal; 0 for an approval, or when the message was
    /// already deleted.
    #[prost(uint64, tag = "5")]
    pub deleted_seq: u64,
}

impl ReviewItem {
    /// Open: not reviewed yet.
    pub fn is_open(&self) -> bool {
        self.resolution.is_none()
    }

    /// Open, approved or removed.
    pub fn status(&self) -> v1::ReviewStatus {
        match &self.resolution {
            None => v1::ReviewStatus::Open,
            Some(r) if r.removed => v1::ReviewStatus::Removed,
            Some(_) => v1::ReviewStatus::Approved,
        }
    }

    /// The item's id, `<room id>:<seq>` (see `ReviewKey::id`); a stored room id is valid, so
    /// this needs no parse.
    pub fn id(&self) -> String {
        format!("{}:{}", self.room_id, self.seq)
    }

    /// A new, open item of message `seq` of `room` by `sender`, opened at `at_ms`.
    fn opened(room: &RoomId, seq: u64, sender: &str, at_ms: i64) -> Self {
        Self {
            room_id: room.as_str().to_owned(),
            seq,
            sender: sender.to_owned(),
            opened_ms: at_ms,
            ..Self::default()
        }
    }
}

/// A review item's key: the message.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReviewKey {
    /// The room.
    pub room: RoomId,
    /// The message's seq.
    pub seq: u64,
}

/// The item with the stage's flag added (score and rules), opening it when there is none.
/// `None` (no change) when it is flagged already: a flag is recorded once per message.
pub fn with_flag(
    current: Option<&ReviewItem>,
    key: &ReviewKey,
    sender: &str,
    score: u32,
    reasons: &[String],
    at_ms: i64,
) -> Option<ReviewItem> {
    let mut item = current
        .cloned()
        .unwrap_or_else(|| ReviewItem::opened(&key.room, key.seq, sender, at_ms));
    if item.flagged {
        return None;
    }
    item.flagged = true;
    item.score = score;
    item.reasons = reasons.to_vec();
    Some(item)
}

/// The item with `report` added, opening it when there is none. `None` (no change) when the
/// reporter reported this message before: a report counts once per member, and the first
/// reason stands. A report of a reviewed message is recorded but does not reopen it (the
/// review stands; a moderator who wants another look lists the room's items).
pub fn with_report(
    current: Option<&ReviewItem>,
    key: &ReviewKey,
    sender: &str,
    report: &ReviewReport,
) -> Option<ReviewItem> {
    let mut item = current
        .cloned()
        .unwrap_or_else(|| ReviewItem::opened(&key.room, key.seq, sender, report.at_ms));
    if item.reports.iter().any(|r| r.reporter == report.reporter) {
        return None;
    }
    item.reports.push(report.clone());
    Some(item)
}

/// The item resolved with `resolution`. `None` (no change) when it was reviewed already: the
/// first review stands, and the caller answers with the item as it is.
pub fn resolved(current: &ReviewItem, resolution: Resolution) -> Option<ReviewItem> {
    if !current.is_open() {
        return None;
    }
    Some(ReviewItem {
        resolution: Some(resolution),
        ..current.clone()
    })
}

/// A change of one item, applied atomically: the current item (`None` when there is none) to
/// the new one, or `None` to leave it as it is.
pub type ReviewChange<'a> = &'a (dyn Fn(Option<&ReviewItem>) -> Option<ReviewItem> + Send + Sync);

/// What [`Reviews::update_review`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReviewUpdate {
    /// The item after the call (`None`: there is none).
    pub item: Option<ReviewItem>,
    /// True when the change was written; false when it left the item as it was.
    pub changed: bool,
}

/// Which items a listing returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReviewScope {
    /// The open items of every room, ordered by (room, seq).
    Open,
    /// Every item of one room, open or reviewed, ordered by seq.
    Room(RoomId),
}

/// The review queue's storage.
#[async_trait]
pub trait Reviews: Send + Sync {
    /// The item of one message, if any.
    async fn review(&self, key: &ReviewKey) -> Result<Option<ReviewItem>, StoreError>;

    /// Applies `change` to the item of `key` atomically: with concurrent updates of the same
    /// item each sees the result of the others (the change may run more than once). Keeps the
    /// open-items index in step.
    async fn update_review(
        &self,
        key: &ReviewKey,
        change: ReviewChange<'_>,
    ) -> Result<ReviewUpdate, StoreError>;

    /// Up to `limit` items of `scope` after `after` (exclusive; `None`: from the start).
    async fn reviews(
        &self,
        scope: &ReviewScope,
        after: Option<&ReviewKey>,
        limit: usize,
    ) -> Result<Vec<ReviewItem>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> ReviewKey {
        ReviewKey {
            room: RoomId::parse("g:team").expect("room"),
            seq: 7,
        }
    }

    fn report(reporter: &str, at_ms: i64) -> ReviewReport {
        ReviewReport {
            reporter: reporter.to_owned(),
            reason: format!("{reporter} says spam"),
            at_ms,
        }
    }

    #[test]
    fn reports_count_once_per_reporter_and_the_first_opens_the_item() {
        let first = with_report(None, &key(), "bob", &report("ann", 10)).expect("opened");
        assert_eq!(
            (first.opened_ms, first.sender.as_str(), first.is_open()),
            (10, "bob", true)
        );
        assert_eq!(
            with_report(Some(&first), &key(), "bob", &report("ann", 20)),
            None
        );
        let second = with_report(Some(&first), &key(), "bob", &report("cy", 30)).expect("added");
        let reporters: Vec<_> = second.reports.iter().map(|r| r.reporter.as_str()).collect();
        assert_eq!(reporters, ["ann", "cy"]);
        assert_eq!(second.opened_ms, 10);
    }

    #[test]
    fn a_flag_is_recorded_once_and_the_first_review_stands() {
        let reasons = vec!["words.flag".to_owned()];
        let flagged = with_flag(None, &key(), "bob", 60, &reasons, 5).expect("opened");
        assert!(flagged.flagged && flagged.score == 60 && flagged.reasons == reasons);
        assert_eq!(with_flag(Some(&flagged), &key(), "bob", 90, &[], 6), None);
        let approve = Resolution {
            by: "system".to_owned(),
            at_ms: 9,
            ..Resolution::default()
        };
        let approved = resolved(&flagged, approve).expect("resolved");
        assert!(!approved.is_open());
        let remove = Resolution {
            removed: true,
            ..Resolution::default()
        };
        assert_eq!(resolved(&approved, remove), None);
        // A report after the review is kept, and the item stays reviewed.
        let reported =
            with_report(Some(&approved), &key(), "bob", &report("ann", 11)).expect("recorded");
        assert!(!reported.is_open() && reported.reports.len() == 1);
    }
}
