//! The client harness judged with the project's own client library: for each scenario a
//! small reference behaviour (written here on top of `Client`, which itself has no reconnect
//! or dedup logic) must pass, and a naive behaviour that breaks the rule must fail. One test
//! runs the `client-harness` command line the way an SDK test in another language does.

use std::sync::Arc;
use std::time::Duration;

use chatwire_conformance::client::{Client, ClientError, WsTarget};
use chatwire_conformance::harness::{Harness, REPORT_ROOM, ROOM, Scenario, Verdict};
use chatwire_protocol::v1::{self, event};

/// A hang guard only.
const HANG: Duration = Duration::from_secs(30);

async fn guard<T>(fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG, fut).await.expect("test hung")
}

/// Starts the harness; its URL and the running scenario.
async fn harness(scenario: Scenario) -> (String, tokio::task::JoinHandle<Verdict>) {
    let harness = Harness::bind("127.0.0.1:0".parse().expect("addr"), scenario)
        .await
        .expect("bind");
    let url = harness.url();
    (url, tokio::spawn(harness.run(Duration::from_secs(20))))
}

async fn verdict(run: tokio::task::JoinHandle<Verdict>) -> Verdict {
    let verdict = guard(run).await.expect("harness task");
    println!("{}", verdict.terminal());
    verdict
}

async fn open(url: &str) -> (Client, v1::ConnectResponse) {
    let client = Client::open(&WsTarget::from_url(url)).await.expect("open");
    let session = client.connect("any-token").await.expect("connect");
    (client, session)
}

fn message(client_msg_id: &str, text: &str) -> v1::SendRequest {
    v1::SendRequest {
        room_id: ROOM.into(),
        client_msg_id: client_msg_id.into(),
        content: Some(v1::Content {
            text: text.into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn report(client: &Client, applied: &[u64]) {
    let text: Vec<String> = applied.iter().map(u64::to_string).collect();
    let mut report = message("report", &format!("applied:{}", text.join(",")));
    report.room_id = REPORT_ROOM.into();
    client.send(report).await.expect("report");
}

async fn subscribe(client: &Client, after_seq: u64) -> Vec<u64> {
    let page = client
        .subscribe(v1::SubscribeRequest {
            room_id: ROOM.into(),
            after_seq,
            limit: 0,
        })
        .await
        .expect("subscribe");
    page.events.iter().map(|e| e.seq).collect()
}

async fn next_room_seq(client: &Client) -> u64 {
    loop {
        if let event::Kind::Room(room) = client
            .next_event()
            .await
            .expect("event")
            .kind
            .expect("kind")
        {
            return room.seq;
        }
    }
}

/// Follows the room until `last` is applied: each seq once, gaps repaired (R-10.5.1/2/4).
async fn follow(client: &Client, dedup: bool, last: u64) -> Vec<u64> {
    let mut applied = subscribe(client, 0).await;
    while applied.last().copied().unwrap_or(0) < last {
        let high = applied.last().copied().unwrap_or(0);
        let seq = next_room_seq(client).await;
        if dedup && seq <= high {
            continue;
        }
        if dedup && seq > high + 1 {
            applied.extend(subscribe(client, high).await);
            continue;
        }
        applied.push(seq);
    }
    applied
}

#[tokio::test]
async fn drop_mid_request_passes_when_the_send_is_resent_with_its_client_msg_id() {
    for (resend_same, expected) in [(true, true), (false, false)] {
        let (url, run) = harness(Scenario::DropMidRequest).await;
        let (first, _) = guard(open(&url)).await;
        let hello = message("cmid-hello", "hello");
        let outcome = guard(first.send(hello.clone())).await;
        assert!(
            matches!(outcome, Err(ClientError::Closed(_))),
            "{outcome:?}"
        );
        let (second, _) = guard(open(&url)).await;
        let retry = if resend_same {
            hello
        } else {
            message("cmid-new", "hello")
        };
        guard(second.send(retry)).await.expect("resent");
        assert_eq!(verdict(run).await.passed(), expected);
    }
}

#[tokio::test]
async fn ack_duplicated_passes_when_the_duplicate_reply_is_ignored() {
    let (url, run) = harness(Scenario::AckDuplicated).await;
    let (client, _) = guard(open(&url)).await;
    guard(client.send(message("cmid-1", "one")))
        .await
        .expect("one");
    guard(client.send(message("cmid-2", "two")))
        .await
        .expect("two");
    assert!(verdict(run).await.passed());
}

#[tokio::test]
async fn ack_duplicated_fails_a_client_that_drops_the_connection_on_a_stray_reply() {
    let (url, run) = harness(Scenario::AckDuplicated).await;
    let (client, _) = guard(open(&url)).await;
    guard(client.send(message("cmid-1", "one")))
        .await
        .expect("one");
    client.close(4000, "unexpected reply").await;
    assert!(!verdict(run).await.passed());
}

#[tokio::test]
async fn seq_gap_passes_when_the_gap_is_repaired_from_the_last_seq() {
    let (url, run) = harness(Scenario::SeqGap).await;
    let (client, _) = guard(open(&url)).await;
    let applied = guard(follow(&client, true, 6)).await;
    assert_eq!(applied, [1, 2, 3, 4, 5, 6]);
    guard(report(&client, &applied)).await;
    assert!(verdict(run).await.passed());
}

#[tokio::test]
async fn duplicate_event_passes_a_deduplicating_client_and_fails_a_naive_one() {
    for (dedup, expected) in [(true, true), (false, false)] {
        let (url, run) = harness(Scenario::DuplicateEvent).await;
        let (client, _) = guard(open(&url)).await;
        let applied = guard(follow(&client, dedup, 4)).await;
        guard(report(&client, &applied)).await;
        assert_eq!(verdict(run).await.passed(), expected, "dedup {dedup}");
    }
}

#[tokio::test]
async fn token_expiring_passes_when_the_client_refreshes() {
    let (url, run) = harness(Scenario::TokenExpiring).await;
    let (client, _) = guard(open(&url)).await;
    loop {
        let kind = guard(client.next_event()).await.expect("event").kind;
        if let Some(event::Kind::TokenExpiring(_)) = kind {
            break;
        }
    }
    let refreshed = guard(client.refresh(v1::RefreshRequest {
        token: "new-token".into(),
    }))
    .await
    .expect("refresh");
    assert!(refreshed.token_expires_at_ms > 0);
    let verdict = verdict(run).await;
    assert!(verdict.passed() && verdict.checks.iter().all(|c| c.passed));
}

/// Connects, applies seqs 1..3, waits for the drain; returns the reconnect delay asked for.
async fn until_drained(url: &str) -> u32 {
    let (client, _) = guard(open(url)).await;
    assert_eq!(guard(subscribe(&client, 0)).await, [1, 2, 3]);
    loop {
        if let Some(event::Kind::Disconnect(d)) =
            guard(client.next_event()).await.expect("event").kind
        {
            assert!(d.reconnect);
            return d.reconnect_delay_ms;
        }
    }
}

#[tokio::test]
async fn server_draining_passes_a_client_that_waits_and_resumes() {
    let (url, run) = harness(Scenario::ServerDraining).await;
    let delay = until_drained(&url).await;
    // The client's own reconnect delay (the behaviour under test), not a synchronisation.
    tokio::time::sleep(Duration::from_millis(u64::from(delay) + 50)).await;
    let (client, _) = guard(open(&url)).await;
    assert!(guard(subscribe(&client, 3)).await.is_empty());
    assert!(verdict(run).await.passed());
}

#[tokio::test]
async fn server_draining_fails_a_client_that_reconnects_at_once() {
    let (url, run) = harness(Scenario::ServerDraining).await;
    until_drained(&url).await;
    let (client, _) = guard(open(&url)).await;
    let _ = guard(subscribe(&client, 3)).await;
    assert!(!verdict(run).await.passed());
}

async fn send_all(client: Arc<Client>, permits: Option<usize>) {
    let gate = permits.map(|n| Arc::new(tokio::sync::Semaphore::new(n)));
    let sends = (1..=8).map(|n| {
        let (client, gate) = (Arc::clone(&client), gate.clone());
        tokio::spawn(async move {
            let _permit = match &gate {
                Some(gate) => Some(gate.acquire().await.expect("gate")),
                None => None,
            };
            client
                .send(message(&format!("cmid-m{n}"), &format!("m{n}")))
                .await
        })
    });
    for send in futures_util::future::join_all(sends).await {
        send.expect("task").expect("sent");
    }
}

#[tokio::test]
async fn slow_reads_passes_a_client_within_the_in_flight_limit_and_fails_a_burst() {
    for (respect, expected) in [(true, true), (false, false)] {
        let (url, run) = harness(Scenario::SlowReads).await;
        let (client, session) = guard(open(&url)).await;
        let limit = session.limits.expect("limits").max_in_flight_requests;
        // Connect's own slot is free again; the gate keeps sends within the limit.
        let permits = respect.then_some(usize::try_from(limit).expect("limit"));
        guard(send_all(Arc::new(client), permits)).await;
        assert_eq!(verdict(run).await.passed(), expected, "respect {respect}");
    }
}

#[tokio::test]
async fn the_command_line_prints_a_ready_line_and_writes_the_verdict() {
    use tokio::io::AsyncBufReadExt as _;
    let dir = std::env::temp_dir().join(format!("cw-harness-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let json = dir.join("verdict.json");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_chatwire-conformance"))
        .args(["client-harness", "--scenario", "token-expiring", "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let ready = guard(lines.next_line())
        .await
        .expect("read")
        .expect("ready line");
    let ready: serde_json::Value = serde_json::from_str(&ready).expect("ready JSON");
    assert_eq!(ready["scenario"], "token-expiring");
    let url = ready["url"].as_str().expect("url");
    let (client, _) = guard(open(url)).await;
    loop {
        if let Some(event::Kind::TokenExpiring(_)) =
            guard(client.next_event()).await.expect("event").kind
        {
            break;
        }
    }
    guard(client.refresh(v1::RefreshRequest { token: "t2".into() }))
        .await
        .expect("refresh");
    let status = guard(child.wait()).await.expect("exit");
    assert!(status.success());
    let verdict: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("json")).expect("parse");
    assert_eq!(verdict["passed"], true);
    assert_eq!(verdict["scenario"], "token-expiring");
    let _ = std::fs::remove_dir_all(&dir);
}
