//! Message search (docs/protocol.md §24, docs/architecture.md "Message search"): a tantivy
//! index of every message's current text, kept by the `index` consumer of the downstream
//! events and read by Search requests with the caller's readable rooms as a filter.
//!
//! ```text
//!  room writer ──events──▶ index queue ──▶ IndexConsumer ──current state (store)──▶ SearchIndex
//!  Search request ──readable rooms (store) + words──▶ SearchIndex ──hits──▶ current messages
//! ```
//!
//! - `tokenizer`: words, accents, English stems, CJK bigrams.
//! - `index`: the tantivy index, queries, cursors, snippets.
//! - `consumer`: the index consumer.
//! - `rebuild`: filling the index from the room log.

pub mod consumer;
pub mod index;
pub mod rebuild;
pub mod service;
pub mod tokenizer;

pub use consumer::IndexConsumer;
pub use index::{
    Change, Cursor, Found, IndexError, IndexedMessage, ParsedQuery, Readable, SearchIndex,
    SearchQuery, snippet,
};
pub use rebuild::{AllRooms, Rebuilt, rebuild};

/// The index folder inside the data folder.
pub const INDEX_DIR: &str = "search";
