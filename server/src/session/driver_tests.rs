//! The driver against an in-memory transport and the embedded backends, counting what a path
//! costs (socket polls, store reads) instead of timing it.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chatwire_protocol::{ServerFrameDecoder, v1};
use tokio::sync::mpsc;

use super::*;
use crate::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::backend::fanout_local::LocalFanout;
use crate::backend::pipeline_local::LocalPipeline;
use crate::backend::store_counting::CountingStore;
use crate::session::core::SessionConfig;
use crate::session::services::Authenticate;
use crate::writer::RoomWriter;
use crate::writer::draft::WriterConfig;

/// A read half fed by the test; it counts how often the driver side polls it.
struct FakeReader {
    rx: mpsc::UnboundedReceiver<Inbound>,
    polls: Arc<AtomicUsize>,
}

#[async_trait]
impl TransportReader for FakeReader {
    async fn recv(&mut self) -> Option<Result<Inbound, TransportError>> {
        let (rx, polls) = (&mut self.rx, &self.polls);
        std::future::poll_fn(|cx| {
            polls.fetch_add(1, Ordering::SeqCst);
            rx.poll_recv(cx)
        })
        .await
        .map(Ok)
    }
}

/// A write half that hands every write to the test.
struct FakeWriter(mpsc::UnboundedSender<Bytes>);

#[async_trait]
impl SessionTransport for FakeWriter {
    async fn send(&mut self, bytes: Bytes) -> Result<(), TransportError> {
        self.0
            .send(bytes)
            .map_err(|_| TransportError("test ended".into()))
    }

    async fn close(&mut self, _code: v1::CloseCode, _reason: &str) {}
}

/// Any token is the user it names, valid for an hour.
#[derive(Debug)]
struct TokenIsUser;

impl Authenticate for TokenIsUser {
    fn authenticate(&self, token: &str, now_ms: i64) -> Result<Identity, TokenRefusal> {
        Ok(Identity {
            user: UserId::parse(token).map_err(|_| TokenRefusal::Invalid)?,
            expires_at_ms: now_ms + 3_600_000,
            issued_at_ms: None,
        })
    }
}

/// Room writers (shards) of the test server.
const SHARDS: usize = 2;

struct Harness {
    services: Arc<Services>,
    store: Arc<CountingStore>,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    let options = EmbeddedOptions {
        bucket_width_ms: 3_600_000,
        sync: false,
    };
    let embedded = EmbeddedStore::open(&dir.path().join("store"), options).expect("store");
    let store = Arc::new(CountingStore::new(Arc::new(embedded)));
    let clock = crate::server::system_clock();
    let fanout = Arc::new(LocalFanout::new(Arc::clone(&clock)));
    let writers = (0..SHARDS)
        .map(|_| {
            RoomWriter::new(
                store.clone(),
                fanout.clone(),
                Arc::clone(&clock),
                WriterConfig::default(),
            )
            .boxed()
        })
        .collect();
    let pipeline = Arc::new(LocalPipeline::start(writers, 64));
    let config = crate::config::Config::default();
    let services = Services::new(
        store.clone(),
        pipeline,
        fanout,
        clock,
        Arc::new(TokenIsUser),
        SessionConfig::default(),
        crate::server::advertised_limits(&config),
        "test".into(),
    );
    Harness {
        services: Arc::new(services),
        store,
        _dir: dir,
    }
}

/// One session driven through the fake transport.
struct Client {
    inbound: mpsc::UnboundedSender<Inbound>,
    written: mpsc::UnboundedReceiver<Bytes>,
    decoder: ServerFrameDecoder,
    reader_polls: Arc<AtomicUsize>,
    next_id: u64,
}

impl Client {
    async fn connect(services: &Arc<Services>, user: &str) -> Self {
        let (inbound, rx) = mpsc::unbounded_channel();
        let (tx, written) = mpsc::unbounded_channel();
        let reader_polls = Arc::new(AtomicUsize::new(0));
        let reader = FakeReader {
            rx,
            polls: Arc::clone(&reader_polls),
        };
        tokio::spawn(run(
            Arc::clone(services),
            Box::new(reader),
            Box::new(FakeWriter(tx)),
        ));
        let mut client = Self {
            inbound,
            written,
            decoder: ServerFrameDecoder::new(1 << 20),
            reader_polls,
            next_id: 1,
        };
        let connect = Request::Connect(v1::ConnectRequest {
            token: user.into(),
            ..Default::default()
        });
        client.call(connect).await;
        client
    }

    fn send(&mut self, request: Request) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        let frame = v1::ClientFrame {
            id,
            request: Some(request),
            ..Default::default()
        };
        let mut bytes = BytesMut::new();
        encode_frame(&frame, 1 << 20, &mut bytes).expect("encodes");
        self.inbound
            .send(Inbound::Frames(bytes.freeze()))
            .expect("session runs");
        id
    }

    async fn frame(&mut self) -> v1::ServerFrame {
        loop {
            if let Some(frame) = self.decoder.next_frame().expect("valid server frames") {
                return frame;
            }
            let bytes = self.written.recv().await.expect("session writes");
            self.decoder.push(&bytes);
        }
    }

    /// Sends a request and waits for its reply; events before it are dropped.
    async fn call(&mut self, request: Request) -> v1::reply::Result {
        let id = self.send(request);
        loop {
            if let Some(v1::server_frame::Frame::Reply(reply)) = self.frame().await.frame
                && reply.request_id == id
            {
                return reply.result.expect("a result");
            }
        }
    }

    async fn event(&mut self) -> v1::event::Kind {
        loop {
            if let Some(v1::server_frame::Frame::Event(event)) = self.frame().await.frame {
                return event.kind.expect("an event kind");
            }
        }
    }

    async fn room_activity(&mut self) -> v1::RoomActivity {
        loop {
            if let v1::event::Kind::RoomActivity(activity) = self.event().await {
                return activity;
            }
        }
    }
}

fn send_text(room: &str, id: usize) -> Request {
    Request::Send(v1::SendRequest {
        room_id: room.into(),
        client_msg_id: format!("m-{id}"),
        content: Some(v1::Content {
            text: format!("message {id}"),
            ..Default::default()
        }),
        ..Default::default()
    })
}

async fn open_direct(client: &mut Client, other: &str) -> String {
    let request = Request::OpenDirect(v1::OpenDirectRequest {
        user_id: other.into(),
    });
    match client.call(request).await {
        v1::reply::Result::OpenDirect(opened) => opened.room.expect("room").id,
        other => panic!("OpenDirect failed: {other:?}"),
    }
}

#[tokio::test]
async fn deliveries_do_not_poll_the_read_half() {
    let h = harness();
    let mut alice = Client::connect(&h.services, "alice").await;
    let before = alice.reader_polls.load(Ordering::SeqCst);
    let user = UserId::parse("alice").expect("user id");
    const EVENTS: usize = 300;
    for i in 0..EVENTS {
        let event = v1::Event {
            kind: Some(v1::event::Kind::Heartbeat(v1::Heartbeat {
                server_time_ms: i64::try_from(i).expect("small"),
            })),
        };
        h.services.fanout.publish_user(&user, event, None);
    }
    for _ in 0..EVENTS {
        alice.event().await;
    }
    let polls = alice.reader_polls.load(Ordering::SeqCst) - before;
    // Nothing arrived on the read half, so nothing should have polled it again.
    assert_eq!(
        polls, 0,
        "read half polled {polls} times for {EVENTS} deliveries"
    );
}

#[tokio::test]
async fn room_activity_reads_the_read_position_once_per_room() {
    let h = harness();
    let mut alice = Client::connect(&h.services, "alice").await;
    let mut bob = Client::connect(&h.services, "bob").await;
    let room = open_direct(&mut bob, "alice").await;
    let before = h.store.calls("user_room");
    const SENDS: usize = 20;
    for i in 1..=SENDS {
        bob.call(send_text(&room, i)).await;
        let activity = alice.room_activity().await;
        assert_eq!(
            activity.unread_count as usize, i,
            "activity {i}: {activity:?}"
        );
    }
    let reads = h.store.calls("user_room") - before;
    assert!(
        reads <= 1,
        "{reads} store reads for {SENDS} RoomActivity events"
    );

    // Reading moves the position: the next activity counts from there.
    let head = match alice.call(Request::Sync(v1::SyncRequest::default())).await {
        v1::reply::Result::Sync(sync) => sync.rooms[0].last_seq,
        other => panic!("Sync failed: {other:?}"),
    };
    let read = Request::MarkRead(v1::MarkReadRequest {
        room_id: room.clone(),
        seq: head,
    });
    alice.call(read).await;
    bob.call(send_text(&room, SENDS + 1)).await;
    assert_eq!(alice.room_activity().await.unread_count, 1);
    // Alice's own message moves her position to it: nothing unread, then one.
    // (Its reply and its RoomActivity may come in either order, R-5.3.2.)
    alice.send(send_text(&room, SENDS + 2));
    assert_eq!(alice.room_activity().await.unread_count, 0);
    bob.call(send_text(&room, SENDS + 3)).await;
    assert_eq!(alice.room_activity().await.unread_count, 1);
}

fn sent_seq(result: &v1::reply::Result) -> u64 {
    match result {
        v1::reply::Result::Send(sent) => sent.seq,
        other => panic!("Send failed: {other:?}"),
    }
}

#[tokio::test]
async fn a_send_is_answered_while_an_earlier_one_waits_at_the_store() {
    use crate::backend::pipeline::shard_of;
    let h = harness();
    let mut alice = Client::connect(&h.services, "alice").await;
    // Two rooms whose writers are different shards.
    let slow = open_direct(&mut alice, "bob").await;
    let mut fast = String::new();
    for i in 0..64 {
        let room = open_direct(&mut alice, &format!("peer{i}")).await;
        if shard_of(&room, SHARDS) != shard_of(&slow, SHARDS) {
            fast = room;
            break;
        }
    }
    assert!(!fast.is_empty(), "no room on another shard");
    let gate = h
        .store
        .hold_appends(&RoomId::parse(&slow).expect("room id"));

    let first = alice.send(send_text(&slow, 1));
    let second = alice.send(send_text(&slow, 2));
    let other = alice.send(send_text(&fast, 3));
    // The send to the other room is answered while both sends to the slow room wait.
    let mut answered = Vec::new();
    let bounded = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(v1::server_frame::Frame::Reply(reply)) = alice.frame().await.frame {
                answered.push(reply.request_id);
                if reply.request_id == other {
                    sent_seq(&reply.result.expect("a result"));
                    return;
                }
            }
        }
    });
    assert!(
        bounded.await.is_ok(),
        "the send to another room waited behind the held one"
    );
    assert_eq!(answered, [other], "a held send was answered");

    gate.add_permits(1_000);
    let mut seqs = std::collections::HashMap::new();
    while seqs.len() < 2 {
        if let Some(v1::server_frame::Frame::Reply(reply)) = alice.frame().await.frame {
            seqs.insert(reply.request_id, sent_seq(&reply.result.expect("a result")));
        }
    }
    assert!(
        seqs[&first] < seqs[&second],
        "sends to one room applied out of order: {seqs:?}"
    );
}
