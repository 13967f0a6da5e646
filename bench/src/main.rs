//! `chatwire-bench`: a load generator for a running Chatwire server (embedded default).
//!
//! Run: `cargo run --release -p chatwire-bench -- --addr 127.0.0.1:8080 --data-dir chatwire-data`
//!
//! Senders each post `--messages` messages into one shared group, one request at a time (each
//! waits for its acknowledgement, which means the message is durable), while `--subscribers`
//! more members are subscribed and count live deliveries (fan-out). `--idle N` first opens N
//! connected sessions that stay idle (memory per connection). With `--server-pid` it reads the
//! server's CPU time and resident memory from /proc: deliveries per server-CPU-second is the
//! fan-out figure that does not depend on the load generator sharing the machine.
//! `--expect-all` exits non-zero unless every acknowledged message reached every subscriber
//! exactly once and in order (the smoke run of the test command: counts, never timing).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chatwire_conformance::client::{Client, WsTarget};
use chatwire_protocol::v1;
use chatwire_server::auth::TokenMinter;
use chatwire_server::chat::ids::UserId;
use chatwire_server::clock::{Clock, SystemClock};
use chatwire_server::config::Config;
use clap::Parser;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Load generator flags.
#[derive(Debug, Parser)]
struct Args {
    /// The server's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// The server's data folder (its development secret signs the tokens).
    #[arg(long, default_value = "chatwire-data")]
    data_dir: PathBuf,
    /// Concurrent senders.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Messages per sender.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Text size of each message, in bytes.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Subscribed members that count live deliveries (the fan-out of each message).
    #[arg(long, default_value_t = 1)]
    subscribers: usize,
    /// Idle connected sessions opened first (memory per connection, with --server-pid).
    #[arg(long, default_value_t = 0)]
    idle: usize,
    /// The server's process id: CPU time and resident memory are read from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// How long subscribers may still wait for deliveries after the last acknowledgement
    /// before what is missing counts as lost, in seconds.
    #[arg(long, default_value_t = 60)]
    drain_s: u64,
    /// Exit non-zero unless every acknowledged message reached every subscriber once, in order.
    #[arg(long)]
    expect_all: bool,
}

/// What one subscriber saw.
#[derive(Debug, Default, Clone)]
struct Seen {
    delivered: usize,
    duplicated: usize,
    out_of_order: usize,
    /// Why the subscriber stopped before it had everything (the connection ended).
    ended: Option<String>,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let args = Args::parse();
    let secrets = chatwire_server::devdefaults::load_or_create(&args.data_dir)?;
    let minter = TokenMinter::from_config(&Config::default().auth, Some(&secrets.jwt_secret))?;
    let target = WsTarget::new(args.addr);
    let connect = |user: String| {
        let target = target.clone();
        let token = UserId::parse(&user)
            .map_err(BoxError::from)
            .and_then(|id| Ok(minter.mint(&id, 3_600_000, SystemClock.now_ms())?));
        async move {
            let client = Client::open(&target).await?;
            client.connect(&token?).await?;
            Ok::<_, BoxError>(client)
        }
    };
    let run = format!("{}", SystemClock.now_ms());

    let rss_before = args.server_pid.and_then(rss_kib);
    let mut idle = Vec::with_capacity(args.idle);
    for i in 0..args.idle {
        idle.push(connect(format!("bench-{run}-idle-{i}")).await?);
    }
    if let (Some(before), Some(after)) = (rss_before, args.server_pid.and_then(rss_kib))
        && args.idle > 0
    {
        println!(
            "idle: {} sessions, server RSS {before} -> {after} KiB: {:.1} KiB per connection",
            args.idle,
            (after.saturating_sub(before)) as f64 / args.idle as f64
        );
    }

    let senders: Vec<String> = (0..args.clients)
        .map(|i| format!("bench-{run}-{i}"))
        .collect();
    let readers: Vec<String> = (0..args.subscribers)
        .map(|i| format!("bench-{run}-reader-{i}"))
        .collect();
    let owner = connect(format!("bench-{run}-owner")).await?;
    let room = owner
        .create_group(v1::CreateGroupRequest {
            name: "bench".into(),
            member_cap: u32::try_from(senders.len() + readers.len() + 1).unwrap_or(u32::MAX),
            ..Default::default()
        })
        .await?
        .room
        .ok_or("no room")?
        .id;
    let everyone: Vec<String> = senders.iter().chain(&readers).cloned().collect();
    for chunk in everyone.chunks(100) {
        owner
            .add_members(v1::AddMembersRequest {
                room_id: room.clone(),
                user_ids: chunk.to_vec(),
                ..Default::default()
            })
            .await?;
    }

    let total = args.clients * args.messages;
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let mut counting = Vec::with_capacity(readers.len());
    for reader in readers {
        let client = connect(reader).await?;
        let head = subscribe_at_head(&client, &room).await?;
        counting.push(tokio::spawn(count(
            client,
            head,
            total,
            done_rx.clone(),
            Duration::from_secs(args.drain_s),
        )));
    }

    let cpu_before = args.server_pid.and_then(cpu_seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for sender in senders {
        let client = connect(sender.clone()).await?;
        let (room, body, messages) = (room.clone(), "x".repeat(args.size), args.messages);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(messages);
            for i in 0..messages {
                let request = v1::SendRequest {
                    room_id: room.clone(),
                    client_msg_id: format!("{sender}-{i}"),
                    content: Some(v1::Content {
                        text: body.clone(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                let sent = Instant::now();
                if client.send(request).await.is_ok() {
                    latencies.push(sent.elapsed());
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await?);
    }
    let acked = started.elapsed();
    let _ = done_tx.send(true);
    let mut seen = Vec::with_capacity(counting.len());
    for task in counting {
        seen.push(task.await?);
    }
    let wall = started.elapsed();
    let cpu = match (cpu_before, args.server_pid.and_then(cpu_seconds)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    report(&args, &mut latencies, acked, wall, &seen, cpu);
    drop(idle);
    let acked_all = latencies.len() == total;
    let exact = seen
        .iter()
        .all(|s| s.delivered == total && s.duplicated == 0 && s.out_of_order == 0);
    if args.expect_all && !(acked_all && exact) {
        return Err(
            "not every acknowledged message reached every subscriber once, in order".into(),
        );
    }
    Ok(())
}

/// Subscribes without replaying the room's history (the membership events of a big room would
/// take many pages): from the head the first page reports. Returns the seq live delivery
/// starts after.
async fn subscribe_at_head(client: &Client, room: &str) -> Result<u64, BoxError> {
    let mut after_seq = 0;
    loop {
        let page = client
            .subscribe(v1::SubscribeRequest {
                room_id: room.to_owned(),
                after_seq,
                limit: 0,
            })
            .await?;
        if page.complete {
            return Ok(page.events.last().map_or(after_seq, |e| e.seq));
        }
        after_seq = page.head_seq;
    }
}

/// Counts the messages a subscriber receives until it has `total`, or until the senders are
/// done and nothing more arrived for `drain`.
async fn count(
    client: Client,
    head: u64,
    total: usize,
    mut done: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> Seen {
    let mut seen = Seen::default();
    let mut last = head;
    while seen.delivered < total {
        let next = client.next_event();
        let event = if *done.borrow() {
            match tokio::time::timeout(drain, next).await {
                Ok(event) => event,
                Err(_) => break,
            }
        } else {
            tokio::select! {
                event = next => event,
                _ = done.changed() => continue,
            }
        };
        match event {
            Ok(v1::Event {
                kind: Some(v1::event::Kind::Room(event)),
            }) => {
                if event.seq <= last {
                    seen.duplicated += 1;
                    continue;
                }
                if event.seq != last + 1 {
                    seen.out_of_order += 1;
                }
                last = event.seq;
                if let Some(v1::room_event::Kind::MessageCreated(_)) = event.kind {
                    seen.delivered += 1;
                }
            }
            Ok(_) => {}
            Err(err) => {
                seen.ended = Some(err.to_string());
                break;
            }
        }
    }
    seen
}

/// The process's user + system CPU time, in seconds (Linux /proc).
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // USER_HZ is 100 on Linux.
    Some((utime + stime) / 100.0)
}

/// The process's resident memory, in KiB (Linux /proc).
fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn report(
    args: &Args,
    latencies: &mut [Duration],
    acked: Duration,
    wall: Duration,
    seen: &[Seen],
    cpu: Option<f64>,
) {
    latencies.sort_unstable();
    let pct = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "senders {} x messages {} ({} B text), {} subscribers",
        args.clients, args.messages, args.size, args.subscribers
    );
    println!(
        "acknowledged {} in {:.2} s: {:.0} msg/s",
        latencies.len(),
        acked.as_secs_f64(),
        latencies.len() as f64 / acked.as_secs_f64()
    );
    println!(
        "ack latency ms: p50 {:.2}  p95 {:.2}  p99 {:.2}  max {:.2}",
        pct(0.5),
        pct(0.95),
        pct(0.99),
        pct(1.0)
    );
    let expected = args.clients * args.messages * seen.len();
    let delivered: usize = seen.iter().map(|s| s.delivered).sum();
    let duplicated: usize = seen.iter().map(|s| s.duplicated).sum();
    let out_of_order: usize = seen.iter().map(|s| s.out_of_order).sum();
    println!(
        "deliveries: {delivered} of {expected} in {:.2} s ({:.0}/s wall); lost {}, duplicated {duplicated}, out of order {out_of_order}",
        wall.as_secs_f64(),
        delivered as f64 / wall.as_secs_f64(),
        expected.saturating_sub(delivered)
    );
    let ended: Vec<&str> = seen.iter().filter_map(|s| s.ended.as_deref()).collect();
    if let Some(first) = ended.first() {
        println!(
            "subscribers whose connection ended: {} (first: {first})",
            ended.len()
        );
    }
    if let Some(cpu) = cpu {
        println!(
            "server CPU {cpu:.2} s: {:.0} deliveries per server-CPU-second",
            delivered as f64 / cpu.max(0.01)
        );
    }
}
