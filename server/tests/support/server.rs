//! A real server on 127.0.0.1:0 over a temporary data folder, and clients connected to it with
//! the shared protocol client of `chatwire-conformance`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chatwire_conformance::client::{Client, QuicTarget, TransportFactory, WsTarget};
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
    /// Where its QUIC endpoint listens (UDP), unless QUIC is disabled.
    pub quic_addr: Option<SocketAddr>,
    /// Its configuration.
    pub config: Config,
    /// The certificate of its QUIC endpoint (the development certificate).
    pub cert_der: Vec<u8>,
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
        // Tests set the limits they rely on; the rest must not get in the way.
        let generous = chatwire_server::config::RateLimit {
            rate_per_minute: 1_000_000,
            burst: 100_000,
        };
        config.limits.rate_requests = generous;
        config.limits.rate_sends = generous;
        config.limits.rate_room_sends = generous;
        config.limits.rate_typing = generous;
        config.limits.rate_connects_per_ip = generous;
        config.limits.rate_search = generous;
        config.limits.rate_reports = generous;
        config.limits.rate_contact_requests = generous;
        change(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let server = Server::build(&config, listener, system_clock())
            .await
            .expect("server builds");
        let quic_addr = server.quic_addr();
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
            quic_addr,
            config,
            cert_der: secrets.tls_cert_der,
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

    /// A token for `user`, valid for an hour, issued at `issued_at_ms` (JWT `iat` keeps whole
    /// seconds).
    pub fn token_issued_at(&self, user: &str, issued_at_ms: i64) -> String {
        let user = UserId::parse(user).expect("user id");
        self.minter
            .mint(&user, 3_600_000, issued_at_ms)
            .expect("mint")
    }

    /// The admin API key (the data folder's `admin-key`).
    pub fn admin_key(&self) -> String {
        chatwire_server::devdefaults::load_or_create(&self.config.data_dir)
            .expect("dev secrets")
            .admin_key
    }

    /// The base URL of the HTTP API, e.g. `http://127.0.0.1:1234`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Calls the admin API with the admin key: `method path` (with its query string), no
    /// body; the status and the body (JSON, or the text as a JSON string when it is not JSON).
    pub async fn admin(&self, method: reqwest::Method, path: &str) -> (u16, serde_json::Value) {
        let response = within(
            super::http_client()
                .request(method, format!("{}{path}", self.http_url()))
                .bearer_auth(self.admin_key())
                .send(),
        )
        .await
        .expect("admin request");
        let status = response.status().as_u16();
        let text = within(response.text()).await.expect("admin response body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }

    /// Calls the admin API with the admin key and a JSON body; the status and the JSON body.
    pub async fn admin_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = within(
            super::http_client()
                .request(method, format!("{}{path}", self.http_url()))
                .bearer_auth(self.admin_key())
                .json(body)
                .send(),
        )
        .await
        .expect("admin request");
        let status = response.status().as_u16();
        let text = within(response.text()).await.expect("admin response body");
        let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        (status, body)
    }

    /// A WebSocket target for this server.
    pub fn target(&self) -> WsTarget {
        WsTarget::new(self.addr)
    }

    /// A QUIC target for this server, on its own client endpoint, trusting the server's
    /// development certificate.
    pub fn quic_target(&self) -> QuicTarget {
        let addr = self.quic_addr.expect("the server serves QUIC");
        QuicTarget::new(addr, "localhost", self.cert_der.clone()).expect("QUIC client endpoint")
    }

    /// The transport the session suites run on: `CHATWIRE_TEST_TRANSPORT` = `ws` (default) or
    /// `quic`. WebSocket-specific tests use [`TestServer::target`] instead.
    pub fn factory(&self) -> Box<dyn TransportFactory> {
        match std::env::var("CHATWIRE_TEST_TRANSPORT").as_deref() {
            Ok("quic") => Box::new(self.quic_target()),
            Ok("ws") | Err(_) => Box::new(self.target()),
            Ok(other) => panic!("CHATWIRE_TEST_TRANSPORT={other}: use ws or quic"),
        }
    }

    /// A client that opened a connection (on the transport of [`TestServer::factory`]) but
    /// did not connect.
    pub async fn open(&self) -> Client {
        Client::open(self.factory().as_ref())
            .await
            .expect("connection opens")
    }

    /// A client that opened a WebSocket (whatever `CHATWIRE_TEST_TRANSPORT` says) but did not
    /// connect, for tests of WebSocket framing.
    pub async fn ws_open(&self) -> Client {
        Client::open(&self.target()).await.expect("websocket opens")
    }

    /// A client connected as `user` over WebSocket, for tests of WebSocket framing.
    pub async fn ws_client(&self, user: &str) -> Client {
        let client = self.ws_open().await;
        client.connect(&self.token(user)).await.expect("connect");
        client
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

/// Subscribes to `room` after `after_seq`, paging until the replay is complete, and returns
/// every replayed event; the room is live for `client` afterwards.
pub async fn subscribe_from(client: &Client, room: &str, after_seq: u64) -> Vec<v1::RoomEvent> {
    let mut after = after_seq;
    let mut events = Vec::new();
    loop {
        let page = within(client.subscribe(v1::SubscribeRequest {
            room_id: room.to_owned(),
            after_seq: after,
            limit: 0,
        }))
        .await
        .expect("subscribe");
        after = page.events.last().map_or(after, |e| e.seq);
        events.extend(page.events);
        if page.complete {
            return events;
        }
    }
}

/// Subscribes to `room` from its start (see [`subscribe_from`]).
pub async fn subscribe_live(client: &Client, room: &str) -> Vec<v1::RoomEvent> {
    subscribe_from(client, room, 0).await
}

/// Waits for the first event `pick` accepts and returns the events that came before it with
/// the value `pick` made of it.
pub async fn wait_for<T>(
    client: &Client,
    mut pick: impl FnMut(&v1::event::Kind) -> Option<T>,
) -> (Vec<v1::event::Kind>, T) {
    let mut before = Vec::new();
    loop {
        let event = within(client.next_event()).await.expect("event");
        let Some(kind) = event.kind else { continue };
        if let Some(value) = pick(&kind) {
            return (before, value);
        }
        before.push(kind);
    }
}

/// The room event kinds of `room` among `events`.
pub fn room_kinds(events: &[v1::event::Kind], room: &str) -> Vec<v1::room_event::Kind> {
    events
        .iter()
        .filter_map(|kind| match kind {
            v1::event::Kind::Room(event) if event.room_id == room => event.kind.clone(),
            _ => None,
        })
        .collect()
}

/// The error of a call that must fail.
pub fn refused<T: std::fmt::Debug>(
    result: Result<T, chatwire_conformance::client::ClientError>,
) -> v1::Error {
    match result.expect_err("the request must fail") {
        chatwire_conformance::client::ClientError::Server(err) => err,
        other => panic!("expected an error reply, got {other}"),
    }
}

/// The code of an error reply, for `assert_eq!`.
pub fn code_of<T: std::fmt::Debug>(
    result: Result<T, chatwire_conformance::client::ClientError>,
) -> v1::ErrorCode {
    refused(result).code()
}

/// The room's head, as GetRoom reports it.
pub async fn head(client: &Client, room: &str) -> u64 {
    client
        .get_room(v1::GetRoomRequest {
            room_id: room.to_owned(),
        })
        .await
        .expect("get room")
        .room
        .expect("room")
        .last_seq
}

/// A History page.
pub async fn history(
    client: &Client,
    room: &str,
    position: Option<v1::history_request::Position>,
    limit: u32,
) -> v1::HistoryResponse {
    client
        .history(v1::HistoryRequest {
            room_id: room.to_owned(),
            position,
            limit,
            thread_root_seq: 0,
        })
        .await
        .expect("history")
}

/// The texts of messages, in page order.
pub fn texts(messages: &[v1::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.content.clone().unwrap_or_default().text)
        .collect()
}

/// The seqs of messages, in page order.
pub fn seqs(messages: &[v1::Message]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

/// A WebSocket spoken by hand, for what the shared client never sends (text messages): the
/// upgrade, masked client frames, and the close code of the server's close frame.
pub struct RawWs {
    stream: tokio::net::TcpStream,
}

impl RawWs {
    /// Opens `/v1/ws` offering `chatwire.v1` and checks for `101 Switching Protocols`.
    pub async fn open(addr: SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("tcp");
        let request = format!(
            "GET /v1/ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: chatwire.v1\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("upgrade");
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(stream.read_u8().await.expect("upgrade response"));
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "upgrade refused: {head}");
        Self { stream }
    }

    /// Sends one masked, final frame with this opcode (1 text, 2 binary).
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) {
        use tokio::io::AsyncWriteExt;
        let mask = [0x11, 0x22, 0x33, 0x44];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | u8::try_from(len).expect("short")),
            len => {
                frame.push(0x80 | 126);
                frame.extend(
                    u16::try_from(len)
                        .expect("test payloads stay small")
                        .to_be_bytes(),
                );
            }
        }
        frame.extend(mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
        self.stream.write_all(&frame).await.expect("send");
    }

    /// Reads frames until the server's close frame and returns its status code (`None` if the
    /// connection ended without one).
    pub async fn close_code(&mut self) -> Option<u16> {
        use tokio::io::AsyncReadExt;
        loop {
            let first = self.stream.read_u8().await.ok()?;
            let len = match self.stream.read_u8().await.ok()? & 0x7f {
                126 => u64::from(self.stream.read_u16().await.ok()?),
                127 => self.stream.read_u64().await.ok()?,
                len => u64::from(len),
            };
            let mut payload = vec![0; usize::try_from(len).ok()?];
            self.stream.read_exact(&mut payload).await.ok()?;
            if first & 0x0f == 8 {
                return payload
                    .get(..2)
                    .map(|code| u16::from_be_bytes([code[0], code[1]]));
            }
        }
    }
}

/// The real `chatwire` binary serving on `127.0.0.1:0` over a data folder, for tests that kill
/// the process. Killed (SIGKILL) when dropped.
pub struct ServerProcess {
    /// Where it listens, as it printed.
    pub addr: SocketAddr,
    child: std::process::Child,
}

impl ServerProcess {
    /// Starts `chatwire --data-dir DIR serve --listen 127.0.0.1:0` and waits for its
    /// `chatwire: serving on http://ADDR ...` line. Rate limits are lifted through the
    /// environment: the tests here send in bursts.
    pub async fn spawn(data_dir: &std::path::Path) -> Self {
        Self::spawn_with(data_dir, &[]).await
    }

    /// [`ServerProcess::spawn`] with extra environment variables (configuration such as
    /// `CHATWIRE_STORAGE__BACKEND`). The server's log lines are echoed to the test's stderr,
    /// prefixed with the data folder's name, so a failing test shows them.
    pub async fn spawn_with(data_dir: &std::path::Path, envs: &[(String, String)]) -> Self {
        let lifted = [
            ("CHATWIRE_LIMITS__RATE_SENDS__RATE_PER_MINUTE", "1000000"),
            ("CHATWIRE_LIMITS__RATE_SENDS__BURST", "100000"),
            ("CHATWIRE_LIMITS__RATE_REQUESTS__RATE_PER_MINUTE", "1000000"),
            ("CHATWIRE_LIMITS__RATE_REQUESTS__BURST", "100000"),
        ];
        let mut all: Vec<(String, String)> = lifted
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        all.extend_from_slice(envs);
        Self::spawn_configured(data_dir, &all, false).await
    }

    /// The binary with every default (no rate limit lifted, no environment configuration):
    /// what an operator who configures nothing runs.
    pub async fn spawn_defaults(data_dir: &std::path::Path) -> Self {
        Self::spawn_configured(data_dir, &[], true).await
    }

    /// `clean`: no `CHATWIRE_*` variable of the test's environment reaches the server.
    async fn spawn_configured(
        data_dir: &std::path::Path,
        envs: &[(String, String)],
        clean: bool,
    ) -> Self {
        use std::io::BufRead;
        let label = data_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_chatwire"));
        if clean {
            for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("CHATWIRE_")) {
                command.env_remove(name);
            }
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("RUST_LOG", "warn")
            .envs(envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("chatwire starts");
        let stderr = child.stderr.take().expect("stderr");
        let (found, addr) = oneshot::channel::<SocketAddr>();
        // Reads stderr to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[{label}] {line}");
                let addr = line
                    .strip_prefix("chatwire: serving on http://")
                    .and_then(|rest| rest.split_whitespace().next())
                    .and_then(|addr| addr.parse().ok());
                if let Some(addr) = addr
                    && let Some(sender) = found.take()
                {
                    let _ = sender.send(addr);
                }
            }
        });
        let addr = within(addr).await.expect("the server printed its address");
        Self { addr, child }
    }

    /// A WebSocket target for this process.
    pub fn target(&self) -> WsTarget {
        WsTarget::new(self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, `TERM`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    /// Kills the process with SIGKILL (no drain, no flush) and reaps it.
    pub fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A token for `user` that a server on `data_dir` with the default auth settings accepts,
/// minted the way `chatwire token` does (the folder's development secret).
pub fn dev_token(data_dir: &std::path::Path, user: &str) -> String {
    let secrets = chatwire_server::devdefaults::load_or_create(data_dir).expect("dev secrets");
    let minter = TokenMinter::from_config(&Config::default().auth, Some(&secrets.jwt_secret))
        .expect("minter");
    let user = UserId::parse(user).expect("user id");
    minter
        .mint(&user, 3_600_000, SystemClock.now_ms())
        .expect("mint")
}
