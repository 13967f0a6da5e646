//! The full-text index (tantivy) of message search: one document per message, keyed by
//! `room` + `seq`, holding the message's current text. Written only by the index consumer and
//! `chatwire reindex` (one writer, [`SearchIndex::apply`]); read by Search requests.
//!
//! ```text
//!  Change::Upsert / Change::Remove ──apply──▶ delete key, add doc ──commit──▶ reload readers
//!  Query + readable rooms ──search──▶ hits newest first, keyed (ts, room key, seq) for cursors
//! ```
//!
//! Authorization is part of every query: a hit must lie in one of the caller's rooms at or
//! above that room's first visible seq, so a page is never filled with hits dropped later.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use tantivy::collector::{Count, TopDocs};
use tantivy::query::{
    BooleanQuery, Occur, PhraseQuery, Query, RangeQuery, TermQuery, TermSetQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing,
    TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentReader, TantivyDocument,
    Term, doc,
};

use super::tokenizer::{ANALYZER, analyzer, tokens};

/// Memory of the index writer: tantivy's smallest useful budget for one thread.
const WRITER_MEMORY: usize = 32 * 1024 * 1024;
/// Longest snippet, in characters.
pub const SNIPPET_CHARS: usize = 200;

/// Index failures: I/O or a corrupt index. The caller retries (the consumer nacks).
#[derive(Debug, Clone, thiserror::Error)]
#[error("search index: {0}")]
pub struct IndexError(pub String);

impl From<tantivy::TantivyError> for IndexError {
    fn from(err: tantivy::TantivyError) -> Self {
        Self(err.to_string())
    }
}

/// One message as indexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedMessage {
    /// The room.
    pub room_id: String,
    /// The seq of its MessageCreated event.
    pub seq: u64,
    /// The author.
    pub sender: String,
    /// When it was sent, Unix milliseconds.
    pub created_at_ms: i64,
    /// The current text.
    pub text: String,
}

/// A change to the index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Index (or re-index) a message in its current state.
    Upsert(IndexedMessage),
    /// The message is gone (deleted, erased, dropped): remove it.
    Remove {
        /// The room.
        room_id: String,
        /// The message's seq.
        seq: u64,
    },
}

/// Where a page of hits starts: the sort key of the last hit of the previous page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The hit's created_at_ms.
    pub ts: i64,
    /// The hit's room key (a hash of the room id).
    pub room_key: u64,
    /// The hit's seq.
    pub seq: u64,
}

impl Cursor {
    /// The opaque text form: `s1.` and three hex numbers.
    pub fn encode(&self) -> String {
        format!("s1.{:x}.{:x}.{:x}", self.ts, self.room_key, self.seq)
    }

    /// Parses [`Cursor::encode`]'s form; `None` for anything else.
    pub fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.strip_prefix("s1.")?.split('.');
        let ts = i64::from_str_radix(parts.next()?, 16).ok()?;
        let room_key = u64::from_str_radix(parts.next()?, 16).ok()?;
        let seq = u64::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() || ts < 0 || seq == 0 {
            return None;
        }
        Some(Self { ts, room_key, seq })
    }
}

/// The words of a query, analyzed: each unit is a term or a phrase (quoted text, or a word
/// that analyzes into several tokens such as a CJK run); every unit must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedQuery {
    units: Vec<Vec<(usize, String)>>,
}

impl ParsedQuery {
    /// Parses plain terms and "quoted phrases"; no other syntax (an unmatched quote runs to the
    /// end). `None` when nothing in it is searchable (only punctuation).
    pub fn parse(text: &str) -> Option<Self> {
        let mut units = Vec::new();
        for (i, part) in text.split('"').enumerate() {
            let quoted = i % 2 == 1;
            if quoted {
                let phrase = tokens(part);
                if !phrase.is_empty() {
                    units.push(phrase);
                }
            } else {
                for word in part.split_whitespace() {
                    let analyzed = tokens(word);
                    if !analyzed.is_empty() {
                        units.push(analyzed);
                    }
                }
            }
        }
        (!units.is_empty()).then_some(Self { units })
    }

    fn query(&self, text: Field) -> Box<dyn Query> {
        let clauses = self
            .units
            .iter()
            .map(|unit| -> (Occur, Box<dyn Query>) {
                let query: Box<dyn Query> = match unit.as_slice() {
                    [(_, one)] => Box::new(TermQuery::new(
                        Term::from_field_text(text, one),
                        IndexRecordOption::WithFreqsAndPositions,
                    )),
                    many => {
                        let first = many.first().map_or(0, |(p, _)| *p);
                        Box::new(PhraseQuery::new_with_offset(
                            many.iter()
                                .map(|(p, t)| (p - first, Term::from_field_text(text, t)))
                                .collect(),
                        ))
                    }
                };
                (Occur::Must, query)
            })
            .collect();
        Box::new(BooleanQuery::new(clauses))
    }

    /// The analyzed terms, for highlighting.
    fn terms(&self) -> BTreeMap<String, Score> {
        self.units
            .iter()
            .flatten()
            .map(|(_, t)| (t.clone(), 1.0))
            .collect()
    }
}

/// One room the caller may read, from this seq on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readable {
    /// The room.
    pub room_id: String,
    /// The first seq the caller may read there.
    pub min_seq: u64,
}

/// A search.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// The words.
    pub words: ParsedQuery,
    /// The rooms the caller may read (the authorization filter); empty finds nothing.
    pub rooms: Vec<Readable>,
    /// Only this sender.
    pub sender: Option<String>,
    /// Sent at or after, Unix milliseconds.
    pub after_ms: Option<i64>,
    /// Sent before, Unix milliseconds.
    pub before_ms: Option<i64>,
    /// After this hit.
    pub cursor: Option<Cursor>,
    /// The most hits.
    pub limit: usize,
}

/// A hit: a message's place and its sort key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The room.
    pub room_id: String,
    /// The message's seq.
    pub seq: u64,
    /// Its sort key, the cursor of a page ending at it.
    pub cursor: Cursor,
}

#[derive(Debug, Clone, Copy)]
struct Fields {
    key: Field,
    room: Field,
    room_key: Field,
    seq: Field,
    ts: Field,
    sender: Field,
    text: Field,
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let text_options = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer(ANALYZER)
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let fields = Fields {
        key: builder.add_text_field("key", STRING),
        room: builder.add_text_field("room", STRING | STORED),
        room_key: builder.add_u64_field("room_key", FAST),
        seq: builder.add_u64_field("seq", INDEXED | FAST | STORED),
        ts: builder.add_i64_field("ts", INDEXED | FAST),
        sender: builder.add_text_field("sender", STRING),
        text: builder.add_text_field("text", text_options),
    };
    (builder.build(), fields)
}

/// The sort key of a room id: the first 8 bytes of its SHA-256 (the same on every node).
pub fn room_key(room_id: &str) -> u64 {
    let digest = Sha256::digest(room_id.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

fn doc_key(room_id: &str, seq: u64) -> String {
    format!("{room_id}\u{1f}{seq}")
}

/// The index: a reader for searches, one writer behind a lock.
pub struct SearchIndex {
    reader: IndexReader,
    writer: Mutex<IndexWriter>,
    fields: Fields,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex").finish_non_exhaustive()
    }
}

impl SearchIndex {
    /// Opens the index in `dir`, creating it when missing; the flag is true when it was
    /// created (so the caller fills it from the room log). Blocks on file I/O.
    pub fn open(dir: &Path) -> Result<(Self, bool), IndexError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| IndexError(format!("cannot create {}: {e}", dir.display())))?;
        let (schema, fields) = schema();
        let directory = tantivy::directory::MmapDirectory::open(dir)
            .map_err(|e| IndexError(format!("{}: {e}", dir.display())))?;
        let created = !Index::exists(&directory).map_err(|e| IndexError(e.to_string()))?;
        let index = Index::open_or_create(directory, schema)?;
        Ok((Self::with_index(index, fields)?, created))
    }

    /// An index in memory (tests, benchmarks).
    pub fn in_memory() -> Result<Self, IndexError> {
        let (schema, fields) = schema();
        Self::with_index(Index::create_in_ram(schema), fields)
    }

    fn with_index(index: Index, fields: Fields) -> Result<Self, IndexError> {
        index.tokenizers().register(ANALYZER, analyzer());
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            reader,
            writer: Mutex::new(writer),
            fields,
        })
    }

    /// Applies `changes` in order and commits them: durable and visible to searches once it
    /// returns. Applying the same changes again leaves the same index. Blocks.
    pub fn apply(&self, changes: &[Change]) -> Result<(), IndexError> {
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| IndexError("index writer poisoned".into()))?;
        for change in changes {
            self.stage(&writer, change)?;
        }
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    fn stage(&self, writer: &IndexWriter, change: &Change) -> Result<(), IndexError> {
        let f = self.fields;
        let (room_id, seq) = match change {
            Change::Upsert(m) => (m.room_id.as_str(), m.seq),
            Change::Remove { room_id, seq } => (room_id.as_str(), *seq),
        };
        writer.delete_term(Term::from_field_text(f.key, &doc_key(room_id, seq)));
        if let Change::Upsert(m) = change {
            writer.add_document(doc!(
                f.key => doc_key(&m.room_id, m.seq),
                f.room => m.room_id.clone(),
                f.room_key => room_key(&m.room_id),
                f.seq => m.seq,
                f.ts => m.created_at_ms,
                f.sender => m.sender.clone(),
                f.text => m.text.clone(),
            ))?;
        }
        Ok(())
    }

    /// Removes every document (before a rebuild). Blocks.
    pub fn clear(&self) -> Result<(), IndexError> {
        let mut writer = self
            .writer
            .lock()
            .map_err(|_| IndexError("index writer poisoned".into()))?;
        writer.delete_all_documents()?;
        writer.commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// Messages in the index.
    pub fn len(&self) -> u64 {
        self.reader.searcher().num_docs()
    }

    /// True when nothing is indexed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first `query.limit` hits, newest first. Blocks (briefly: no I/O beyond the mmap).
    pub fn search(&self, query: &SearchQuery) -> Result<Vec<Found>, IndexError> {
        if query.rooms.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let f = self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = vec![
            (Occur::Must, query.words.query(f.text)),
            (Occur::Must, self.rooms_filter(&query.rooms)),
        ];
        if let Some(sender) = &query.sender {
            clauses.push((
                Occur::Must,
                Box::new(TermQuery::new(
                    Term::from_field_text(f.sender, sender),
                    IndexRecordOption::Basic,
                )),
            ));
        }
        let upper = match (query.before_ms, query.cursor) {
            (Some(before), Some(c)) if c.ts < before => Bound::Included(c.ts),
            (Some(before), _) => Bound::Excluded(before),
            (None, Some(c)) => Bound::Included(c.ts),
            (None, None) => Bound::Unbounded,
        };
        let lower = query.after_ms.map_or(Bound::Unbounded, Bound::Included);
        if !matches!((lower, upper), (Bound::Unbounded, Bound::Unbounded)) {
            let term = |ts: i64| Term::from_field_i64(f.ts, ts);
            clauses.push((
                Occur::Must,
                Box::new(RangeQuery::new(lower.map(term), upper.map(term))),
            ));
        }
        let tantivy_query = BooleanQuery::new(clauses);
        let cursor = query.cursor;
        let collector =
            TopDocs::with_limit(query.limit).tweak_score(move |segment: &SegmentReader| {
                let fast = segment.fast_fields();
                let ts = fast.i64("ts").ok().map(|c| c.first_or_default_col(0));
                let rk = fast.u64("room_key").ok().map(|c| c.first_or_default_col(0));
                let seq = fast.u64("seq").ok().map(|c| c.first_or_default_col(0));
                move |doc: DocId, _score: Score| -> Option<Cursor> {
                    let key = Cursor {
                        ts: ts.as_ref()?.get_val(doc),
                        room_key: rk.as_ref()?.get_val(doc),
                        seq: seq.as_ref()?.get_val(doc),
                    };
                    // Newest first: the next page holds the keys below the cursor.
                    match cursor {
                        Some(c) if key >= c => None,
                        _ => Some(key),
                    }
                }
            });
        let searcher = self.reader.searcher();
        let top = searcher.search(&tantivy_query, &collector)?;
        let mut found = Vec::with_capacity(top.len());
        for (key, address) in top {
            let Some(key) = key else { continue };
            let doc: TantivyDocument = searcher.doc(address)?;
            let room_id = doc
                .get_first(f.room)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned();
            found.push(Found {
                room_id,
                seq: key.seq,
                cursor: key,
            });
        }
        Ok(found)
    }

    /// How many documents match `words` in any room (benchmarks, tests).
    pub fn count(&self, words: &ParsedQuery) -> Result<usize, IndexError> {
        let searcher = self.reader.searcher();
        Ok(searcher.search(&words.query(self.fields.text), &Count)?)
    }

    /// The rooms clause: rooms readable from their start in one term set, the others each with
    /// their seq bound.
    fn rooms_filter(&self, rooms: &[Readable]) -> Box<dyn Query> {
        let f = self.fields;
        let mut whole = Vec::new();
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for room in rooms {
            let term = Term::from_field_text(f.room, &room.room_id);
            if room.min_seq <= 1 {
                whole.push(term);
            } else {
                let seq = |s: u64| Term::from_field_u64(f.seq, s);
                clauses.push((
                    Occur::Should,
                    Box::new(BooleanQuery::new(vec![
                        (
                            Occur::Must,
                            Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
                        ),
                        (
                            Occur::Must,
                            Box::new(RangeQuery::new(
                                Bound::Included(seq(room.min_seq)),
                                Bound::Unbounded,
                            )),
                        ),
                    ])),
                ));
            }
        }
        if !whole.is_empty() {
            clauses.push((Occur::Should, Box::new(TermSetQuery::new(whole))));
        }
        Box::new(BooleanQuery::new(clauses))
    }
}

/// A passage of `text` around the words of `query` (at most [`SNIPPET_CHARS`] characters) and
/// the highlighted ranges in it, in code points. Without a match (the index lags an edit), the
/// start of the text with no highlight.
pub fn snippet(query: &ParsedQuery, text: &str) -> (String, Vec<(u32, u32)>) {
    let generator = SnippetGenerator::new(
        query.terms(),
        analyzer(),
        // The field only matters for snippets read from documents.
        Field::from_field_id(0),
        SNIPPET_CHARS,
    );
    let found = generator.snippet(text);
    if found.is_empty() {
        return (text.chars().take(SNIPPET_CHARS).collect(), Vec::new());
    }
    let fragment = found.fragment();
    let points = |byte: usize| {
        u32::try_from(fragment[..byte.min(fragment.len())].chars().count()).unwrap_or(u32::MAX)
    };
    let ranges = tantivy::snippet::collapse_overlapped_ranges(found.highlighted())
        .into_iter()
        .map(|r| (points(r.start), points(r.end)))
        .collect();
    (fragment.to_owned(), ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: &str, seq: u64, ts: i64, sender: &str, text: &str) -> Change {
        Change::Upsert(IndexedMessage {
            room_id: room.to_owned(),
            seq,
            sender: sender.to_owned(),
            created_at_ms: ts,
            text: text.to_owned(),
        })
    }

    fn readable(room: &str, min_seq: u64) -> Readable {
        Readable {
            room_id: room.to_owned(),
            min_seq,
        }
    }

    fn search(index: &SearchIndex, words: &str, rooms: Vec<Readable>) -> Vec<(String, u64)> {
        let query = SearchQuery {
            words: ParsedQuery::parse(words).expect("words"),
            rooms,
            sender: None,
            after_ms: None,
            before_ms: None,
            cursor: None,
            limit: 100,
        };
        index
            .search(&query)
            .expect("search")
            .into_iter()
            .map(|f| (f.room_id, f.seq))
            .collect()
    }

    #[test]
    fn upserts_replace_and_removes_remove_idempotently() {
        let index = SearchIndex::in_memory().expect("index");
        let all = || vec![readable("g.a", 1), readable("g.b", 1)];
        let changes = [
            message("g.a", 2, 10, "alice", "hello world"),
            message("g.b", 2, 11, "bob", "hello there"),
        ];
        index.apply(&changes).expect("apply");
        index.apply(&changes).expect("apply again");
        assert_eq!(index.len(), 2);
        assert_eq!(
            search(&index, "hello", all()),
            [("g.b".to_owned(), 2), ("g.a".to_owned(), 2)]
        );
        // An edit replaces the text.
        index
            .apply(&[message("g.a", 2, 10, "alice", "goodbye world")])
            .expect("edit");
        assert_eq!(search(&index, "hello", all()), [("g.b".to_owned(), 2)]);
        assert_eq!(search(&index, "goodbye", all()), [("g.a".to_owned(), 2)]);
        let remove = Change::Remove {
            room_id: "g.b".into(),
            seq: 2,
        };
        index.apply(std::slice::from_ref(&remove)).expect("remove");
        index.apply(&[remove]).expect("remove again");
        assert!(search(&index, "hello", all()).is_empty());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn rooms_and_first_visible_seqs_filter_in_the_query() {
        let index = SearchIndex::in_memory().expect("index");
        index
            .apply(&[
                message("g.a", 2, 10, "alice", "plan"),
                message("g.a", 9, 20, "alice", "plan"),
                message("g.b", 3, 30, "alice", "plan"),
            ])
            .expect("apply");
        assert_eq!(
            search(&index, "plan", vec![readable("g.a", 5)]),
            [("g.a".to_owned(), 9)]
        );
        assert_eq!(
            search(&index, "plan", vec![readable("g.a", 1), readable("g.b", 4)]),
            [("g.a".to_owned(), 9), ("g.a".to_owned(), 2)]
        );
        assert!(search(&index, "plan", Vec::new()).is_empty());
    }

    #[test]
    fn cursors_page_without_gaps_or_repeats_through_equal_times() {
        let index = SearchIndex::in_memory().expect("index");
        let mut changes = Vec::new();
        for seq in 1..=25u64 {
            // Many hits share a time: the room key and seq order them.
            let room = if seq % 2 == 0 { "g.a" } else { "g.b" };
            changes.push(message(room, seq, (seq / 5) as i64, "alice", "same words"));
        }
        index.apply(&changes).expect("apply");
        let rooms = vec![readable("g.a", 1), readable("g.b", 1)];
        let mut seen = Vec::new();
        let mut cursor = None;
        loop {
            let query = SearchQuery {
                words: ParsedQuery::parse("words").expect("words"),
                rooms: rooms.clone(),
                sender: None,
                after_ms: None,
                before_ms: None,
                cursor,
                limit: 4,
            };
            let page = index.search(&query).expect("search");
            if page.is_empty() {
                break;
            }
            cursor = page.last().map(|f| f.cursor);
            let decoded = Cursor::decode(&cursor.expect("cursor").encode());
            assert_eq!(decoded, cursor);
            seen.extend(page.into_iter().map(|f| f.seq));
        }
        let mut sorted = seen.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, (1..=25).collect::<Vec<_>>(), "{seen:?}");
        assert_eq!(seen.len(), 25);
    }

    #[test]
    fn queries_are_words_and_phrases_never_syntax() {
        assert!(ParsedQuery::parse("?? !!").is_none());
        let q = ParsedQuery::parse("Running \"big dogs\" 東京").expect("parse");
        assert_eq!(
            q.units,
            vec![
                vec![(0, "run".to_owned())],
                vec![(0, "big".to_owned()), (1, "dog".to_owned())],
                vec![(0, "東京".to_owned())],
            ]
        );
        // `field:` and `*` are punctuation: a phrase of two words, then two plain words.
        let q = ParsedQuery::parse("title:foo AND bar*").expect("parse");
        assert_eq!(
            q.units,
            vec![
                vec![(0, "titl".to_owned()), (1, "foo".to_owned())],
                vec![(0, "and".to_owned())],
                vec![(0, "bar".to_owned())],
            ]
        );
        assert_eq!(Cursor::decode("s1.1.2"), None);
        assert_eq!(Cursor::decode("x"), None);
    }

    #[test]
    fn snippets_highlight_in_code_points() {
        let q = ParsedQuery::parse("cafe").expect("parse");
        let (text, ranges) = snippet(&q, "Un café, s'il vous plaît");
        let points: Vec<char> = text.chars().collect();
        let marked: Vec<String> = ranges
            .iter()
            .map(|(a, b)| points[*a as usize..*b as usize].iter().collect())
            .collect();
        assert_eq!(marked, ["café"]);
        let (text, ranges) = snippet(&q, "nothing here");
        assert_eq!((text.as_str(), ranges.len()), ("nothing here", 0));
    }
}
