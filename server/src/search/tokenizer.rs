//! The text analysis of message search (docs/protocol.md §24.4): one analyzer for the index and
//! for queries, so a word is found in the form it was written and in its other forms.
//!
//! ```text
//!  text ──split──▶ words (letters, digits; combining accents dropped) and CJK runs (bigrams)
//!       ──▶ lower case ──▶ ASCII folding (é → e, ß → ss) ──▶ English stemmer (running → run)
//! ```
//!
//! - Words: runs of letters and digits (`char::is_alphanumeric`); combining marks (U+0300 to
//!   U+036F, decomposed accents) inside a word are dropped, so `e` + U+0301 folds like `é`.
//! - CJK (Han, Hiragana, Katakana, Hangul): no spaces between words, so each run becomes its
//!   overlapping bigrams (`東京都` → `東京`, `京都`); a single character stays a unigram. A query
//!   run becomes a phrase of its bigrams, so `東京` finds `東京都` and `京都` does not find `東京`.
//! - Tokens longer than 40 bytes are dropped (hashes, base64: nobody searches them).

use tantivy::tokenizer::{
    AsciiFoldingFilter, Language, LowerCaser, RemoveLongFilter, Stemmer, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// The analyzer's name in the index.
pub const ANALYZER: &str = "chatwire";

/// The analyzer: [`ChatTokenizer`], lower case, ASCII folding, English stemming.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(ChatTokenizer)
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The analyzed tokens of `text` with their positions (for queries and tests).
pub fn tokens(text: &str) -> Vec<(usize, String)> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out = Vec::new();
    while stream.advance() {
        let token = stream.token();
        out.push((token.position, token.text.clone()));
    }
    out
}

/// Splits text into words and CJK bigrams (see the module docs).
#[derive(Debug, Clone, Copy, Default)]
pub struct ChatTokenizer;

/// The tokens of one text, computed up front.
#[derive(Debug)]
pub struct ChatTokenStream {
    tokens: Vec<Token>,
    next: usize,
    current: Token,
}

impl Tokenizer for ChatTokenizer {
    type TokenStream<'a> = ChatTokenStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ChatTokenStream {
        ChatTokenStream {
            tokens: split(text),
            next: 0,
            current: Token::default(),
        }
    }
}

impl TokenStream for ChatTokenStream {
    fn advance(&mut self) -> bool {
        match self.tokens.get_mut(self.next) {
            Some(token) => {
                self.current = std::mem::take(token);
                self.next += 1;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        &self.current
    }

    fn token_mut(&mut self) -> &mut Token {
        &mut self.current
    }
}

/// Whether `c` is written without spaces between words (Han, kana, Hangul).
pub fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF     // Hiragana, Katakana
        | 0x31F0..=0x31FF   // Katakana phonetic extensions
        | 0x3400..=0x4DBF   // CJK extension A
        | 0x4E00..=0x9FFF   // CJK unified ideographs
        | 0xAC00..=0xD7AF   // Hangul syllables
        | 0x1100..=0x11FF   // Hangul jamo
        | 0x3130..=0x318F   // Hangul compatibility jamo
        | 0xF900..=0xFAFF   // CJK compatibility ideographs
        | 0xFF66..=0xFF9F   // half-width Katakana
        | 0x20000..=0x2FA1F // CJK extensions B to F, compatibility supplement
    )
}

/// A combining accent (decomposed text): part of the word, dropped from its token.
fn is_combining(c: char) -> bool {
    matches!(c as u32, 0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF)
}

#[derive(PartialEq)]
enum Run {
    None,
    Word,
    Cjk,
}

fn split(text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut run = Run::None;
    let mut start = 0;
    let mut word = String::new();
    // CJK run: (byte offset, char) of each character.
    let mut cjk: Vec<(usize, char)> = Vec::new();
    for (at, c) in text.char_indices() {
        let kind = if is_cjk(c) {
            Run::Cjk
        } else if c.is_alphanumeric() || (run == Run::Word && is_combining(c)) {
            Run::Word
        } else {
            Run::None
        };
        if kind != run {
            flush(&mut out, &run, start, at, &mut word, &mut cjk);
            run = kind;
            start = at;
        }
        match run {
            Run::Word if !is_combining(c) => word.push(c),
            Run::Cjk => cjk.push((at, c)),
            _ => {}
        }
    }
    flush(&mut out, &run, start, text.len(), &mut word, &mut cjk);
    out
}

fn flush(
    out: &mut Vec<Token>,
    run: &Run,
    start: usize,
    end: usize,
    word: &mut String,
    cjk: &mut Vec<(usize, char)>,
) {
    let mut push = |from: usize, to: usize, text: String| {
        let position = out.len();
        out.push(Token {
            offset_from: from,
            offset_to: to,
            position,
            text,
            position_length: 1,
        });
    };
    match run {
        Run::Word if !word.is_empty() => push(start, end, std::mem::take(word)),
        Run::Cjk if cjk.len() == 1 => {
            let (at, c) = cjk[0];
            push(at, at + c.len_utf8(), c.to_string());
        }
        Run::Cjk => {
            for pair in cjk.windows(2) {
                let (at, a) = pair[0];
                let (next, b) = pair[1];
                push(at, next + b.len_utf8(), format!("{a}{b}"));
            }
        }
        _ => {}
    }
    word.clear();
    cjk.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        tokens(text).into_iter().map(|(_, t)| t).collect()
    }

    #[test]
    fn english_words_are_stemmed_and_lower_cased() {
        assert_eq!(
            texts("Running DOGS jumped, quickly!"),
            ["run", "dog", "jump", "quick"]
        );
        assert_eq!(texts("the runner runs"), ["the", "runner", "run"]);
        // Same stem for the forms a user types.
        assert_eq!(texts("connection"), texts("connected"));
    }

    #[test]
    fn accents_fold_precomposed_and_decomposed() {
        assert_eq!(texts("Café crème"), ["cafe", "creme"]);
        // e + COMBINING ACUTE ACCENT
        assert_eq!(texts("cafe\u{301}"), ["cafe"]);
        assert_eq!(texts("Straße naïve"), texts("strasse naive"));
    }

    #[test]
    fn cjk_runs_become_bigrams_with_positions() {
        assert_eq!(
            tokens("東京都に行く"),
            [
                (0, "東京".to_owned()),
                (1, "京都".to_owned()),
                (2, "都に".to_owned()),
                (3, "に行".to_owned()),
                (4, "行く".to_owned()),
            ]
        );
        assert_eq!(texts("猫"), ["猫"]);
        // Mixed scripts split at the boundary.
        assert_eq!(texts("hello世界world"), ["hello", "世界", "world"]);
        assert_eq!(texts("안녕하세요"), ["안녕", "녕하", "하세", "세요"]);
    }

    #[test]
    fn offsets_point_into_the_text() {
        let text = "Ça va? 東京";
        let mut analyzer = analyzer();
        let mut stream = analyzer.token_stream(text);
        let mut spans = Vec::new();
        while stream.advance() {
            let t = stream.token();
            spans.push(text[t.offset_from..t.offset_to].to_owned());
        }
        assert_eq!(spans, ["Ça", "va", "東京"]);
    }

    #[test]
    fn punctuation_and_long_tokens_are_dropped() {
        assert!(texts("?!... --- ***").is_empty());
        let long = "a".repeat(41);
        assert_eq!(texts(&format!("{long} ok")), ["ok"]);
    }
}
