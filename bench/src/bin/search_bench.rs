//! `chatwire-search-bench`: message search at scale, in process, on the server's own code (no
//! network): an embedded store filled through the room writer, the index rebuilt from the log
//! (`chatwire reindex`'s path), live-style indexing (a commit per 256 messages, as the index
//! consumer commits), and queries through the Search request's path (`search::service`: the
//! caller's readable rooms from the store, the index query, each hit read back, snippets).
//!
//! ```sh
//! scripts/bench-search --release                      # 1,000,000 messages over 1,000 rooms
//! scripts/bench-search --release --messages 200000    # smaller
//! scripts/bench-search --smoke                        # the test command: tiny, checks only
//! ```
//!
//! The reader (`reader`) is a member of `--reader-rooms` rooms: in half of them since the room
//! was created, in the other half added halfway through with visibility since join (so the
//! query carries a seq bound per room). `--smoke` checks what the reader finds (a word of a
//! readable message, none of an unreadable one, none from before the join) and exits non-zero
//! on a wrong answer; it never judges timings.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chatwire_protocol::v1;
use chatwire_server::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use chatwire_server::backend::fanout_local::LocalFanout;
use chatwire_server::backend::pipeline::RoomExecutor;
use chatwire_server::backend::store::Store;
use chatwire_server::chat::command::{CreateGroup, RoomCommand, RoomOp, SendOp};
use chatwire_server::chat::ids::{RoomId, UserId};
use chatwire_server::search::{Change, SearchIndex, service};
use chatwire_server::server::system_clock;
use chatwire_server::writer::RoomWriter;
use chatwire_server::writer::draft::WriterConfig;
use clap::Parser;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Parser)]
#[command(
    name = "chatwire-search-bench",
    about = "Message search at scale, in process"
)]
struct Args {
    /// Messages in all.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Rooms they are spread over (evenly).
    #[arg(long, default_value_t = 1_000)]
    rooms: usize,
    /// Rooms the querying user is a member of.
    #[arg(long, default_value_t = 100)]
    reader_rooms: usize,
    /// Queries timed.
    #[arg(long, default_value_t = 1_000)]
    queries: usize,
    /// Messages indexed live-style (a commit per 256), at most.
    #[arg(long, default_value_t = 100_000)]
    live: usize,
    /// Tiny sizes and correctness checks (the test command).
    #[arg(long)]
    smoke: bool,
}

/// SplitMix64: a fixed stream, so every run indexes the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Roughly Zipf over `n`: small indexes far more often.
    fn zipf(&mut self, n: usize) -> usize {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        ((n as f64).powf(u) as usize).saturating_sub(1).min(n - 1)
    }
}

/// A vocabulary: English words (stemming has work to do) and made-up ones for the long tail.
fn vocabulary() -> Vec<String> {
    let english = "the a to and of meeting deploy deployed deploying release invoice invoices \
        review reviewed budget plan plans planning lunch coffee server servers database backup \
        restore search searching customer customers ticket tickets bug bugs fix fixed fixing \
        report reports quarterly monthly weekly design designs test tests testing launch \
        launched schedule scheduled call calls running runs run team teams project projects \
        café naïve 東京 会議 資料";
    let mut words: Vec<String> = english.split_whitespace().map(str::to_owned).collect();
    let syllables = [
        "ka", "lo", "mi", "ra", "tu", "ven", "dor", "sil", "pe", "zan", "qui", "bre",
    ];
    for a in syllables {
        for b in syllables {
            for c in syllables {
                words.push(format!("{a}{b}{c}"));
            }
        }
    }
    words
}

fn sentence(rng: &mut Rng, words: &[String]) -> String {
    let n = 6 + (rng.next() % 10) as usize;
    (0..n)
        .map(|_| words[rng.zipf(words.len())].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

fn command(room: &RoomId, actor: &UserId, op: RoomOp) -> RoomCommand {
    RoomCommand {
        room: room.clone(),
        actor: actor.clone(),
        op,
        trace_id: String::new(),
        privileged: false,
    }
}

fn send_op(id: String, text: String) -> RoomOp {
    RoomOp::Send(SendOp {
        client_msg_id: id,
        content: v1::Content {
            text,
            ..Default::default()
        },
        reply_to_seq: 0,
        thread_root_seq: 0,
    })
}

fn user(name: &str) -> Result<UserId, BoxError> {
    Ok(UserId::parse(name)?)
}

async fn run_batch(
    writer: &mut Box<dyn RoomExecutor>,
    room: &RoomId,
    batch: &[RoomCommand],
) -> Result<(), BoxError> {
    for result in writer.execute(room, batch).await {
        result.map_err(|e| format!("writer refused a command: {e:?}"))?;
    }
    Ok(())
}

/// Fills the store: `rooms` groups, `messages` messages, the reader in `reader_rooms` of them;
/// three marker messages for the checks. Returns the room ids.
async fn populate(
    store: Arc<dyn Store>,
    args: &Args,
    words: &[String],
) -> Result<Vec<RoomId>, BoxError> {
    let clock = system_clock();
    let fanout = Arc::new(LocalFanout::new(Arc::clone(&clock)));
    let mut writer = RoomWriter::new(store, fanout, clock, WriterConfig::default()).boxed();
    let reader = user("reader")?;
    let per_room = args.messages.div_ceil(args.rooms).max(2);
    let mut rng = Rng(7);
    let mut ids = Vec::with_capacity(args.rooms);
    for r in 0..args.rooms {
        let owner = user(&format!("owner{r}"))?;
        let room = RoomId::group(&owner, &format!("bench-{r}"));
        let readable = r < args.reader_rooms;
        // Even rooms: the reader is there from the start; odd: added halfway (since join).
        let from_start = readable && r % 2 == 0;
        let create = RoomOp::CreateGroup(CreateGroup {
            name: format!("room {r}"),
            topic: String::new(),
            members: if from_start {
                vec![reader.clone()]
            } else {
                Vec::new()
            },
            history_visibility: v1::HistoryVisibility::SinceJoin,
            member_cap: 100,
            app_data: bytes::Bytes::new(),
        });
        run_batch(&mut writer, &room, &[command(&room, &owner, create)]).await?;
        let mut batch = Vec::new();
        for m in 0..per_room {
            if readable && !from_start && m == per_room / 2 {
                run_batch(&mut writer, &room, &batch).await?;
                batch.clear();
                let add = RoomOp::AddMembers {
                    users: vec![reader.clone()],
                    role: v1::Role::Member,
                };
                run_batch(&mut writer, &room, &[command(&room, &owner, add)]).await?;
            }
            let mut text = sentence(&mut rng, words);
            // Markers: a readable one (room 0), one before the join (room 1), one in a room the
            // reader is not in (the last room).
            if m == per_room - 1 && r == 0 {
                text.push_str(" zzreadable");
            }
            if m == 0 && r == 1 && args.reader_rooms > 1 {
                text.push_str(" zzbeforejoin");
            }
            if m == per_room - 1 && r == args.rooms - 1 && args.rooms > args.reader_rooms {
                text.push_str(" zzforeign");
            }
            batch.push(command(&room, &owner, send_op(format!("b{r}-{m}"), text)));
            if batch.len() == 200 {
                run_batch(&mut writer, &room, &batch).await?;
                batch.clear();
            }
        }
        run_batch(&mut writer, &room, &batch).await?;
        ids.push(room);
    }
    Ok(ids)
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => dir_size(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn search(
    store: &Arc<dyn Store>,
    index: &Arc<SearchIndex>,
    reader: &UserId,
    query: &str,
) -> Result<v1::SearchResponse, BoxError> {
    let request = v1::SearchRequest {
        query: query.to_owned(),
        ..Default::default()
    };
    let checked = service::check(store.as_ref(), reader, request)
        .await
        .map_err(|e| format!("{e:?}"))?;
    Ok(
        service::run(store, index, reader, checked, service::DEFAULT_LIMIT)
            .await
            .map_err(|e| format!("{e:?}"))?,
    )
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = Args::parse();
    if args.smoke {
        args.messages = 3_000;
        args.rooms = 30;
        args.reader_rooms = 10;
        args.queries = 50;
        args.live = 1_000;
    }
    args.reader_rooms = args.reader_rooms.min(args.rooms);
    let words = vocabulary();
    let tmp = std::env::temp_dir().join(format!("chatwire-search-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let result = bench(&args, &words, &tmp).await;
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

async fn bench(args: &Args, words: &[String], tmp: &Path) -> Result<(), BoxError> {
    let embedded = EmbeddedStore::open(
        &tmp.join("store"),
        EmbeddedOptions {
            bucket_width_ms: 3_600_000,
            sync: false,
        },
    )?;
    let store: Arc<dyn Store> = Arc::new(embedded.clone());
    println!(
        "corpus: {} messages over {} rooms; the reader is in {} rooms (half since creation, half added halfway, visibility since join)",
        args.messages, args.rooms, args.reader_rooms
    );
    let started = Instant::now();
    let rooms = populate(Arc::clone(&store), args, words).await?;
    println!(
        "store filled through the room writer in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // The rebuild from the log (what `chatwire reindex` and a new node do).
    let index_dir = tmp.join("search");
    let (index, _) = SearchIndex::open(&index_dir)?;
    let index = Arc::new(index);
    let started = Instant::now();
    let rebuilt = chatwire_server::search::rebuild(store.as_ref(), &index, &rooms).await?;
    let reindex = started.elapsed();
    let size = dir_size(&index_dir);
    println!(
        "reindex from the log: {} messages of {} rooms in {:.1} s ({:.0} messages/s, store reads included)",
        rebuilt.messages,
        rebuilt.rooms,
        reindex.as_secs_f64(),
        rebuilt.messages as f64 / reindex.as_secs_f64()
    );
    println!(
        "index size: {:.1} MiB, {:.0} bytes per message",
        size as f64 / 1_048_576.0,
        size as f64 / rebuilt.messages.max(1) as f64
    );

    // Live-style indexing: a commit per 256 messages, as the index consumer commits a batch.
    let live = SearchIndex::in_memory()?;
    let mut rng = Rng(11);
    let count = args.live.min(args.messages);
    let changes: Vec<Change> = (0..count)
        .map(|i| {
            Change::Upsert(chatwire_server::search::IndexedMessage {
                room_id: format!("g.live{}", i % args.rooms.max(1)),
                seq: i as u64 + 2,
                sender: "owner0".into(),
                created_at_ms: 1_700_000_000_000 + i as i64,
                text: sentence(&mut rng, words),
            })
        })
        .collect();
    let started = Instant::now();
    for batch in changes.chunks(256) {
        live.apply(batch)?;
    }
    let live_time = started.elapsed();
    println!(
        "live indexing: {count} messages, a commit per 256, in {:.1} s ({:.0} messages/s)",
        live_time.as_secs_f64(),
        count as f64 / live_time.as_secs_f64()
    );

    // Queries as the reader, through the request's path (authorization included).
    let reader = user("reader")?;
    let mut rng = Rng(99);
    let mut latencies = Vec::with_capacity(args.queries);
    let mut hits = 0usize;
    for q in 0..args.queries {
        let query = match q % 4 {
            0 => words[rng.zipf(words.len())].clone(),
            1 => format!(
                "{} {}",
                words[rng.zipf(words.len())],
                words[rng.zipf(words.len())]
            ),
            2 => format!("\"{} {}\"", words[rng.zipf(60)], words[rng.zipf(60)]),
            _ => words[60 + (rng.next() as usize % (words.len() - 60))].clone(),
        };
        let started = Instant::now();
        let response = search(&store, &index, &reader, &query).await?;
        latencies.push(started.elapsed());
        hits += response.hits.len();
    }
    latencies.sort();
    println!(
        "queries: {} as a member of {} rooms (a page of 20, hits read back from the store): p50 {}, p99 {}, max {}; {:.1} hits per query",
        args.queries,
        args.reader_rooms,
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(latencies.last().copied().unwrap_or_default()),
        hits as f64 / args.queries.max(1) as f64
    );

    // What the reader finds, checked (every run; the smoke run's point).
    let found = |r: &v1::SearchResponse| r.hits.len();
    let readable = search(&store, &index, &reader, "zzreadable").await?;
    let before = search(&store, &index, &reader, "zzbeforejoin").await?;
    let foreign = search(&store, &index, &reader, "zzforeign").await?;
    let mut wrong = Vec::new();
    if found(&readable) != 1 {
        wrong.push(format!(
            "a readable message: {} hits, want 1",
            found(&readable)
        ));
    }
    if args.reader_rooms > 1 && found(&before) != 0 {
        wrong.push(format!(
            "a message from before the join: {} hits, want 0",
            found(&before)
        ));
    }
    if found(&foreign) != 0 {
        wrong.push(format!(
            "a message of a room the reader is not in: {} hits, want 0",
            found(&foreign)
        ));
    }
    if index.count(&chatwire_server::search::ParsedQuery::parse("zzforeign").ok_or("parse")?)?
        != usize::from(args.rooms > args.reader_rooms)
    {
        wrong.push("the foreign marker is not in the index".to_owned());
    }
    if wrong.is_empty() {
        println!(
            "checks: a readable message found; none from before the join or from a room the reader is not in"
        );
        Ok(())
    } else {
        Err(format!("search bench checks failed: {}", wrong.join("; ")).into())
    }
}
