//! `chatwire-bench`: a load generator for a running Chatwire server (embedded default).
//!
//! Run: `cargo run --release -p chatwire-bench -- --addr 127.0.0.1:8080 --data-dir chatwire-data`
//!
//! Senders each post `--messages` messages into one shared group, one request at a time (each
//! waits for its acknowledgement, which means the message is durable), while one more member
//! is subscribed and counts live deliveries. Prints throughput and acknowledgement latency.

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
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let secrets = chatwire_server::devdefaults::load_or_create(&args.data_dir)?;
    let minter = TokenMinter::from_config(&Config::default().auth, Some(&secrets.jwt_secret))?;
    let token = |user: &str| -> Result<String, Box<dyn std::error::Error>> {
        Ok(minter.mint(&UserId::parse(user)?, 3_600_000, SystemClock.now_ms())?)
    };
    let target = WsTarget::new(args.addr);
    let connect = |user: String| {
        let target = target.clone();
        let token = token(&user);
        async move {
            let client = Client::open(&target).await?;
            client.connect(&token?).await?;
            Ok::<_, Box<dyn std::error::Error>>(client)
        }
    };
    let run = format!("{}", SystemClock.now_ms());
    let senders: Vec<String> = (0..args.clients)
        .map(|i| format!("bench-{run}-{i}"))
        .collect();
    let owner = connect(format!("bench-{run}-owner")).await?;
    let mut members = senders.clone();
    members.push(format!("bench-{run}-reader"));
    let room = owner
        .create_group(v1::CreateGroupRequest {
            name: "bench".into(),
            member_ids: members,
            ..Default::default()
        })
        .await?
        .room
        .ok_or("no room")?
        .id;
    let reader = connect(format!("bench-{run}-reader")).await?;
    let head = reader
        .subscribe(v1::SubscribeRequest {
            room_id: room.clone(),
            after_seq: 0,
            limit: 0,
        })
        .await?
        .head_seq;

    let total = args.clients * args.messages;
    let counting = tokio::spawn(async move {
        let mut delivered = 0usize;
        while delivered < total {
            match reader.next_event().await {
                Ok(v1::Event {
                    kind: Some(v1::event::Kind::Room(_)),
                }) => delivered += 1,
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (delivered, Instant::now())
    });

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
    let (delivered, last_delivery) = counting.await?;
    report(
        &args,
        head,
        &mut latencies,
        acked,
        delivered,
        last_delivery.duration_since(started),
    );
    Ok(())
}

fn report(
    args: &Args,
    head: u64,
    latencies: &mut [Duration],
    acked: Duration,
    delivered: usize,
    delivery: Duration,
) {
    latencies.sort_unstable();
    let pct = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies
            .get(index)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "senders {} x messages {} ({} B text), room head before {head}",
        args.clients, args.messages, args.size
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
    println!(
        "delivered live to the reader: {delivered} (last at {:.2} s)",
        delivery.as_secs_f64()
    );
}
