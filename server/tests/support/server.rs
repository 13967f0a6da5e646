//! A real server on 127.0.0.1:0 over a temporary data folder, and clients connected to it with
//! the shared protocol client of `chatwire-conformance`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chatwire_conformance::client::{Client, WsTarget};
use chatwire_protocol::v1;
use chatwire_server::auth::TokenMinter;
use chatwire_server::chat::ids::UserId;
use chatwire_server::clock::{Clock, SystemClock};
use chatwire_server::config::Config;
use chatwire_server::server::{Server, system_clock};
use tokio::sync::oneshot;

/// A running test server.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its configuration.
    pub config: Config,
    minter: TokenMinter,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server on a fresh data folder.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// A server on a fresh data folder, with configuration changes.
    pub async fn start_with(change: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut server = Self::start_in(dir.path().to_path_buf(), change).await;
        server._dir = Some(dir);
        server
    }

    /// A server on the given data folder (kept by the caller).
    pub async fn start_in(data_dir: PathBuf, change: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            data_dir,
            ..Config::default()
        };
        change(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let server = Server::build(&config, listener, system_clock())
            .await
            .expect("server builds");
        let secrets =
            chatwire_server::devdefaults::load_or_create(&config.data_dir).expect("dev secrets");
        let minter =
            TokenMinter::from_config(&config.auth, Some(&secrets.jwt_secret)).expect("minter");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server.serve(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            config,
            minter,
            stop: Some(stop),
            task: Some(task),
            _dir: None,
        }
    }

    /// A valid token for `user`, for an hour.
    pub fn token(&self, user: &str) -> String {
        self.token_for(user, 3_600_000)
    }

    /// A token for `user` valid for `ttl_ms` from now (negative: already expired).
    pub fn token_for(&self, user: &str, ttl_ms: i64) -> String {
        let user = UserId::parse(user).expect("user id");
        let now = SystemClock.now_ms();
        // Mint with a positive lifetime from a shifted "now" to get expired tokens too.
        let (ttl, at) = if ttl_ms > 0 {
            (ttl_ms, now)
        } else {
            (1000, now + ttl_ms - 120_000)
        };
        self.minter.mint(&user, ttl, at).expect("mint")
    }

    /// A WebSocket target for this server.
    pub fn target(&self) -> WsTarget {
        WsTarget::new(self.addr)
    }

    /// A client that opened a WebSocket but did not connect.
    pub async fn open(&self) -> Client {
        Client::open(&self.target()).await.expect("websocket opens")
    }

    /// A client connected as `user`.
    pub async fn client(&self, user: &str) -> Client {
        let client = self.open().await;
        client.connect(&self.token(user)).await.expect("connect");
        client
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// Waits for a future, failing the test if it hangs (a guard, never a timing assertion).
pub async fn within<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), future)
        .await
        .expect("did not hang")
}

/// A text message.
pub fn text(text: &str) -> Option<v1::Content> {
    Some(v1::Content {
        text: text.to_owned(),
        ..Default::default()
    })
}

/// A Send request.
pub fn send(room: &str, client_msg_id: &str, body: &str) -> v1::SendRequest {
    v1::SendRequest {
        room_id: room.to_owned(),
        client_msg_id: client_msg_id.to_owned(),
        content: text(body),
        ..Default::default()
    }
}

/// Creates a group of `owner` with `members`, returning its id.
pub async fn group(owner: &Client, members: &[&str]) -> String {
    let response = owner
        .create_group(v1::CreateGroupRequest {
            name: "general".into(),
            member_ids: members.iter().map(|m| (*m).to_owned()).collect(),
            ..Default::default()
        })
        .await
        .expect("create group");
    response.room.expect("room").id
}

/// The room events of the next event frames, until `count` room events were seen.
pub async fn room_events(client: &Client, count: usize) -> Vec<v1::RoomEvent> {
    let mut events = Vec::new();
    while events.len() < count {
        let event = within(client.next_event()).await.expect("event");
        if let Some(v1::event::Kind::Room(room_event)) = event.kind {
            events.push(room_event);
        }
    }
    events
}
