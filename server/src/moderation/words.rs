//! Word lists: whole-word, case-insensitive matches, each with an action.

use crate::config::{WordAction, WordRule};

/// What the word lists make of one text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct WordHits {
    /// A listed word with the action reject was found.
    pub(super) reject: bool,
    /// A listed word with the action flag was found.
    pub(super) flag: bool,
    /// The text with every listed word with the action mask replaced by `*`s; `None` when
    /// nothing was masked.
    pub(super) masked: Option<String>,
}

/// The words of `text` with their byte ranges: runs of letters and digits.
fn words(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (c.is_alphanumeric(), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// Applies `rules` (server's, then the room's) to `text`.
pub(super) fn check<'a>(rules: impl Iterator<Item = &'a WordRule>, text: &str) -> WordHits {
    let rules: Vec<(String, WordAction)> = rules
        .map(|r| (r.word.to_lowercase(), r.action))
        .filter(|(w, _)| !w.is_empty())
        .collect();
    let mut hits = WordHits::default();
    if rules.is_empty() {
        return hits;
    }
    let mut masked = String::with_capacity(text.len());
    let mut last = 0;
    let mut any_mask = false;
    for (start, end) in words(text) {
        let word = text.get(start..end).unwrap_or_default();
        let lower = word.to_lowercase();
        let actions = rules.iter().filter(|(w, _)| *w == lower).map(|(_, a)| *a);
        let (mut mask, mut flag, mut reject) = (false, false, false);
        for action in actions {
            match action {
                WordAction::Reject => reject = true,
                WordAction::Mask => mask = true,
                WordAction::Flag => flag = true,
            }
        }
        hits.reject |= reject;
        hits.flag |= flag;
        if mask {
            any_mask = true;
            masked.push_str(text.get(last..start).unwrap_or_default());
            masked.extend(std::iter::repeat_n('*', word.chars().count()));
            last = end;
        }
    }
    if any_mask {
        masked.push_str(text.get(last..).unwrap_or_default());
        hits.masked = Some(masked);
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(word: &str, action: WordAction) -> WordRule {
        WordRule {
            word: word.into(),
            action,
        }
    }

    #[test]
    fn whole_words_ignoring_case_with_each_action() {
        let rules = [
            rule("darn", WordAction::Mask),
            rule("spamlink", WordAction::Flag),
            rule("forbidden", WordAction::Reject),
        ];
        let hits = check(rules.iter(), "Darn it, darned DARN!");
        assert_eq!(hits.masked.as_deref(), Some("**** it, darned ****!"));
        assert!(!hits.flag && !hits.reject);
        let hits = check(rules.iter(), "see SpamLink now");
        assert!(hits.flag && !hits.reject && hits.masked.is_none());
        let hits = check(rules.iter(), "this is forbidden.");
        assert!(hits.reject);
        assert_eq!(check(rules.iter(), "nothing here"), WordHits::default());
        // Multi-byte text keeps its other characters.
        let hits = check(rules.iter(), "¡darn! 日本 darn");
        assert_eq!(hits.masked.as_deref(), Some("¡****! 日本 ****"));
    }
}
