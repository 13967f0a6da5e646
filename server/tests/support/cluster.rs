//! Several real `chatwire` processes in distributed mode (ScyllaDB store, RabbitMQ pipeline and
//! events, Redis fan-out) sharing one set of services, each cluster isolated by its own keyspace,
//! queue prefix and key prefix; plus private service instances for the tests that kill them, and
//! the bookkeeping that checks a room's log after a fault (lost, duplicated, out-of-order and
//! skipped-seq counts).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chatwire_conformance::client::{Client, WsTarget};
use chatwire_protocol::v1;
use tempfile::TempDir;
use tokio::sync::Mutex;

use super::server::{ServerProcess, dev_token, send, within};

/// Where the backing services listen.
#[derive(Debug, Clone)]
pub struct Services {
    /// `redis://127.0.0.1:port`.
    pub redis_url: String,
    /// `amqp://guest:guest@127.0.0.1:port/%2f`.
    pub amqp_url: String,
    /// `127.0.0.1:port` (comma separated when several).
    pub cql_nodes: String,
}

impl Services {
    /// The shared services of the test command (`scripts/services start`); panics (fails the
    /// test) when one is missing.
    pub fn shared() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: run the tests through scripts/test, or load .services/env"
                )
            })
        };
        Self {
            redis_url: var("CHATWIRE_TEST_REDIS_URL"),
            amqp_url: var("CHATWIRE_TEST_AMQP_URL"),
            cql_nodes: var("CHATWIRE_TEST_CQL_NODES"),
        }
    }
}

/// A private instance of some services, started by `scripts/services` in its own folder, for a
/// test that kills, stops or restarts them. Stopped when dropped.
pub struct PrivateServices {
    dir: TempDir,
    which: String,
    env: HashMap<String, String>,
}

fn services_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/services")
}

impl PrivateServices {
    /// Starts `which` (`redis`, `rabbitmq`, `cassandra`, comma separated) on free ports.
    pub fn start(which: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("chatwire-svc-")
            .tempdir()
            .expect("temp dir");
        let mut this = Self {
            dir,
            which: which.to_owned(),
            env: HashMap::new(),
        };
        this.run("start", false);
        this.read_env();
        this
    }

    fn run(&self, command: &str, reuse_ports: bool) {
        let output = std::process::Command::new(services_script())
            .arg(command)
            .env("CHATWIRE_SERVICES_DIR", self.dir.path())
            .env("CHATWIRE_SERVICES", &self.which)
            // A private Cassandra must keep what it acknowledged through a SIGKILL.
            .env("CHATWIRE_CASSANDRA_COMMITLOG", "group")
            .env(
                "CHATWIRE_SERVICES_REUSE_PORTS",
                if reuse_ports { "1" } else { "0" },
            )
            .output()
            .expect("scripts/services runs");
        assert!(
            output.status.success(),
            "scripts/services {command} {}: {}",
            self.which,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn read_env(&mut self) {
        let text = std::fs::read_to_string(self.dir.path().join("env")).expect("env file");
        self.env = text
            .lines()
            .filter_map(|line| line.strip_prefix("export ")?.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
    }

    /// A variable of the instance's env file (`CHATWIRE_TEST_REDIS_URL`, ...).
    pub fn var(&self, name: &str) -> String {
        self.env
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not in the private services' env"))
    }

    /// Stops the instance (clean shutdown).
    pub fn stop(&self) {
        self.run("stop", false);
    }

    /// Starts the instance again on the same ports, keeping its data.
    pub fn restart(&mut self) {
        self.run("start", true);
        self.read_env();
    }

    /// SIGKILLs one service of the instance (`redis`, `rabbitmq` or `cassandra`) by its pid file.
    pub fn kill(&self, service: &str) {
        self.signal(service, "KILL");
    }

    /// Sends a signal by name (`KILL`, `STOP`, `CONT`) to one service of the instance
    /// (`redis`, `rabbitmq` or `cassandra`), found by its pid file.
    pub fn signal(&self, service: &str, signal: &str) {
        assert!(self.try_signal(service, signal), "kill -{signal} {service}");
    }

    fn try_signal(&self, service: &str, signal: &str) -> bool {
        let pid_file = match service {
            "redis" => "redis/redis.pid",
            "rabbitmq" => "rabbitmq/rabbitmq.pid",
            "cassandra" => "cassandra/cassandra.pid",
            other => panic!("unknown service {other}"),
        };
        let Ok(pid) = std::fs::read_to_string(self.dir.path().join(pid_file)) else {
            return false;
        };
        std::process::Command::new("kill")
            .args([format!("-{signal}").as_str(), pid.trim()])
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// Resumes a service stopped with SIGSTOP when dropped, so a failing assertion between the
/// stop and the resume never leaves a frozen process behind.
pub struct Frozen<'a> {
    services: &'a PrivateServices,
    service: &'static str,
    thawed: bool,
}

impl<'a> Frozen<'a> {
    /// SIGSTOPs `service` of `services`.
    pub fn stop(services: &'a PrivateServices, service: &'static str) -> Self {
        services.signal(service, "STOP");
        Self {
            services,
            service,
            thawed: false,
        }
    }

    /// SIGCONTs it.
    pub fn resume(mut self) {
        self.services.signal(self.service, "CONT");
        self.thawed = true;
    }
}

impl Drop for Frozen<'_> {
    fn drop(&mut self) {
        if !self.thawed {
            self.services.try_signal(self.service, "CONT");
        }
    }
}

impl Drop for PrivateServices {
    fn drop(&mut self) {
        let _ = std::process::Command::new(services_script())
            .arg("stop")
            .env("CHATWIRE_SERVICES_DIR", self.dir.path())
            .env("CHATWIRE_SERVICES", &self.which)
            .output();
    }
}

/// One cluster: a keyspace, a queue prefix and a key prefix of its own on `services`, nodes in
/// temporary data folders sharing one JWT secret.
pub struct Cluster {
    /// The services it runs on.
    pub services: Services,
    name: String,
    seed: TempDir,
    nodes: TempDir,
    next: usize,
    config_file: Option<PathBuf>,
    extra_env: Vec<(String, String)>,
}

impl Cluster {
    /// A new, empty cluster on `services`, migrated.
    pub fn new(services: Services) -> Self {
        let name = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
        let seed = tempfile::tempdir().expect("temp dir");
        chatwire_server::devdefaults::load_or_create(seed.path()).expect("secrets");
        let cluster = Self {
            services,
            name,
            seed,
            nodes: tempfile::tempdir().expect("temp dir"),
            next: 0,
            config_file: None,
            extra_env: Vec::new(),
        };
        cluster.migrate();
        cluster
    }

    /// Gives every node started from now on this setting (after the cluster's own, so it can
    /// override them, such as the lifted rate limits of [`ServerProcess::spawn_with`]).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.extra_env.push((key.to_owned(), value.to_owned()));
    }

    /// The prefix of the cluster's RabbitMQ queues (`{prefix}shard.{n}`, `{prefix}shard.{n}.dlq`).
    pub fn queue_prefix(&self) -> String {
        format!("t{}.", self.name)
    }

    /// The HS256 key every node accepts, for clients that mint their own tokens.
    pub fn jwt_secret(&self) -> Vec<u8> {
        chatwire_server::devdefaults::load_or_create(self.seed.path())
            .expect("secrets")
            .jwt_secret
    }

    /// Gives every node started from now on this TOML configuration file (sections the
    /// environment cannot express, such as webhook keys).
    pub fn with_config(&mut self, toml: &str) {
        let path = self.seed.path().join("chatwire.toml");
        std::fs::write(&path, toml).expect("config file");
        self.config_file = Some(path);
    }

    /// The configuration every node of the cluster gets, as environment variables.
    pub fn envs(&self) -> Vec<(String, String)> {
        let name = &self.name;
        [
            ("CHATWIRE_STORAGE__BACKEND", "scylla".to_owned()),
            (
                "CHATWIRE_STORAGE__CQL__NODES",
                self.services.cql_nodes.clone(),
            ),
            ("CHATWIRE_STORAGE__CQL__KEYSPACE", format!("cluster_{name}")),
            ("CHATWIRE_CLUSTER__AMQP_URL", self.services.amqp_url.clone()),
            ("CHATWIRE_CLUSTER__QUEUE_PREFIX", format!("t{name}.")),
            // Short intervals so takeovers happen within a test; nothing asserts durations.
            ("CHATWIRE_CLUSTER__HEARTBEAT_INTERVAL_MS", "250".to_owned()),
            ("CHATWIRE_CLUSTER__NODE_TTL_MS", "1500".to_owned()),
            ("CHATWIRE_CLUSTER__REQUEST_TIMEOUT_MS", "4000".to_owned()),
            ("CHATWIRE_REDIS__URL", self.services.redis_url.clone()),
            ("CHATWIRE_REDIS__KEY_PREFIX", format!("t{name}:")),
            ("CHATWIRE_QUIC__ENABLED", "false".to_owned()),
            ("RUST_LOG", "warn,chatwire_server=info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .chain(
            self.config_file
                .iter()
                .map(|path| ("CHATWIRE_CONFIG".to_owned(), path.display().to_string())),
        )
        .chain(self.extra_env.iter().cloned())
        .collect()
    }

    /// Runs `chatwire migrate` with the cluster's configuration.
    pub fn migrate(&self) {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_chatwire"))
            .arg("--data-dir")
            .arg(self.seed.path())
            .arg("migrate")
            .envs(self.envs())
            .output()
            .expect("chatwire migrate runs");
        assert!(
            output.status.success(),
            "chatwire migrate: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts one more node in a data folder of its own (with the cluster's secrets).
    pub async fn node(&mut self) -> ServerProcess {
        self.next += 1;
        let dir = self.nodes.path().join(format!("node{}", self.next));
        self.node_in(&dir).await
    }

    /// Starts one more node with settings of its own on top of the cluster's (such as service
    /// URLs through a fault proxy).
    pub async fn node_with(&mut self, overrides: &[(&str, String)]) -> ServerProcess {
        self.next += 1;
        let dir = self.nodes.path().join(format!("node{}", self.next));
        let mut envs = self.envs();
        envs.extend(overrides.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        self.node_in_with(&dir, &envs).await
    }

    /// Starts a node on `dir` (again, after a kill: same folder).
    pub async fn node_in(&self, dir: &Path) -> ServerProcess {
        self.node_in_with(dir, &self.envs()).await
    }

    async fn node_in_with(&self, dir: &Path, envs: &[(String, String)]) -> ServerProcess {
        std::fs::create_dir_all(dir).expect("node dir");
        for file in [
            chatwire_server::devdefaults::JWT_SECRET_FILE,
            chatwire_server::devdefaults::ADMIN_KEY_FILE,
            chatwire_server::devdefaults::TLS_CERT_FILE,
            chatwire_server::devdefaults::TLS_KEY_FILE,
        ] {
            let to = dir.join(file);
            if !to.exists() {
                std::fs::copy(self.seed.path().join(file), to).expect("copy secret");
            }
        }
        ServerProcess::spawn_with(dir, envs).await
    }

    /// The data folder of node `n` (1-based, in start order).
    pub fn node_dir(&self, n: usize) -> PathBuf {
        self.nodes.path().join(format!("node{n}"))
    }

    /// A token every node accepts.
    pub fn token(&self, user: &str) -> String {
        dev_token(self.seed.path(), user)
    }

    /// A connected client of `user` on `node`.
    pub async fn client(&self, node: &ServerProcess, user: &str) -> Client {
        connect(node.addr, &self.token(user)).await
    }
}

/// Opens a WebSocket to `addr` and connects with `token`.
pub async fn connect(addr: std::net::SocketAddr, token: &str) -> Client {
    let client = Client::open(&WsTarget::new(addr))
        .await
        .expect("websocket opens");
    within(client.connect(token)).await.expect("connect");
    client
}

/// What a sender saw: every message it got an answer for, by client_msg_id, with its seq.
pub type Acked = Vec<(String, u64)>;

/// Sends `count` messages `{prefix}-{i}` to `room` as `user`, one after another; on any failure
/// (a dropped connection, UNAVAILABLE, a timeout) it reconnects to the next address of `nodes`
/// and retries the same client_msg_id until it is acknowledged. `nodes` is shared, so a test can
/// swap the addresses of dead nodes out. Each acknowledgement bumps `progress[slot]`.
pub async fn send_through_faults(
    nodes: Arc<Mutex<Vec<std::net::SocketAddr>>>,
    token: String,
    room: String,
    prefix: String,
    count: usize,
    progress: (Arc<tokio::sync::watch::Sender<Vec<usize>>>, usize),
) -> Acked {
    let mut acked = Vec::new();
    let mut turn = 0usize;
    let mut client: Option<Client> = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    for i in 0..count {
        let id = format!("{prefix}-{i}");
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{id}: no node acknowledged it in time"
            );
            if client.is_none() {
                let addr = {
                    let nodes = nodes.lock().await;
                    nodes[turn % nodes.len()]
                };
                let attempt = async {
                    let c = Client::open(&WsTarget::new(addr)).await.ok()?;
                    c.connect(&token).await.ok()?;
                    Some(c)
                };
                client = tokio::time::timeout(Duration::from_secs(5), attempt)
                    .await
                    .ok()
                    .flatten();
                if client.is_none() {
                    turn += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
            }
            let Some(c) = client.as_ref() else { continue };
            let reply =
                tokio::time::timeout(Duration::from_secs(10), c.send(send(&room, &id, &id))).await;
            match reply {
                Ok(Ok(reply)) => {
                    acked.push((id.clone(), reply.seq));
                    progress.0.send_modify(|counts| counts[progress.1] += 1);
                    break;
                }
                Ok(Err(error)) => {
                    // Retryable answers keep the connection; a lost connection does not.
                    if error.server_code().is_none() {
                        client = None;
                        turn += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(_) => {
                    client = None;
                    turn += 1;
                }
            }
        }
    }
    acked
}

/// What a room's log looks like against what senders were told.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct LogCheck {
    /// Acknowledged messages missing from the log (or logged at another seq).
    pub lost: usize,
    /// Messages logged more than once.
    pub duplicated: usize,
    /// Log events out of seq order.
    pub out_of_order: usize,
    /// Seqs missing between 1 and the head.
    pub skipped_seqs: usize,
}

/// Compares the whole log of a room (`log`, as read through a subscription from seq 0) with the
/// acknowledgements senders got.
pub fn check_log(log: &[v1::RoomEvent], acked: &[(String, u64)]) -> LogCheck {
    let mut check = LogCheck::default();
    let mut expected = 1u64;
    for event in log {
        if event.seq < expected {
            check.out_of_order += 1;
        } else {
            check.skipped_seqs += usize::try_from(event.seq - expected).unwrap_or(usize::MAX);
            expected = event.seq + 1;
        }
    }
    let mut logged: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for event in log {
        if let Some(v1::room_event::Kind::MessageCreated(m)) = &event.kind {
            logged.entry(&m.client_msg_id).or_default().push(event.seq);
        }
    }
    check.duplicated = logged.values().filter(|seqs| seqs.len() > 1).count();
    check.lost = acked
        .iter()
        .filter(|(id, seq)| logged.get(id.as_str()).is_none_or(|s| !s.contains(seq)))
        .count();
    check
}

/// Checks a stream of live events a client received for a room: strictly seq+1 each time from
/// the first; returns (duplicates or reordered, gaps).
pub fn check_stream(seqs: &[u64]) -> (usize, usize) {
    let (mut bad_order, mut gaps) = (0, 0);
    for pair in seqs.windows(2) {
        if pair[1] <= pair[0] {
            bad_order += 1;
        } else if pair[1] != pair[0] + 1 {
            gaps += 1;
        }
    }
    (bad_order, gaps)
}

/// A webhook receiver that answers 200 and records the `Chatwire-Event-Id` of every request.
pub struct EventSink {
    addr: std::net::SocketAddr,
    ids: tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>,
}

impl EventSink {
    /// Listens on a free port.
    pub async fn start() -> Self {
        let (tx, ids) = tokio::sync::watch::channel(std::collections::BTreeSet::new());
        let tx = Arc::new(tx);
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: axum::http::HeaderMap| {
                let tx = Arc::clone(&tx);
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
                    axum::http::StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { addr, ids }
    }

    /// The URL to configure as a webhook.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// The `[events.app]` section that sends every room event here.
    pub fn app_webhook_toml(&self) -> String {
        format!(
            "[events.app]\nurl = \"{}\"\nkeys = [{{ id = \"k1\", secret = \"{}\" }}]\n",
            self.url(),
            "cluster-test-webhook-secret-0123456789"
        )
    }

    /// Waits until every id of `expected` was delivered (at least once); returns how many
    /// were delivered in all.
    pub async fn wait_for_all(&self, expected: &std::collections::BTreeSet<String>) -> usize {
        let mut ids = self.ids.clone();
        tokio::time::timeout(
            Duration::from_secs(120),
            ids.wait_for(|ids| expected.is_subset(ids)),
        )
        .await
        .unwrap_or_else(|_| {
            let got = self.ids.borrow();
            let missing: Vec<_> = expected.difference(&got).take(10).collect();
            panic!("downstream events missing: {missing:?}")
        })
        .expect("sink alive")
        .len()
    }
}

/// Collects `client`'s live room events for `room` until it has seen `head`; returns their seqs.
pub async fn live_until(client: &Client, room: &str, mut seqs: Vec<u64>, head: u64) -> Vec<u64> {
    while seqs.last().copied().unwrap_or(0) < head {
        let event = within(client.next_event()).await.expect("event");
        if let Some(v1::event::Kind::Room(e)) = event.kind
            && e.room_id == room
        {
            seqs.push(e.seq);
        }
    }
    seqs
}

/// Drops a keyspace from a thread of its own (callers are `Drop` impls inside a runtime), so a
/// long-lived test Cassandra does not collect the schemas of every run; a failure is printed,
/// never fatal.
pub fn drop_keyspace(nodes: Vec<String>, keyspace: String) {
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let session = tokio::time::timeout(
                Duration::from_secs(20),
                scylla::client::session_builder::SessionBuilder::new()
                    .known_nodes(nodes)
                    .build(),
            )
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
            tokio::time::timeout(
                Duration::from_secs(60),
                session.query_unpaged(format!("DROP KEYSPACE IF EXISTS {keyspace}"), &[]),
            )
            .await
            .map_err(|_| "drop timed out".to_owned())?
            .map(drop)
            .map_err(|e| e.to_string())
        })
    })
    .join();
    if !matches!(dropped, Ok(Ok(()))) {
        eprintln!("could not drop a test keyspace: {dropped:?}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let nodes = self
            .services
            .cql_nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_owned)
            .collect();
        drop_keyspace(nodes, format!("cluster_{}", self.name));
    }
}
