//! A small user-space TCP proxy on loopback for network faults (issue 17): it sits between two
//! parties (a node and a service, or a client and a node), listens on a free port and forwards
//! to one upstream address. A test switches it between
//!
//! - open: bytes flow both ways (at a bounded rate toward the client when a rate is set);
//! - partitioned: nothing is read or forwarded either way and new connections are held without
//!   an upstream, so both sides' writes pile up and their heartbeats go unanswered, as when a
//!   link drops packets; healing lets everything flow again;
//! - reset: every connection is closed at once.
//!
//! It needs no privileges and touches nothing outside the process: no namespace, qdisc or
//! firewall rule.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the proxy does with traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Forwarding.
    Open,
    /// Nothing moves; connections stay open.
    Partitioned,
    /// Every connection is closed; new ones are closed as they come.
    Reset,
}

/// A running proxy; stops (and closes its connections) when dropped.
pub struct TcpProxy {
    /// Where the proxy listens (connect here instead of the upstream).
    pub addr: SocketAddr,
    mode: watch::Sender<Mode>,
    rate: Arc<AtomicU64>,
    accepted: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

/// Bytes per second toward the downstream side (upstream ─▶ client), `None` for unbounded.
pub type Rate = Option<u64>;

/// The rate as the pumps read it: 0 is unbounded.
fn encode_rate(rate: Rate) -> u64 {
    rate.unwrap_or(0)
}

impl TcpProxy {
    /// Listens on `127.0.0.1:0` and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr, downstream_rate: Rate) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local addr");
        let (mode, watch_mode) = watch::channel(Mode::Open);
        let (accepted_tx, accepted) = watch::channel(0usize);
        let rate = Arc::new(AtomicU64::new(encode_rate(downstream_rate)));
        let pump_rate = Arc::clone(&rate);
        let task = tokio::spawn(async move {
            let accepted_tx = Arc::new(accepted_tx);
            while let Ok((downstream, _)) = listener.accept().await {
                accepted_tx.send_modify(|n| *n += 1);
                tokio::spawn(relay(
                    downstream,
                    upstream,
                    watch_mode.clone(),
                    Arc::clone(&pump_rate),
                ));
            }
        });
        Self {
            addr,
            mode,
            rate,
            accepted,
            task,
        }
    }

    /// Changes the downstream rate of every connection, current and new.
    pub fn set_rate(&self, downstream_rate: Rate) {
        self.rate
            .store(encode_rate(downstream_rate), Ordering::SeqCst);
    }

    /// Stops all traffic (see [`Mode::Partitioned`]).
    pub fn partition(&self) {
        self.mode.send_replace(Mode::Partitioned);
    }

    /// Lets traffic flow again.
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Open);
    }

    /// Closes every connection and every new one until [`TcpProxy::heal`].
    pub fn reset(&self) {
        self.mode.send_replace(Mode::Reset);
    }

    /// How many connections the proxy has accepted so far.
    pub fn accepted(&self) -> usize {
        *self.accepted.borrow()
    }

    /// `url` with its `host:port` replaced by the proxy's (`scheme://user@host:port/path`).
    pub fn rewrite_url(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let userinfo = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}{}{path}", self.addr)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.mode.send_replace(Mode::Reset);
        self.task.abort();
    }
}

/// The `host:port` of a URL such as `redis://127.0.0.1:6379` or
/// `amqp://guest:guest@127.0.0.1:5672/%2f`.
pub fn url_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = &rest[..rest.find('/').unwrap_or(rest.len())];
    let host_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    host_port.parse().expect("host:port of a loopback URL")
}

/// Waits until the mode is no longer partitioned; returns it.
async fn until_not_partitioned(mode: &mut watch::Receiver<Mode>) -> Mode {
    match mode.wait_for(|m| *m != Mode::Partitioned).await {
        Ok(m) => *m,
        Err(_) => Mode::Reset,
    }
}

async fn relay(
    downstream: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Mode>,
    downstream_rate: Arc<AtomicU64>,
) {
    // A connection made during a partition is held: no upstream until it heals.
    if until_not_partitioned(&mut mode).await == Mode::Reset {
        return;
    }
    // A paced link holds little in flight: a small receive buffer toward the upstream, so the
    // sender's data waits on its side (where its own bounded queue sees it) rather than here.
    let socket = match tokio::net::TcpSocket::new_v4() {
        Ok(socket) => socket,
        Err(_) => return,
    };
    if downstream_rate.load(Ordering::SeqCst) > 0 {
        let _ = socket.set_recv_buffer_size(16 * 1024);
    }
    let Ok(upstream) = socket.connect(upstream).await else {
        return;
    };
    let _ = downstream.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (down_read, down_write) = downstream.into_split();
    let (up_read, up_write) = upstream.into_split();
    let to_upstream = pump(
        down_read,
        up_write,
        mode.clone(),
        Arc::new(AtomicU64::new(0)),
    );
    let to_downstream = pump(up_read, down_write, mode, downstream_rate);
    // Either direction ending (EOF, error, reset) ends the connection.
    tokio::select! {
        () = to_upstream => {}
        () = to_downstream => {}
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
    rate: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // With a rate, move at most a tenth of a second's worth per step, then wait out its time.
        let rate = Some(rate.load(Ordering::SeqCst)).filter(|r| *r > 0);
        let chunk = rate.map_or(buf.len(), |r| {
            usize::try_from(r / 10)
                .unwrap_or(1024)
                .clamp(512, buf.len())
        });
        let current = *mode.borrow_and_update();
        match current {
            Mode::Reset => return,
            Mode::Partitioned => {
                if until_not_partitioned(&mut mode).await == Mode::Reset {
                    return;
                }
                continue;
            }
            Mode::Open => {}
        }
        let n = tokio::select! {
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            read = from.read(&mut buf[..chunk]) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        if let Some(rate) = rate {
            let micros = u64::try_from(n)
                .unwrap_or(u64::MAX)
                .saturating_mul(1_000_000)
                / rate;
            // The link's own pace, not a synchronisation: a 1 mbit link takes this long.
            tokio::time::sleep(Duration::from_micros(micros)).await;
        }
    }
}

/// A UDP relay on loopback between one client and a server that drops a share of the
/// datagrams in each direction (a pseudo-random but reproducible choice), for QUIC under loss.
pub struct LossyUdpProxy {
    /// Where the client sends (instead of the server).
    pub addr: SocketAddr,
    dropped: Arc<AtomicU64>,
    forwarded: Arc<AtomicU64>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl LossyUdpProxy {
    /// Relays to `server`, dropping `loss_percent` of the datagrams each way.
    pub async fn start(server: SocketAddr, loss_percent: u64) -> Self {
        let front = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind udp port 0"),
        );
        let back = Arc::new(
            tokio::net::UdpSocket::bind("127.0.0.1:0")
                .await
                .expect("bind udp port 0"),
        );
        back.connect(server).await.expect("udp connect");
        let addr = front.local_addr().expect("local addr");
        let (dropped, forwarded) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (client_tx, client_rx) = watch::channel(None::<SocketAddr>);
        let counters = (Arc::clone(&dropped), Arc::clone(&forwarded));
        let to_server = {
            let (front, back, counters) = (Arc::clone(&front), Arc::clone(&back), counters.clone());
            tokio::spawn(async move {
                let mut lose = Loss::new(0x5eed_0001, loss_percent);
                let mut buf = vec![0u8; 65_536];
                while let Ok((n, from)) = front.recv_from(&mut buf).await {
                    client_tx.send_replace(Some(from));
                    if lose.next() {
                        counters.0.fetch_add(1, Ordering::Relaxed);
                    } else {
                        counters.1.fetch_add(1, Ordering::Relaxed);
                        let _ = back.send(&buf[..n]).await;
                    }
                }
            })
        };
        let to_client = tokio::spawn(async move {
            let mut lose = Loss::new(0x5eed_0002, loss_percent);
            let mut buf = vec![0u8; 65_536];
            while let Ok(n) = back.recv(&mut buf).await {
                let Some(client) = *client_rx.borrow() else {
                    continue;
                };
                if lose.next() {
                    counters.0.fetch_add(1, Ordering::Relaxed);
                } else {
                    counters.1.fetch_add(1, Ordering::Relaxed);
                    let _ = front.send_to(&buf[..n], client).await;
                }
            }
        });
        Self {
            addr,
            dropped,
            forwarded,
            tasks: [to_server, to_client],
        }
    }

    /// Datagrams dropped so far (both ways).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Datagrams forwarded so far (both ways).
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

impl Drop for LossyUdpProxy {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// A reproducible coin (xorshift64) that comes up "drop" `percent` times in a hundred.
struct Loss {
    state: u64,
    percent: u64,
}

impl Loss {
    fn new(seed: u64, percent: u64) -> Self {
        Self {
            state: seed,
            percent,
        }
    }

    fn next(&mut self) -> bool {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % 100 < self.percent
    }
}
