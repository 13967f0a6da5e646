//! Metrics: every family the server exports, with its help text, in [`FAMILIES`] (the one
//! list; docs/operations.md's metrics table is generated from it and a test fails when they
//! differ), recorded through the `metrics` facade and rendered by the Prometheus exporter from
//! the `/metrics` route (no listener of its own).
//!
//! ```text
//!  hot paths ──pre-registered handles (atomics)──▶ recorder ──render──▶ GET /metrics
//!  scrape    ──state gauges + /proc/self──────────▶    ┘
//! ```
//!
//! The recorder is process-wide and installed by the first metric touched. Hot paths (a room
//! batch fanned out, a delivery taken from a session's queue) use handles registered once and
//! count per batch, never per recipient; label values are `&'static str`, so nothing is
//! allocated for a label. A family with variable labels (`kind`, `code`, `op`) appears once
//! one of its series has a sample; every other family is registered at zero when the recorder
//! is installed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use chatwire_protocol::v1;
use metrics::{Counter, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// A family's Prometheus type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets (`_bucket`, `_sum`, `_count`).
    Histogram,
}

impl Kind {
    /// The Prometheus `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// Its name, with its unit and `_total` for counters.
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Its labels, comma separated (empty: none).
    pub labels: &'static str,
    /// Its help text (one sentence).
    pub help: &'static str,
}

const fn family(
    name: &'static str,
    kind: Kind,
    labels: &'static str,
    help: &'static str,
) -> Family {
    Family {
        name,
        kind,
        labels,
        help,
    }
}

use Kind::{Counter as C, Gauge as G, Histogram as H};

/// Every family `/metrics` exports, in the order of docs/operations.md's table.
pub const FAMILIES: &[Family] = &[
    family(
        "chatwire_build_info",
        G,
        "version",
        "Always 1; the server's version as a label.",
    ),
    family(
        "chatwire_uptime_seconds",
        G,
        "",
        "Seconds since the server started.",
    ),
    family(
        "chatwire_draining",
        G,
        "",
        "1 while the server drains, else 0.",
    ),
    family("chatwire_sessions", G, "", "Live sessions on this node."),
    family(
        "chatwire_connections_opened_total",
        C,
        "transport",
        "Connections that reached the session layer, by transport (websocket, quic).",
    ),
    family(
        "chatwire_connections_closed_total",
        C,
        "transport,code",
        "Connections ended, by transport and close code (PEER_GONE when the peer went away without one).",
    ),
    family(
        "chatwire_requests_total",
        C,
        "kind,outcome",
        "Session requests answered, by request kind and outcome (OK or the error code).",
    ),
    family(
        "chatwire_request_duration_seconds",
        H,
        "kind",
        "Time from the start of a request's execution to its reply, by request kind.",
    ),
    family(
        "chatwire_send_ack_seconds",
        H,
        "",
        "Time from the start of a Send's execution to its acknowledgement (durable in the room log).",
    ),
    family(
        "chatwire_rooms_active",
        G,
        "",
        "Rooms whose state this node's room writers hold (written or read recently).",
    ),
    family(
        "chatwire_deliveries_total",
        C,
        "",
        "Room event batches handed to live sessions on this node (one per session reached).",
    ),
    family(
        "chatwire_fanout_batch_recipients",
        H,
        "",
        "Sessions on this node reached by one room event batch.",
    ),
    family(
        "chatwire_session_queue_depth",
        H,
        "",
        "Deliveries waiting in a session's queue, sampled every 16th delivery a session takes.",
    ),
    family(
        "chatwire_slow_consumer_closes_total",
        C,
        "",
        "Sessions closed with SLOW_CONSUMER because their delivery queue overflowed.",
    ),
    family(
        "chatwire_rate_limited_total",
        C,
        "bucket",
        "Refusals by the rate limiter, by bucket (requests, send, typing, connect, room-send, search, contact-requests).",
    ),
    family(
        "chatwire_contact_cache_total",
        C,
        "result",
        "Distributed mode: reads of the Redis contact cache (hit, miss, error; a miss or an error reads the store).",
    ),
    family(
        "chatwire_store_operation_seconds",
        H,
        "backend,op",
        "Store operation latency, by backend (embedded, scylla) and operation.",
    ),
    family(
        "chatwire_store_errors_total",
        C,
        "backend,op",
        "Store operations that failed, by backend and operation.",
    ),
    family(
        "chatwire_pipeline_confirm_seconds",
        H,
        "",
        "Cluster pipeline: time from publishing a command to RabbitMQ to its publisher confirm.",
    ),
    family(
        "chatwire_pipeline_publish_errors_total",
        C,
        "",
        "Cluster pipeline: commands whose publish failed or was refused by the broker.",
    ),
    family(
        "chatwire_pipeline_circuit_state",
        G,
        "",
        "Cluster pipeline circuit breaker: 0 closed, 1 half-open, 2 open.",
    ),
    family(
        "chatwire_pipeline_shards_owned",
        G,
        "",
        "Cluster pipeline: shards whose room writers run on this node.",
    ),
    family(
        "chatwire_events_queue_depth",
        G,
        "consumer,lane",
        "Downstream events waiting or in delivery, per consumer and lane.",
    ),
    family(
        "chatwire_events_dead_letters",
        G,
        "consumer",
        "Downstream events in the dead-letter queue, per consumer.",
    ),
    family(
        "chatwire_events_delivered_total",
        C,
        "lane",
        "Downstream events delivered and acknowledged, by lane.",
    ),
    family(
        "chatwire_events_retries_total",
        C,
        "lane",
        "Downstream deliveries that failed and went back for a retry or to the dead letters, by lane.",
    ),
    family(
        "chatwire_fanout_redis_lag_seconds",
        H,
        "",
        "Redis fan-out: age of a room batch from another node when it arrives here.",
    ),
    family(
        "chatwire_fanout_redis_gap_repairs_total",
        C,
        "",
        "Redis fan-out: gap repairs started (events missed on pub/sub, read back).",
    ),
    family(
        "chatwire_admin_requests_total",
        C,
        "",
        "Admin API requests, authenticated or not.",
    ),
    family(
        "process_cpu_seconds_total",
        C,
        "",
        "User and system CPU time of the server process.",
    ),
    family(
        "process_resident_memory_bytes",
        G,
        "",
        "Resident memory of the server process.",
    ),
    family(
        "process_virtual_memory_bytes",
        G,
        "",
        "Virtual memory of the server process.",
    ),
    family(
        "process_open_fds",
        G,
        "",
        "Open file descriptors (sockets included).",
    ),
    family(
        "process_max_fds",
        G,
        "",
        "The process's open file descriptor limit.",
    ),
    family(
        "process_start_time_seconds",
        G,
        "",
        "Start time of the process, seconds since the Unix epoch.",
    ),
];

/// Histogram buckets of latencies, in seconds.
const SECONDS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Histogram buckets of counts (recipients, queue depths).
const COUNTS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 5000.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The exporter's handle; installs the recorder (and registers every fixed family) on first
/// use. Another recorder already installed (a test harness) leaves this one rendering nothing.
fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("chatwire_fanout_batch_recipients".into()),
                    COUNTS,
                )
            })
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("chatwire_session_queue_depth".into()),
                    COUNTS,
                )
            })
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was already installed; /metrics stays empty");
        }
        describe();
        handle
    })
}

/// Declares every family's help text and unit, and registers the families without variable
/// labels so that they are present from the first scrape.
fn describe() {
    for f in FAMILIES {
        let unit = if f.name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else if f.name.ends_with("_bytes") {
            Some(Unit::Bytes)
        } else {
            None
        };
        match (f.kind, unit) {
            (Kind::Counter, _) => metrics::describe_counter!(f.name, f.help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(f.name, unit, f.help),
            (Kind::Gauge, None) => metrics::describe_gauge!(f.name, f.help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(f.name, unit, f.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(f.name, f.help),
        }
    }
    for transport in ["websocket", "quic"] {
        metrics::counter!("chatwire_connections_opened_total", "transport" => transport)
            .absolute(0);
    }
    for bucket in BUCKETS {
        metrics::counter!("chatwire_rate_limited_total", "bucket" => bucket).absolute(0);
    }
    for result in ["hit", "miss", "error"] {
        metrics::counter!("chatwire_contact_cache_total", "result" => result).absolute(0);
    }
    for lane in ["high", "medium", "low"] {
        metrics::counter!("chatwire_events_delivered_total", "lane" => lane).absolute(0);
        metrics::counter!("chatwire_events_retries_total", "lane" => lane).absolute(0);
    }
    metrics::counter!("chatwire_pipeline_publish_errors_total").absolute(0);
    metrics::counter!("chatwire_fanout_redis_gap_repairs_total").absolute(0);
    metrics::gauge!("chatwire_pipeline_circuit_state").set(0.0);
    metrics::gauge!("chatwire_pipeline_shards_owned").set(0.0);
}

/// Rate-limit buckets with a series of their own.
const BUCKETS: [&str; 7] = [
    "requests",
    "send",
    "typing",
    "connect",
    "room-send",
    "search",
    "contact-requests",
];

/// A read of the Redis contact cache (distributed mode): `hit`, `miss` or `error`.
pub fn contact_cache(result: &'static str) {
    metrics::counter!("chatwire_contact_cache_total", "result" => result).increment(1);
}

/// Handles of the hot paths, registered once.
struct Hot {
    deliveries: Counter,
    batch_recipients: Histogram,
    queue_depth: Histogram,
    slow_consumer: Counter,
    send_ack: Histogram,
    redis_lag: Histogram,
    confirm: Histogram,
}

static HOT: OnceLock<Hot> = OnceLock::new();

fn hot() -> &'static Hot {
    HOT.get_or_init(|| {
        let _ = handle();
        Hot {
            deliveries: metrics::counter!("chatwire_deliveries_total"),
            batch_recipients: metrics::histogram!("chatwire_fanout_batch_recipients"),
            queue_depth: metrics::histogram!("chatwire_session_queue_depth"),
            slow_consumer: metrics::counter!("chatwire_slow_consumer_closes_total"),
            send_ack: metrics::histogram!("chatwire_send_ack_seconds"),
            redis_lag: metrics::histogram!("chatwire_fanout_redis_lag_seconds"),
            confirm: metrics::histogram!("chatwire_pipeline_confirm_seconds"),
        }
    })
}

/// Touches the recorder so that every fixed family exists (called when a server is built;
/// registering the hot handles makes their histograms appear before a first observation);
/// starts the exporter's upkeep (histogram storage is drained between scrapes) once.
pub fn init() {
    let _ = hot();
    static UPKEEP: OnceLock<()> = OnceLock::new();
    if tokio::runtime::Handle::try_current().is_ok() {
        UPKEEP.get_or_init(|| {
            tokio::spawn(async {
                let mut tick = tokio::time::interval(Duration::from_secs(5));
                loop {
                    tick.tick().await;
                    handle().run_upkeep();
                }
            });
        });
    }
}

// ----- recording, one function per event --------------------------------------------------

/// A room event batch reached `sessions` live sessions on this node.
pub fn fanned_out(sessions: usize) {
    let hot = hot();
    hot.deliveries.increment(sessions as u64);
    hot.batch_recipients.record(sessions as f64);
}

/// A session took a delivery with `waiting` more in its queue; `taken` counts its deliveries.
pub fn delivery_taken(taken: u32, waiting: usize) {
    if taken.is_multiple_of(16) {
        hot().queue_depth.record(waiting as f64);
    }
}

/// A connection reached the session layer.
pub fn connection_opened(transport: &'static str) {
    metrics::counter!("chatwire_connections_opened_total", "transport" => transport).increment(1);
}

/// A connection ended with `code` (`None`: the peer went away).
pub fn connection_closed(transport: &'static str, code: Option<v1::CloseCode>) {
    let code = code.map_or("PEER_GONE", |c| {
        c.as_str_name().trim_start_matches("CLOSE_CODE_")
    });
    metrics::counter!("chatwire_connections_closed_total", "transport" => transport, "code" => code)
        .increment(1);
    if code == "SLOW_CONSUMER" {
        hot().slow_consumer.increment(1);
    }
}

/// The rate limiter refused a take from `bucket`.
pub fn rate_limited(bucket: &str) {
    let bucket = BUCKETS
        .iter()
        .find(|b| **b == bucket)
        .copied()
        .unwrap_or("other");
    metrics::counter!("chatwire_rate_limited_total", "bucket" => bucket).increment(1);
}

/// The name of a request kind, as a label value.
pub fn request_kind(request: &v1::client_frame::Request) -> &'static str {
    use v1::client_frame::Request as R;
    match request {
        R::Connect(_) => "connect",
        R::Refresh(_) => "refresh",
        R::Ping(_) => "ping",
        R::CreateGroup(_) => "create_group",
        R::OpenDirect(_) => "open_direct",
        R::GetRoom(_) => "get_room",
        R::UpdateRoom(_) => "update_room",
        R::ListMembers(_) => "list_members",
        R::AddMembers(_) => "add_members",
        R::RemoveMember(_) => "remove_member",
        R::SetRole(_) => "set_role",
        R::LeaveRoom(_) => "leave_room",
        R::Send(_) => "send",
        R::Edit(_) => "edit",
        R::Delete(_) => "delete",
        R::React(_) => "react",
        R::History(_) => "history",
        R::Subscribe(_) => "subscribe",
        R::Unsubscribe(_) => "unsubscribe",
        R::Sync(_) => "sync",
        R::MarkDelivered(_) => "mark_delivered",
        R::MarkRead(_) => "mark_read",
        R::GetReceipts(_) => "get_receipts",
        R::Typing(_) => "typing",
        R::WatchPresence(_) => "watch_presence",
        R::UnwatchPresence(_) => "unwatch_presence",
        R::CallSignal(_) => "call_signal",
        R::BlockUser(_) => "block_user",
        R::UnblockUser(_) => "unblock_user",
        R::ListBlocked(_) => "list_blocked",
        R::RegisterPushToken(_) => "register_push_token",
        R::UnregisterPushToken(_) => "unregister_push_token",
        R::MuteRoom(_) => "mute_room",
        R::RestrictMember(_) => "restrict_member",
        R::GetEditHistory(_) => "get_edit_history",
        R::ReportMessage(_) => "report_message",
        R::ListReviews(_) => "list_reviews",
        R::ResolveReview(_) => "resolve_review",
        R::Search(_) => "search",
        R::SendContactRequest(_) => "send_contact_request",
        R::AcceptContactRequest(_) => "accept_contact_request",
        R::DeclineContactRequest(_) => "decline_contact_request",
        R::CancelContactRequest(_) => "cancel_contact_request",
        R::RemoveContact(_) => "remove_contact",
        R::ListContacts(_) => "list_contacts",
    }
}

/// A request of `kind`, decoded at `started`, was answered with `outcome` (`OK` or an error
/// code name).
pub fn request_answered(kind: &'static str, outcome: &'static str, started: Instant) {
    let seconds = started.elapsed().as_secs_f64();
    metrics::counter!("chatwire_requests_total", "kind" => kind, "outcome" => outcome).increment(1);
    metrics::histogram!("chatwire_request_duration_seconds", "kind" => kind).record(seconds);
    if kind == "send" && outcome == "OK" {
        hot().send_ack.record(seconds);
    }
}

/// The outcome label of a request's result.
pub fn outcome<T>(result: &Result<T, crate::chat::error::ChatError>) -> &'static str {
    match result {
        Ok(_) => "OK",
        Err(err) => {
            let code =
                v1::ErrorCode::try_from(err.to_proto().code).unwrap_or(v1::ErrorCode::Internal);
            code.as_str_name().trim_start_matches("ERROR_CODE_")
        }
    }
}

/// A store operation of `backend` took `seconds`; `failed` when it returned an error.
pub fn store_op(backend: &'static str, op: &'static str, seconds: f64, failed: bool) {
    metrics::histogram!("chatwire_store_operation_seconds", "backend" => backend, "op" => op)
        .record(seconds);
    if failed {
        metrics::counter!("chatwire_store_errors_total", "backend" => backend, "op" => op)
            .increment(1);
    }
}

/// Registers the error series of one store operation (at zero until one fails).
pub fn store_errors_known(backend: &'static str, op: &'static str) {
    metrics::counter!("chatwire_store_errors_total", "backend" => backend, "op" => op).absolute(0);
}

/// A pipeline command published at `started` was confirmed (or refused: `failed`).
pub fn pipeline_confirmed(started: Instant, failed: bool) {
    hot().confirm.record(started.elapsed().as_secs_f64());
    if failed {
        metrics::counter!("chatwire_pipeline_publish_errors_total").increment(1);
    }
}

/// The pipeline's circuit breaker is now closed (0), half-open (1) or open (2).
pub fn circuit_state(state: u8) {
    metrics::gauge!("chatwire_pipeline_circuit_state").set(f64::from(state));
}

/// This node now runs the writers of `shards` shards.
pub fn shards_owned(shards: usize) {
    metrics::gauge!("chatwire_pipeline_shards_owned").set(shards as f64);
}

/// A downstream event was delivered (`ok`) or sent back for a retry, on `lane`.
pub fn event_delivery(lane: &'static str, ok: bool) {
    if ok {
        metrics::counter!("chatwire_events_delivered_total", "lane" => lane).increment(1);
    } else {
        metrics::counter!("chatwire_events_retries_total", "lane" => lane).increment(1);
    }
}

/// A room batch from another node arrived `lag_ms` after it was written.
pub fn redis_lag(lag_ms: i64) {
    hot().redis_lag.record(lag_ms.max(0) as f64 / 1000.0);
}

/// The Redis fan-out started a gap repair.
pub fn gap_repair() {
    metrics::counter!("chatwire_fanout_redis_gap_repairs_total").increment(1);
}

// ----- active rooms: one slot per room writer -----------------------------------------------

static WRITER_SLOTS: Mutex<Vec<Weak<AtomicUsize>>> = Mutex::new(Vec::new());

/// How many rooms one room writer holds; summed into `chatwire_rooms_active`.
#[derive(Debug)]
pub struct RoomsSlot(Arc<AtomicUsize>);

impl Default for RoomsSlot {
    fn default() -> Self {
        let slot = Arc::new(AtomicUsize::new(0));
        let mut slots = WRITER_SLOTS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slots.retain(|s| s.strong_count() > 0);
        slots.push(Arc::downgrade(&slot));
        Self(slot)
    }
}

impl RoomsSlot {
    /// The writer now holds `rooms` rooms.
    pub fn set(&self, rooms: usize) {
        self.0.store(rooms, Ordering::Relaxed);
    }
}

/// Rooms held by the room writers of this process.
pub fn rooms_active() -> usize {
    WRITER_SLOTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .filter_map(Weak::upgrade)
        .map(|s| s.load(Ordering::Relaxed))
        .sum()
}

// ----- a scrape ------------------------------------------------------------------------------

/// What a scrape reads from the server's state (not from events).
#[derive(Debug, Default)]
pub struct StateGauges {
    /// Live sessions.
    pub sessions: usize,
    /// Seconds since start.
    pub uptime_s: u64,
    /// Draining.
    pub draining: bool,
    /// Admin requests so far.
    pub admin_requests: u64,
    /// Per consumer: lane depths (high, medium, low) and dead letters.
    pub events: Vec<(String, [u64; 3], u64)>,
}

/// Serialises scrapes: the state gauges are process-wide, so a scrape sets them and renders
/// before another one (of another server in the same test process) sets its own.
static SCRAPE: Mutex<()> = Mutex::new(());

/// The Prometheus text exposition: the recorder's families with `state` set, then the
/// process's.
pub fn render(state: &StateGauges) -> String {
    let handle = handle();
    let _ = hot();
    let _scrape = SCRAPE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    metrics::gauge!("chatwire_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
    metrics::gauge!("chatwire_uptime_seconds").set(state.uptime_s as f64);
    metrics::gauge!("chatwire_draining").set(if state.draining { 1.0 } else { 0.0 });
    metrics::gauge!("chatwire_sessions").set(state.sessions as f64);
    metrics::gauge!("chatwire_rooms_active").set(rooms_active() as f64);
    metrics::counter!("chatwire_admin_requests_total").absolute(state.admin_requests);
    for (consumer, lanes, dead) in &state.events {
        for (lane, depth) in ["high", "medium", "low"].into_iter().zip(lanes) {
            metrics::gauge!("chatwire_events_queue_depth", "consumer" => consumer.clone(), "lane" => lane)
                .set(*depth as f64);
        }
        metrics::gauge!("chatwire_events_dead_letters", "consumer" => consumer.clone())
            .set(*dead as f64);
    }
    let mut out = handle.render();
    process_metrics(&mut out);
    out
}

/// The process families from /proc/self (nothing on systems without it).
fn process_metrics(out: &mut String) {
    let Some(p) = ProcessStats::read() else {
        return;
    };
    let mut line = |name: &str, value: f64| {
        if let Some(f) = FAMILIES.iter().find(|f| f.name == name) {
            let _ = write!(
                out,
                "# HELP {name} {}\n# TYPE {name} {}\n{name} {value}\n",
                f.help,
                f.kind.as_str()
            );
        }
    };
    line("process_cpu_seconds_total", p.cpu_seconds);
    line("process_resident_memory_bytes", p.resident_bytes as f64);
    line("process_virtual_memory_bytes", p.virtual_bytes as f64);
    line("process_open_fds", p.open_fds as f64);
    line("process_max_fds", p.max_fds as f64);
    line("process_start_time_seconds", p.start_time_s);
}

/// The process's CPU, memory and file descriptors, from /proc/self.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessStats {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size.
    pub resident_bytes: u64,
    /// Virtual size.
    pub virtual_bytes: u64,
    /// Open descriptors.
    pub open_fds: u64,
    /// The soft limit on descriptors.
    pub max_fds: u64,
    /// Start time, seconds since the epoch.
    pub start_time_s: f64,
}

/// Linux's USER_HZ (clock ticks per second in /proc), 100 on every supported architecture.
const TICKS_PER_SECOND: f64 = 100.0;
/// The page size /proc/self/stat counts resident memory in (4 KiB on x86-64 and arm64
/// defaults).
const PAGE_BYTES: u64 = 4096;

impl ProcessStats {
    /// Reads /proc/self; `None` where it does not exist.
    pub fn read() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name (which may contain spaces) start at field 3.
        let rest = &stat[stat.rfind(')')? + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
        let ticks = field(14)? + field(15)?;
        let start_ticks = field(22)?;
        let virtual_bytes = field(23)?;
        let resident_bytes = field(24)? * PAGE_BYTES;
        let boot_s = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<u64>().ok())?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()?
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3)?.parse().ok())
            .unwrap_or(0);
        Some(Self {
            cpu_seconds: ticks as f64 / TICKS_PER_SECOND,
            resident_bytes,
            virtual_bytes,
            open_fds,
            max_fds,
            start_time_s: boot_s as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        })
    }
}

/// Totals read back from the recorder (for the health report): each family's samples summed
/// over their labels, and the send→ack histogram's cumulative buckets.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Family (or `_count` / `_sum`) name to the sum of its samples.
    pub totals: std::collections::HashMap<String, f64>,
    /// `chatwire_send_ack_seconds` buckets: upper bound and cumulative count.
    pub ack_buckets: Vec<(f64, f64)>,
}

impl Snapshot {
    /// The current totals.
    pub fn take() -> Self {
        let text = {
            let _scrape = SCRAPE
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            handle().render()
        };
        let mut snapshot = Self::default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let name = series.split('{').next().unwrap_or(series);
            if name == "chatwire_send_ack_seconds_bucket" {
                let le = series
                    .split("le=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .map(|le| {
                        if le == "+Inf" {
                            f64::INFINITY
                        } else {
                            le.parse().unwrap_or(f64::INFINITY)
                        }
                    });
                if let Some(le) = le {
                    snapshot.ack_buckets.push((le, value));
                }
            }
            *snapshot.totals.entry(name.to_owned()).or_insert(0.0) += value;
        }
        snapshot
    }

    /// The sum of `name`'s samples (0 when absent).
    pub fn total(&self, name: &str) -> f64 {
        self.totals.get(name).copied().unwrap_or(0.0)
    }
}

/// The `q` quantile (0..1) of histogram `buckets` (upper bound, cumulative count), linearly
/// interpolated within its bucket; `None` without observations.
pub fn quantile(buckets: &[(f64, f64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let (mut lower, mut below) = (0.0, 0.0);
    for &(le, count) in buckets {
        if count >= rank {
            if le.is_infinite() {
                return Some(lower);
            }
            let inside = count - below;
            let fraction = if inside > 0.0 {
                (rank - below) / inside
            } else {
                1.0
            };
            return Some(lower + (le - lower) * fraction);
        }
        lower = le;
        below = count;
    }
    Some(lower)
}

/// docs/operations.md's metrics table, generated from [`FAMILIES`].
pub fn markdown_table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for f in FAMILIES {
        let labels = if f.labels.is_empty() {
            String::new()
        } else {
            f.labels
                .split(',')
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {labels} | {} |",
            f.name,
            f.kind.as_str(),
            f.help
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_units_and_counters_end_in_total() {
        for f in FAMILIES {
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}: counters and only counters end in _total",
                f.name
            );
            assert!(f.help.ends_with('.'), "{}: help is a sentence", f.name);
        }
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len(), "no family twice");
    }

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let buckets = [
            (0.001, 0.0),
            (0.01, 50.0),
            (0.1, 100.0),
            (f64::INFINITY, 100.0),
        ];
        let p50 = quantile(&buckets, 0.5).expect("p50");
        assert!((p50 - 0.01).abs() < 1e-9, "{p50}");
        let p99 = quantile(&buckets, 0.99).expect("p99");
        assert!(p99 > 0.09 && p99 <= 0.1, "{p99}");
        assert_eq!(quantile(&[(0.1, 0.0), (f64::INFINITY, 0.0)], 0.5), None);
    }

    #[test]
    fn process_stats_are_read_from_proc() {
        let stats = ProcessStats::read().expect("/proc/self");
        assert!(stats.resident_bytes > 0);
        assert!(stats.open_fds > 0);
        assert!(stats.max_fds >= stats.open_fds);
        assert!(stats.start_time_s > 1.0e9);
    }
}
