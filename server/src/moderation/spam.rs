//! Spam rules over recent sends, on an injected clock (`now_ms`): the same text repeated by one
//! user in one room, link floods in one message, bursts of sends in one room. State is per
//! node and bounded; a retry of a send (same client_msg_id) is never counted twice.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use crate::config::SpamConfig;

/// Most (room, sender) keys and rooms remembered; past it, the idle ones are forgotten.
const MAX_KEYS: usize = 50_000;
/// Most recent sends remembered per (room, sender).
const MAX_PER_KEY: usize = 64;

/// A rule a message broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The same text sent more than `max_repeats` times within the window.
    Repeat,
    /// More than `max_links` links in one message.
    Links,
    /// More than `max_room_burst` sends in one room within the burst window.
    Burst,
}

impl Rule {
    /// The rule's name in verdict reasons and logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Repeat => "spam.repeat",
            Self::Links => "spam.links",
            Self::Burst => "spam.burst",
        }
    }
}

fn hash_of(value: impl Hash) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The number of links in `text`.
pub fn links(text: &str) -> usize {
    let lower = text.to_lowercase();
    ["http://", "https://", "www."]
        .iter()
        .map(|p| lower.matches(p).count())
        .sum::<usize>()
        // "https://www.x" is one link.
        .saturating_sub(lower.matches("://www.").count())
}

/// One recent send: when, its text's hash and its client_msg_id's hash.
#[derive(Debug, Clone, Copy)]
struct Seen {
    at_ms: i64,
    text: u64,
    id: u64,
}

/// What the rules remember.
#[derive(Debug, Default)]
pub struct SpamState {
    sends: HashMap<(String, String), VecDeque<Seen>>,
    rooms: HashMap<String, VecDeque<i64>>,
}

impl SpamState {
    /// The rules a send breaks, remembering it. A send whose client_msg_id was seen from the
    /// same sender in the same room is a retry: it breaks what the text breaks on its own
    /// (links) and is not counted again.
    pub fn observe_send(
        &mut self,
        config: &SpamConfig,
        room: &str,
        sender: &str,
        client_msg_id: &str,
        text: &str,
        now_ms: i64,
    ) -> Vec<Rule> {
        let mut broken = Vec::new();
        if links(text) > config.max_links as usize {
            broken.push(Rule::Links);
        }
        self.forget_idle(config, now_ms);
        let repeat_from =
            now_ms.saturating_sub(i64::try_from(config.repeat_window_ms).unwrap_or(i64::MAX));
        let burst_from =
            now_ms.saturating_sub(i64::try_from(config.burst_window_ms).unwrap_or(i64::MAX));
        let seen = Seen {
            at_ms: now_ms,
            text: hash_of(text),
            id: hash_of(client_msg_id),
        };
        let sends = self
            .sends
            .entry((room.to_owned(), sender.to_owned()))
            .or_default();
        if sends.iter().any(|s| s.id == seen.id) {
            return broken;
        }
        while sends.front().is_some_and(|s| s.at_ms < repeat_from) {
            sends.pop_front();
        }
        let repeats = sends.iter().filter(|s| s.text == seen.text).count();
        if repeats >= config.max_repeats as usize {
            broken.push(Rule::Repeat);
        }
        if sends.len() >= MAX_PER_KEY {
            sends.pop_front();
        }
        sends.push_back(seen);
        let burst = self.rooms.entry(room.to_owned()).or_default();
        while burst.front().is_some_and(|at| *at < burst_from) {
            burst.pop_front();
        }
        if burst.len() >= config.max_room_burst as usize {
            broken.push(Rule::Burst);
        } else {
            burst.push_back(now_ms);
        }
        broken
    }

    /// Past [`MAX_KEYS`], forgets keys with nothing inside their window.
    fn forget_idle(&mut self, config: &SpamConfig, now_ms: i64) {
        if self.sends.len() > MAX_KEYS {
            let from =
                now_ms.saturating_sub(i64::try_from(config.repeat_window_ms).unwrap_or(i64::MAX));
            self.sends
                .retain(|_, sends| sends.back().is_some_and(|s| s.at_ms >= from));
            if self.sends.len() > MAX_KEYS {
                self.sends.clear();
            }
        }
        if self.rooms.len() > MAX_KEYS {
            let from =
                now_ms.saturating_sub(i64::try_from(config.burst_window_ms).unwrap_or(i64::MAX));
            self.rooms
                .retain(|_, sends| sends.back().is_some_and(|at| *at >= from));
            if self.rooms.len() > MAX_KEYS {
                self.rooms.clear();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SpamConfig {
        SpamConfig {
            repeat_window_ms: 1_000,
            max_repeats: 2,
            max_links: 2,
            burst_window_ms: 1_000,
            max_room_burst: 3,
            points: 60,
        }
    }

    #[test]
    fn repeats_break_within_the_window_only_and_retries_do_not_count() {
        let (config, mut state) = (config(), SpamState::default());
        let mut send = |id: &str, text: &str, at: i64| {
            state.observe_send(&config, "r1", "mallory", id, text, at)
        };
        assert!(send("1", "buy now", 0).is_empty());
        assert!(send("2", "buy now", 100).is_empty());
        // A retry of "2" is not a third repeat.
        assert!(send("2", "buy now", 150).is_empty());
        assert_eq!(send("3", "buy now", 200), vec![Rule::Repeat]);
        // Past the window (injected clock), the earlier sends no longer count.
        assert!(send("4", "buy now", 1_250).is_empty());
        assert!(send("5", "other text", 1_260).is_empty());
    }

    #[test]
    fn a_room_burst_breaks_until_the_window_moves_on() {
        let (config, mut state) = (config(), SpamState::default());
        for (i, user) in ["a", "b", "c"].iter().enumerate() {
            let at = i64::try_from(i).unwrap_or(0) * 10;
            assert!(
                state
                    .observe_send(&config, "r1", user, "x", user, at)
                    .is_empty()
            );
        }
        assert_eq!(
            state.observe_send(&config, "r1", "d", "x", "d", 30),
            vec![Rule::Burst]
        );
        // Another room is not affected; the same room is again once the window passed.
        assert!(
            state
                .observe_send(&config, "r2", "d", "x", "d", 30)
                .is_empty()
        );
        assert!(
            state
                .observe_send(&config, "r1", "e", "x", "e", 1_011)
                .is_empty()
        );
    }

    #[test]
    fn link_floods_count_links() {
        assert_eq!(links("see https://a.example and www.b.example"), 2);
        assert_eq!(links("https://www.a.example"), 1);
        let (config, mut state) = (config(), SpamState::default());
        let text = "http://1 http://2 http://3";
        assert_eq!(
            state.observe_send(&config, "r", "u", "1", text, 0),
            vec![Rule::Links]
        );
    }
}
