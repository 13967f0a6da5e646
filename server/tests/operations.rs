//! Operating a node (docs/operations.md): the real `chatwire` binary's logs (text without
//! colour off a terminal, JSON, one line per connection opened and closed, refused
//! authentications with the reason and never the token), its start-up lines, `localhost:PORT`,
//! misspelled `CHATWIRE_*` variables, `check-config`, `token --verify`; `wss://` with a
//! configured certificate through a real TLS WebSocket client; backup while clients write,
//! restore into a new data folder, and every acknowledged message and queued event read back
//! from a server started on it.
//!
//! ```sh
//! cargo test -p chatwire-server --test operations
//! ```

mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use chatwire_conformance::client::{
    Client, CloseInfo, Framing, Transport, TransportError, TransportFactory, TransportRx,
    TransportTx,
};
use chatwire_protocol::v1;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use support::server::{TestServer, dev_token, group, send, subscribe_live, within};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const BIN: &str = env!("CARGO_BIN_EXE_chatwire");

/// A `chatwire serve` process whose stderr lines are kept for the test to read.
struct Serve {
    addr: SocketAddr,
    lines: watch::Receiver<Vec<String>>,
    child: std::process::Child,
}

impl Serve {
    /// Starts `chatwire [--config FILE] --data-dir DIR serve --listen LISTEN` with `env`, and
    /// waits for its `serving on` line.
    async fn start(
        data_dir: &Path,
        config: Option<&Path>,
        listen: &str,
        env: &[(&str, &str)],
    ) -> Self {
        use std::io::BufRead;
        let mut command = std::process::Command::new(BIN);
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(["serve", "--listen", listen])
            .env("RUST_LOG", "info")
            .env("CHATWIRE_LIMITS__RATE_SENDS__RATE_PER_MINUTE", "1000000")
            .env("CHATWIRE_LIMITS__RATE_SENDS__BURST", "100000")
            .env(
                "CHATWIRE_LIMITS__RATE_ROOM_SENDS__RATE_PER_MINUTE",
                "1000000",
            )
            .env("CHATWIRE_LIMITS__RATE_ROOM_SENDS__BURST", "100000")
            .env("CHATWIRE_LIMITS__RATE_REQUESTS__RATE_PER_MINUTE", "1000000")
            .env("CHATWIRE_LIMITS__RATE_REQUESTS__BURST", "100000")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("chatwire starts");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = watch::channel(Vec::new());
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                eprintln!("[serve] {line}");
                tx.send_modify(|lines| lines.push(line));
            }
        });
        let mut server = Self {
            addr: "127.0.0.1:0".parse().expect("addr"),
            lines,
            child,
        };
        let line = server
            .line(|l| l.starts_with("chatwire: serving on "))
            .await;
        server.addr = line
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.parse().ok())
            .expect("an address in the serving line");
        server
    }

    /// The first line `pick` accepts, waiting for it.
    async fn line(&mut self, pick: impl Fn(&str) -> bool) -> String {
        let lines = within(self.lines.wait_for(|lines| lines.iter().any(|l| pick(l))))
            .await
            .expect("the server is running");
        lines.iter().find(|l| pick(l)).cloned().expect("just found")
    }

    /// Every line so far.
    fn all_lines(&self) -> Vec<String> {
        self.lines.borrow().clone()
    }

    fn target(&self) -> chatwire_conformance::client::WsTarget {
        chatwire_conformance::client::WsTarget::new(self.addr)
    }

    /// SIGTERM, then waits for the exit (a clean shutdown releases the databases).
    fn stop(mut self) {
        let status = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .expect("kill runs");
        assert!(status.success());
        let exit = self.child.wait().expect("reaped");
        assert!(exit.success(), "clean exit: {exit}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `chatwire ARGS` to its end: (success, stdout, stderr).
async fn chatwire(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let output = within(
        tokio::process::Command::new(BIN)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "warn")
            .output(),
    )
    .await
    .expect("chatwire runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (
        output.status.success(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("UTF-8 temp path")
}

async fn connect_ws(target: &dyn TransportFactory, token: &str) -> Client {
    let client = within(Client::open(target))
        .await
        .expect("connection opens");
    within(client.connect(token)).await.expect("connect");
    client
}

#[tokio::test]
async fn text_logs_name_each_connection_and_refusal_without_colour() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = Serve::start(
        &data,
        None,
        // A host name the listen flag accepts: the loopback.
        "localhost:0",
        &[("CHATWIRE_LISTN", "0.0.0.0:1")],
    )
    .await;
    assert!(server.addr.ip().is_loopback(), "{}", server.addr);
    // Start-up says where the page, the docs, the dashboard and the admin key are, and how to
    // get a token with this very binary (the last start-up line).
    server.line(|l| l.contains("get a development token")).await;
    let startup = server.all_lines().join("\n");
    for expected in [
        format!("http://{}/docs", server.addr),
        format!("http://{}/dashboard", server.addr),
        format!("admin key in {}", data.join("admin-key").display()),
        format!("{BIN} --data-dir {} token --user alice", data.display()),
    ] {
        assert!(startup.contains(&expected), "{expected:?} in:\n{startup}");
    }
    // The misspelled variable is reported with the one it probably meant.
    let warning = server.line(|l| l.contains("CHATWIRE_LISTN")).await;
    assert!(warning.contains("CHATWIRE_LISTEN"), "{warning}");
    assert!(
        !warning.contains('\u{1b}'),
        "ANSI escape in a log off a terminal: {warning:?}"
    );

    let alice = connect_ws(&server.target(), &dev_token(&data, "alice")).await;
    let opened = server
        .line(|l| l.contains("connection opened") && l.contains("user=alice"))
        .await;
    assert!(
        opened.contains("transport=\"websocket\"") || opened.contains("transport=websocket"),
        "{opened}"
    );

    // A token signed with another folder's secret: refused, the reason logged, not the token.
    let other = tempfile::tempdir().expect("temp dir");
    let forged = dev_token(other.path(), "mallory");
    let client = within(Client::open(&server.target())).await.expect("opens");
    assert!(within(client.connect(&forged)).await.is_err());
    let refused = server.line(|l| l.contains("authentication refused")).await;
    assert!(refused.contains("signature"), "{refused}");
    let closed = server
        .line(|l| {
            l.contains("connection closed") && l.contains("user=\"-\"") && l.contains("AUTH_FAILED")
        })
        .await;
    assert!(closed.contains("duration_ms="), "{closed}");

    within(alice.close(1000, "bye")).await;
    let closed = server
        .line(|l| {
            l.contains("connection closed") && l.contains("user=\"alice\"")
                || l.contains("connection closed") && l.contains("user=alice")
        })
        .await;
    assert!(
        closed.contains("websocket") && closed.contains("duration_ms="),
        "{closed}"
    );

    // The same lines for a QUIC connection (QUIC listens on the same port over UDP).
    let cert = std::fs::read(data.join("tls-cert.der")).expect("development certificate");
    let quic = chatwire_conformance::client::QuicTarget::new(server.addr, "localhost", cert)
        .expect("QUIC client");
    let bob = connect_ws(&quic, &dev_token(&data, "bob")).await;
    server
        .line(|l| l.contains("connection opened") && l.contains("bob") && l.contains("quic"))
        .await;
    within(bob.close(1000, "bye")).await;
    let closed = server
        .line(|l| l.contains("connection closed") && l.contains("bob"))
        .await;
    assert!(
        closed.contains("quic") && closed.contains("duration_ms="),
        "{closed}"
    );

    let lines = server.all_lines();
    let signature = forged.rsplit('.').next().expect("three parts");
    for line in &lines {
        assert!(
            !line.contains('\u{1b}'),
            "ANSI escape in a log off a terminal: {line:?}"
        );
        assert!(!line.contains(signature), "a token in the log: {line}");
    }
    server.stop();
}

#[tokio::test]
async fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = Serve::start(
        &data,
        None,
        "127.0.0.1:0",
        &[("CHATWIRE_LOG__FORMAT", "json")],
    )
    .await;
    let alice = connect_ws(&server.target(), &dev_token(&data, "alice")).await;
    within(alice.close(1000, "bye")).await;
    let closed = server
        .line(|l| l.contains("connection closed") && l.contains("alice"))
        .await;
    let event: serde_json::Value = serde_json::from_str(&closed).expect("a JSON line");
    assert_eq!(event["level"], "INFO");
    assert_eq!(event["fields"]["message"], "connection closed");
    assert_eq!(event["fields"]["user"], "alice");
    assert_eq!(event["fields"]["transport"], "websocket");
    assert!(event["fields"]["duration_ms"].is_u64(), "{event}");
    assert!(event["fields"]["code"].is_string(), "{event}");
    // Every log line is JSON; the start-up lines are the plain `chatwire:` ones.
    for line in server.all_lines() {
        if !line.starts_with("chatwire: ") {
            serde_json::from_str::<serde_json::Value>(&line)
                .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        }
    }
    server.stop();
}

#[tokio::test]
async fn check_config_and_token_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let config = dir.path().join("chatwire.toml");
    std::fs::write(&config, "[auth]\nissuer = \"https://id.example\"\n").expect("config");
    let (ok, out, err) = chatwire(
        &[
            "--config",
            path_str(&config),
            "--data-dir",
            path_str(&data),
            "check-config",
        ],
        &[("CHATWIRE_SESSION__HEARTBEAT_INTERVAL_MS", "5000")],
    )
    .await;
    assert!(ok, "{err}");
    let line = |key: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("{key} in:\n{out}"))
            .to_owned()
    };
    assert!(line("auth.issuer").contains(&format!("# file {}", config.display())));
    assert!(
        line("session.heartbeat_interval_ms")
            .contains("# env CHATWIRE_SESSION__HEARTBEAT_INTERVAL_MS")
    );
    assert!(line("data_dir").contains("# flag --data-dir"));
    assert!(line("auth.audience").ends_with("# default"));
    // check-config reads; it creates no data folder.
    assert!(!data.exists());

    // `token` on a folder without secrets warns first; `--verify` accepts what it printed.
    let (ok, token, err) = chatwire(
        &[
            "--config",
            path_str(&config),
            "--data-dir",
            path_str(&data),
            "token",
            "--user",
            "alice",
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    assert!(
        err.contains("warning") && err.contains("holds no jwt-secret"),
        "{err}"
    );
    let token = token.trim();
    let (ok, out, err) = chatwire(
        &[
            "--config",
            path_str(&config),
            "--data-dir",
            path_str(&data),
            "token",
            "--verify",
            token,
        ],
        &[],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.starts_with("valid: user alice"), "{out}");
    // Without the configuration the issuer differs: refused, with the reason.
    let (ok, _, err) = chatwire(
        &["--data-dir", path_str(&data), "token", "--verify", token],
        &[],
    )
    .await;
    assert!(!ok);
    assert!(err.contains("issuer"), "{err}");
    // The second mint on the same folder does not warn.
    let (ok, _, err) = chatwire(
        &["--data-dir", path_str(&data), "token", "--user", "bob"],
        &[],
    )
    .await;
    assert!(ok && !err.contains("warning"), "{err}");
    // A host name other than localhost: the error says to use an address.
    let (ok, _, err) = chatwire(&["serve", "--listen", "chat.example:8080"], &[]).await;
    assert!(!ok);
    assert!(err.contains("use an IP address"), "{err}");
}

// ---------------------------------------------------------------------------------------
// wss://

type Wss =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A TLS WebSocket client (tokio-rustls + tokio-tungstenite) trusting one certificate.
#[derive(Debug)]
struct WssTarget {
    addr: SocketAddr,
    host: String,
    roots: Arc<rustls::RootCertStore>,
}

#[async_trait]
impl TransportFactory for WssTarget {
    async fn open(&self) -> Result<Transport, TransportError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TransportError::Connect(e.to_string()))?
            .with_root_certificates(Arc::clone(&self.roots))
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(self.addr)
            .await
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let name = rustls::pki_types::ServerName::try_from(self.host.clone())
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .map_err(|e| TransportError::Handshake(e.to_string()))?;
        let url = format!("wss://{}:{}/v1/ws", self.host, self.addr.port());
        let mut request = url
            .into_client_request()
            .map_err(|e| TransportError::Connect(e.to_string()))?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            chatwire_protocol::WS_SUBPROTOCOL.parse().expect("header"),
        );
        let (ws, _) = tokio_tungstenite::client_async(request, tls)
            .await
            .map_err(|e| TransportError::Handshake(e.to_string()))?;
        let (sink, stream) = ws.split();
        Ok(Transport {
            tx: Box::new(WssTx { sink }),
            rx: Box::new(WssRx {
                stream,
                close: None,
            }),
            framing: Framing::Messages,
        })
    }
}

#[derive(Debug)]
struct WssTx {
    sink: SplitSink<Wss, Message>,
}

#[async_trait]
impl TransportTx for WssTx {
    async fn send(&mut self, data: Bytes) -> Result<(), TransportError> {
        self.sink
            .send(Message::Binary(data))
            .await
            .map_err(|e| TransportError::Io(e.to_string()))
    }

    async fn close(&mut self, code: u16, reason: &str) -> Result<(), TransportError> {
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: code.into(),
            reason: reason.to_owned().into(),
        };
        self.sink
            .send(Message::Close(Some(frame)))
            .await
            .map_err(|e| TransportError::Io(e.to_string()))
    }
}

#[derive(Debug)]
struct WssRx {
    stream: SplitStream<Wss>,
    close: Option<CloseInfo>,
}

#[async_trait]
impl TransportRx for WssRx {
    async fn recv(&mut self) -> Option<Result<Bytes, TransportError>> {
        loop {
            match self.stream.next().await? {
                Ok(Message::Binary(data)) => return Some(Ok(data)),
                Ok(Message::Close(frame)) => {
                    self.close = Some(match frame {
                        Some(f) => CloseInfo::peer(f.code.into(), f.reason.as_str()),
                        None => CloseInfo::peer(CloseInfo::NO_STATUS, ""),
                    });
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }

    fn peer_close(&self) -> Option<CloseInfo> {
        self.close.clone()
    }
}

/// CA parameters for the test chain.
fn ca_params(name: &str) -> rcgen::CertificateParams {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    params
}

#[tokio::test]
async fn wss_serves_chat_with_the_configured_pem_certificate_chain() {
    // An operator's usual files: a PEM full chain (the leaf for `localhost`, then the
    // intermediate that signed it) and a PEM PKCS#8 key. Clients trust only the root, so the
    // handshake needs the intermediate from the server.
    let dir = tempfile::tempdir().expect("temp dir");
    let root = rcgen::CertifiedIssuer::self_signed(
        ca_params("Chatwire test root"),
        rcgen::KeyPair::generate().expect("key"),
    )
    .expect("root");
    let intermediate = rcgen::CertifiedIssuer::signed_by(
        ca_params("Chatwire test intermediate"),
        rcgen::KeyPair::generate().expect("key"),
        &root,
    )
    .expect("intermediate");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
        .expect("params")
        .signed_by(&leaf_key, &intermediate)
        .expect("leaf");
    let cert_file = dir.path().join("fullchain.pem");
    let key_file = dir.path().join("privkey.pem");
    std::fs::write(&cert_file, leaf.pem() + &intermediate.pem()).expect("cert");
    std::fs::write(&key_file, leaf_key.serialize_pem()).expect("key");
    let server = TestServer::start_with(|c| {
        c.tls.enabled = true;
        c.quic.enabled = false;
        c.quic.cert_file = Some(cert_file.clone());
        c.quic.key_file = Some(key_file.clone());
    })
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root.der().clone()).expect("trust the test root");
    let wss = WssTarget {
        addr: server.addr,
        host: "localhost".into(),
        roots: Arc::new(roots),
    };
    let alice = connect_ws(&wss, &server.token("alice")).await;
    let bob = connect_ws(&wss, &server.token("bob")).await;
    let room = group(&alice, &["bob"]).await;
    subscribe_live(&bob, &room).await;
    let sent = within(alice.send(send(&room, "m-1", "over wss")))
        .await
        .expect("send");
    let events = support::server::room_events(&bob, 1).await;
    let created = events
        .iter()
        .find_map(|e| match &e.kind {
            Some(v1::room_event::Kind::MessageCreated(m)) if e.seq == sent.seq => Some(m),
            _ => None,
        })
        .expect("bob got the message over wss");
    assert_eq!(created.content.clone().unwrap_or_default().text, "over wss");

    // Plain ws:// to the TLS listener is no WebSocket.
    assert!(Client::open(&server.target()).await.is_err());
    // The command line's HTTPS client (used by `chatwire backup`) pins the same certificate.
    let (status, body) = chatwire_server::http::client::post_json(
        &format!("https://localhost:{}", server.addr.port()),
        "/admin/tokens",
        &server.admin_key(),
        "{\"user_id\":\"carol\"}",
        &server.config.data_dir,
        Some(&cert_file),
    )
    .await
    .expect("https request");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"user_id\":\"carol\""), "{body}");
    // ... and refuses another one (the data folder's development certificate).
    let refused = chatwire_server::http::client::post_json(
        &format!("https://localhost:{}", server.addr.port()),
        "/admin/tokens",
        &server.admin_key(),
        "{\"user_id\":\"carol\"}",
        &server.config.data_dir,
        None,
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// backup and restore

const HOOK_SECRET: &str = "backup-test-webhook-secret-0123456789";

/// A webhook receiver recording each event id it got and answering 200, or holding every
/// request until released and then answering 503 (`answer` false: until then the deliveries
/// stay leased in the sender's queue).
struct Hook {
    url: String,
    ids: watch::Receiver<HashSet<String>>,
    release: watch::Sender<bool>,
}

impl Hook {
    async fn start(answer: bool) -> Self {
        let (tx, ids) = watch::channel(HashSet::new());
        let tx = Arc::new(tx);
        let (release, released) = watch::channel(false);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let tx = Arc::clone(&tx);
                let mut released = released.clone();
                async move {
                    if let Some(id) = headers
                        .get("chatwire-event-id")
                        .and_then(|v| v.to_str().ok())
                    {
                        let id = id.to_owned();
                        tx.send_modify(|ids| {
                            ids.insert(id);
                        });
                    }
                    if answer {
                        return axum::http::StatusCode::OK;
                    }
                    let _ = released.wait_for(|released| *released).await;
                    axum::http::StatusCode::SERVICE_UNAVAILABLE
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, ids, release }
    }
}

/// A configuration file whose app webhook posts to `url` and waits for its answer as long as
/// allowed; a failed delivery is retried after an hour.
fn hook_config(dir: &Path, name: &str, url: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[events]\nretry_tiers_ms = [3600000]\n\n[events.app]\nurl = \"{url}\"\n\
             timeout_ms = 60000\n\
             keys = [{{ id = \"k1\", secret = \"{HOOK_SECRET}\" }}]\n"
        ),
    )
    .expect("config");
    path
}

/// The client_msg_ids of the message events of `log`, checking the seqs run 1, 2, ... .
fn message_ids(log: &[v1::RoomEvent]) -> Vec<(String, u64)> {
    let seqs: Vec<u64> = log.iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "contiguous log"
    );
    log.iter()
        .filter_map(|e| match &e.kind {
            Some(v1::room_event::Kind::MessageCreated(m)) => Some((m.client_msg_id.clone(), e.seq)),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_while_writing_then_restore_keeps_every_message_and_queued_event() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    // The first server's receiver never answers: every event stays queued (leased or due).
    let silent = Hook::start(false).await;
    let config = hook_config(dir.path(), "first.toml", &silent.url);
    let server = Serve::start(&data, Some(&config), "127.0.0.1:0", &[]).await;
    let token = dev_token(&data, "alice");
    let alice = connect_ws(&server.target(), &token).await;
    let room = group(&alice, &["bob"]).await;
    let mut before = Vec::new();
    for i in 0..30 {
        let id = format!("before-{i}");
        within(alice.send(send(&room, &id, "before the backup")))
            .await
            .expect("send");
        before.push(id);
    }
    // The acknowledgement of a later send in the room means the earlier batches' events were
    // published (a room's events go out before its next batch).
    within(alice.send(send(&room, "fence", "fence")))
        .await
        .expect("send");

    // A second client keeps writing while the backup runs.
    let writer = connect_ws(&server.target(), &token).await;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let (room, stop) = (room.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut acked = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let id = format!("during-{}", acked.len());
                within(writer.send(send(&room, &id, "during the backup")))
                    .await
                    .expect("send during the backup");
                acked.push(id);
            }
            acked
        })
    };
    let backup = dir.path().join("backup");
    let url = format!("http://{}", server.addr);
    let (ok, out, err) = chatwire(
        &[
            "--config",
            path_str(&config),
            "--data-dir",
            path_str(&data),
            "backup",
            "--to",
            path_str(&backup),
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    assert!(ok, "backup: {err}");
    assert!(out.contains("copied by a running server"), "{out}");
    stop.store(true, Ordering::SeqCst);
    let during = within(writing).await.expect("writer");

    let manifest: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(backup.join("manifest.json")).expect("manifest"),
    )
    .expect("manifest JSON");
    assert_eq!(manifest["online"], true);
    let paths: Vec<&str> = manifest["files"]
        .as_array()
        .expect("files")
        .iter()
        .filter_map(|f| f["path"].as_str())
        .collect();
    for expected in [
        "store/chatwire.redb",
        "events/app.redb",
        "jwt-secret",
        "admin-key",
    ] {
        assert!(paths.contains(&expected), "{expected} in {paths:?}");
    }
    // Without --server the command finds the running server through the data folder.
    let second = dir.path().join("second");
    let (ok, out, err) = chatwire(
        &[
            "--config",
            path_str(&config),
            "--data-dir",
            path_str(&data),
            "backup",
            "--to",
            path_str(&second),
        ],
        &[],
    )
    .await;
    assert!(ok, "backup: {err}");
    assert!(
        err.contains(&format!("asking the server at {url}")),
        "{err}"
    );
    assert!(out.contains("copied by a running server"), "{out}");
    // A backup into a folder that is not empty is refused, by the server too.
    let (ok, _, err) = chatwire(
        &[
            "--data-dir",
            path_str(&data),
            "backup",
            "--to",
            path_str(&backup),
            "--server",
            &url,
        ],
        &[],
    )
    .await;
    assert!(
        !ok && err.contains("HTTP 409") && err.contains("not empty"),
        "{err}"
    );
    let (ok, _, err) = chatwire(
        &[
            "--data-dir",
            path_str(&data),
            "backup",
            "--to",
            path_str(&backup),
        ],
        &[],
    )
    .await;
    assert!(!ok && err.contains("not empty"), "{err}");

    // Stopped, the same node is backed up from its files. (The held deliveries are answered
    // first, so the consumers stop at once.)
    silent.release.send_replace(true);
    server.stop();
    let offline = dir.path().join("offline");
    let (ok, out, err) = chatwire(
        &[
            "--config",
            path_str(&config),
            "--data-dir",
            path_str(&data),
            "backup",
            "--to",
            path_str(&offline),
        ],
        &[],
    )
    .await;
    assert!(ok, "offline backup: {err}");
    assert!(out.contains("not copied by a running server"), "{out}");

    // Restore into a new folder; a second restore there is refused.
    let restored = dir.path().join("restored");
    let (ok, _, err) = chatwire(
        &[
            "--data-dir",
            path_str(&restored),
            "restore",
            "--from",
            path_str(&backup),
        ],
        &[],
    )
    .await;
    assert!(ok, "restore: {err}");
    let (ok, _, err) = chatwire(
        &[
            "--data-dir",
            path_str(&restored),
            "restore",
            "--from",
            path_str(&offline),
        ],
        &[],
    )
    .await;
    assert!(!ok && err.contains("not empty"), "{err}");

    // The restored node: its receiver accepts, so the queued events are delivered.
    let accepting = Hook::start(true).await;
    let config = hook_config(dir.path(), "restored.toml", &accepting.url);
    let server = Serve::start(&restored, Some(&config), "127.0.0.1:0", &[]).await;
    // The token minted before the backup still works: the secrets came back.
    let alice = connect_ws(&server.target(), &token).await;
    let log = subscribe_live(&alice, &room).await;
    let messages = message_ids(&log);
    let ids: HashSet<&str> = messages.iter().map(|(id, _)| id.as_str()).collect();
    for id in before.iter().map(String::as_str).chain(["fence"]) {
        assert!(
            ids.contains(id),
            "acknowledged before the backup, lost: {id}"
        );
    }
    // What was written during the backup is there as a prefix of the acknowledged sends
    // (the copy is one commit), and nothing else is.
    let during_kept: Vec<&str> = messages
        .iter()
        .map(|(id, _)| id.as_str())
        .filter(|id| id.starts_with("during-"))
        .collect();
    let prefix: Vec<&str> = during
        .iter()
        .take(during_kept.len())
        .map(String::as_str)
        .collect();
    assert_eq!(during_kept, prefix);
    assert_eq!(ids.len(), before.len() + 1 + during_kept.len());

    // Every queued event of a message acknowledged before the backup reaches the receiver.
    let expected: HashSet<String> = messages
        .iter()
        .filter(|(id, _)| id.starts_with("before-"))
        .map(|(_, seq)| format!("{room}:{seq}:message.created"))
        .collect();
    assert_eq!(expected.len(), before.len());
    let mut ids = accepting.ids.clone();
    within(ids.wait_for(|got| expected.is_subset(got)))
        .await
        .expect("receiver running");
    server.stop();
}

// ---------------------------------------------------------------------------------------
// packaging and the README

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// `key=value` lines of one `[section]` of a unit file.
fn unit_section(unit: &str, section: &str) -> Vec<(String, String)> {
    let mut current = String::new();
    let mut found = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = name.to_owned();
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("not key=value: {line}"));
        if current == section {
            found.push((key.trim().to_owned(), value.trim().to_owned()));
        }
    }
    found
}

#[tokio::test]
async fn the_systemd_unit_and_the_sample_configuration_work_together() {
    let root = repo_root();
    let unit_path = root.join("deploy/chatwire.service");
    let unit = std::fs::read_to_string(&unit_path).expect("deploy/chatwire.service");
    let service = unit_section(&unit, "Service");
    let get = |key: &str| {
        service
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("[Service] {key}="))
    };
    assert!(
        !unit_section(&unit, "Install").is_empty(),
        "an [Install] section"
    );
    // ExecStart runs `serve` with the configuration file the unit's comments install.
    let exec = get("ExecStart");
    let argv: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(argv[0], "/usr/local/bin/chatwire");
    assert_eq!(argv.last(), Some(&"serve"));
    let config_at = argv
        .iter()
        .position(|a| *a == "--config")
        .expect("ExecStart passes --config");
    assert_eq!(argv[config_at + 1], "/etc/chatwire/chatwire.toml");
    assert!(unit.contains("deploy/chatwire.toml /etc/chatwire/chatwire.toml"));
    // The same flags, with the sample configuration, are valid for this binary.
    let sample = root.join("deploy/chatwire.toml");
    let mut args: Vec<String> = argv[1..].iter().map(|a| (*a).to_owned()).collect();
    args[config_at] = sample.display().to_string();
    *args.last_mut().expect("serve") = "check-config".into();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out, err) = chatwire(&args, &[]).await;
    assert!(ok, "{err}");
    // The data folder is the unit's StateDirectory, TLS and JSON logs are on.
    assert_eq!(get("StateDirectory"), "chatwire");
    for expected in [
        "data_dir = \"/var/lib/chatwire\"",
        "tls.enabled = true",
        "log.format = \"json\"",
    ] {
        assert!(out.contains(expected), "{expected} in:\n{out}");
    }
    assert_eq!(get("WorkingDirectory"), "/var/lib/chatwire");
    assert_eq!(get("KillSignal"), "SIGTERM", "SIGTERM drains");

    // systemd's own check, on the unit with this build's binary in ExecStart.
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    match analyze {
        Some(analyze) => {
            let dir = tempfile::tempdir().expect("temp dir");
            let copy = dir.path().join("chatwire.service");
            std::fs::write(&copy, unit.replace("/usr/local/bin/chatwire", BIN)).expect("unit");
            let output = std::process::Command::new(analyze)
                .arg("verify")
                .arg(&copy)
                .output()
                .expect("systemd-analyze runs");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(output.status.success(), "systemd-analyze verify: {stderr}");
            assert!(
                !stderr.contains("chatwire.service"),
                "systemd-analyze warns about the unit: {stderr}"
            );
        }
        None => eprintln!(
            "NOTE: systemd-analyze is not installed (scripts/test installs it): checked the \
             unit's sections, ExecStart and flags only"
        ),
    }
}

#[tokio::test]
async fn the_readme_try_it_steps_give_tokens_the_server_accepts() {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).expect("README.md");
    let steps: Vec<Vec<String>> = readme
        .lines()
        .filter(|l| l.starts_with("target/release/chatwire "))
        .map(|l| {
            l.split('#')
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .skip(1)
                .map(str::to_owned)
                .collect()
        })
        .collect();
    assert_eq!(
        steps.first().map(|s| s.join(" ")).as_deref(),
        Some("serve"),
        "the README starts the server"
    );
    assert!(
        !readme.contains("cargo run -p chatwire-server -- token"),
        "no second (debug) build for tokens"
    );
    // From a fresh working directory, as a newcomer runs them (the port is the only change).
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut server = {
        let mut child = tokio::process::Command::new(BIN);
        child
            .args(&steps[0])
            .current_dir(cwd.path())
            .env("CHATWIRE_LISTEN", "127.0.0.1:0")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        child.spawn().expect("serve starts")
    };
    let mut stderr = tokio::io::BufReader::new(server.stderr.take().expect("stderr"));
    let addr: SocketAddr = loop {
        let mut line = String::new();
        let n = within(tokio::io::AsyncBufReadExt::read_line(
            &mut stderr,
            &mut line,
        ))
        .await
        .expect("stderr");
        assert!(n > 0, "the server exited before serving");
        if let Some(rest) = line.strip_prefix("chatwire: serving on http://") {
            break rest
                .split_whitespace()
                .next()
                .and_then(|a| a.parse().ok())
                .expect("address");
        }
    };
    tokio::spawn(async move {
        let mut sink = tokio::io::sink();
        let _ = tokio::io::copy(&mut stderr, &mut sink).await;
    });
    let mut users = Vec::new();
    for step in &steps[1..] {
        let args: Vec<&str> = step.iter().map(String::as_str).collect();
        assert_eq!(args.first(), Some(&"token"), "{args:?}");
        let output = within(
            tokio::process::Command::new(BIN)
                .args(&args)
                .current_dir(cwd.path())
                .output(),
        )
        .await
        .expect("token runs");
        assert!(output.status.success(), "{args:?}");
        let token = String::from_utf8(output.stdout).expect("UTF-8");
        let user = args[args.iter().position(|a| *a == "--user").expect("--user") + 1];
        let client = within(Client::open(&chatwire_conformance::client::WsTarget::new(
            addr,
        )))
        .await
        .expect("websocket opens");
        let connected = within(client.connect(token.trim()))
            .await
            .expect("the README's token is accepted");
        assert_eq!(connected.user_id, user);
        users.push(user.to_owned());
    }
    assert_eq!(users, vec!["alice", "bob"]);
    server.kill().await.expect("stopped");
}
