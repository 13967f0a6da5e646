//! Assembles a server from its configuration: the embedded store, the in-process pipeline
//! and fan-out, token checks, the downstream event consumers (webhooks), and the HTTP routes,
//! served on a listener the caller binds (so tests bind port 0) until the caller's shutdown
//! signal.
//!
//! ```text
//!  build: store ─ fan-out ─ consumers (data_dir/events/*.redb) ─ writers(publisher) ─ pipeline
//!  serve: spawn consumers ─ HTTP until shutdown ─ drain sessions ─ stop consumers
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::auth::{AuthError, TokenMinter, TokenVerifier};
use crate::backend::breaker::{Breaker, BreakerConfig, BreakerPipeline};
use crate::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::backend::events::RetryPolicy;
use crate::backend::events_embedded::EventQueueOptions;
use crate::backend::fanout::Fanout;
use crate::backend::fanout_local::LocalFanout;
use crate::backend::health::Probe;
use crate::backend::nodes::NodeRegistry;
use crate::backend::pipeline::{Pipeline, RoomExecutor};
use crate::backend::pipeline_local::LocalPipeline;
use crate::backend::pipeline_rabbit::RabbitPipeline;
use crate::backend::ratelimit_redis::RedisRateLimiter;
use crate::backend::store::{RoomLog, Store};
use crate::backend::store_metered::MeteredStore;
use crate::backup::OpenDatabases;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, StoreBackend, WebhookConfig};
use crate::devdefaults;
use crate::distributed;
use crate::http::admin::AdminState;
use crate::http::{AppState, router};
use crate::search::{AllRooms, INDEX_DIR, IndexConsumer, SearchIndex};
use crate::session::core::SessionConfig;
use crate::session::services::{Authenticate, Identity, Services, TokenRefusal, default_limits};
use crate::transport::quic;
use crate::transport::quic_endpoint::{self, QuicState};
use crate::webhook::{
    Consumers, PushAudience, SigningKey, SigningKeys, StoreAudience, WebhookSender,
};
use crate::writer::RoomWriter;
use crate::writer::draft::WriterConfig;

/// Commands a shard queues before it answers RATE_LIMITED.
const SHARD_QUEUE: usize = 4096;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

impl Authenticate for TokenVerifier {
    fn leeway_ms(&self) -> i64 {
        TokenVerifier::leeway_ms(self)
    }

    fn authenticate(&self, token: &str, now_ms: i64) -> Result<Identity, TokenRefusal> {
        match self.verify(token, now_ms) {
            Ok(verified) => Ok(Identity {
                user: verified.user,
                expires_at_ms: verified.expires_at_ms,
                issued_at_ms: verified.issued_at_ms,
            }),
            // The reason, never the token.
            Err(AuthError::Expired) => {
                tracing::info!(reason = %AuthError::Expired, "authentication refused");
                Err(TokenRefusal::Expired)
            }
            Err(err) => {
                tracing::info!(reason = %err, "authentication refused");
                Err(TokenRefusal::Invalid)
            }
        }
    }
}

/// A server ready to serve.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: TcpListener,
    consumers: Consumers,
    /// The QUIC endpoint, unless disabled.
    quic: Option<quinn::Endpoint>,
    /// The SHA-256 fingerprint of the QUIC certificate.
    quic_fingerprint: Option<String>,
    /// `quic.retry_above_handshakes`.
    quic_retry_above: usize,
    /// The RabbitMQ pipeline in a cluster, shut down (leaving the live set) after the drain.
    rabbit: Option<Arc<RabbitPipeline>>,
    /// TLS on the HTTP listener (`tls.enabled`).
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Server {
    /// Builds the server on the embedded default, serving on `listener`.
    pub async fn build(
        config: &Config,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let dev =
            devdefaults::load_or_create(&config.data_dir).map_err(|e| StartError(e.to_string()))?;
        let node_id = node_id();
        let clustered = config.cluster.enabled();
        // The store, the shard count and (in a cluster) the registry of live nodes.
        let mut backup = OpenDatabases::default();
        // Every room of the store, for rebuilding the search index.
        let all_rooms: Arc<dyn AllRooms>;
        let (store, shards, registry): (Arc<dyn Store>, usize, Option<Arc<dyn NodeRegistry>>) =
            match config.storage.backend {
                StoreBackend::Embedded => {
                    let options = EmbeddedOptions {
                        bucket_width_ms: i64::try_from(config.storage.bucket_width_ms)
                            .unwrap_or(3_600_000),
                        sync: true,
                    };
                    let store = EmbeddedStore::open(&config.data_dir.join("store"), options)
                        .map_err(|e| StartError(e.to_string()))?;
                    backup.store = Some(store.clone());
                    all_rooms = Arc::new(store.clone());
                    (Arc::new(store), config.storage.shards, None)
                }
                StoreBackend::Scylla => {
                    let store =
                        Arc::new(distributed::open_store(config).await.map_err(StartError)?);
                    let shards = usize::try_from(store.meta().shards).unwrap_or(1);
                    let registry: Arc<dyn NodeRegistry> = store.clone();
                    all_rooms = store.clone();
                    (store, shards, Some(registry))
                }
            };
        crate::telemetry::init();
        let backend = match config.storage.backend {
            StoreBackend::Embedded => "embedded",
            StoreBackend::Scylla => "scylla",
        };
        let store: Arc<dyn Store> = Arc::new(MeteredStore::new(store, backend));
        let verifier = TokenVerifier::from_config(&config.auth, Some(&dev.jwt_secret))
            .map_err(|e| StartError(e.to_string()))?;
        let mut probes: Vec<Arc<dyn Probe>> = Vec::new();
        let fanout: Arc<dyn Fanout> = if clustered {
            let log: Arc<dyn RoomLog> = store.clone();
            let fanout = distributed::open_fanout(config, &node_id, log, Arc::clone(&clock))
                .await
                .map_err(StartError)?;
            probes.push(Arc::new(distributed::FanoutProbe(Arc::clone(&fanout))));
            fanout
        } else {
            Arc::new(LocalFanout::new(Arc::clone(&clock)))
        };
        // Message search: an index in this node's data folder, fed by its own `index` queue
        // (docs/architecture.md "Message search"). The queue exists before the index is
        // rebuilt from the log, so nothing published meanwhile is missed.
        let index_name = if config.search.enabled {
            Some(index_queue_name(config, clustered)?)
        } else {
            None
        };
        let mut index_backup = None;
        let (consumers, index_queue) = if clustered {
            open_cluster_consumers(config, &store, &fanout, &clock, index_name.as_deref()).await?
        } else {
            let consumers = open_consumers(config, &store, &fanout, &clock)?;
            let queue = match &index_name {
                Some(name) => {
                    let queue = open_index_queue(config, name)?;
                    // Backed up like the other queues (a backup copies every queue file).
                    index_backup = Some((name.clone(), queue.clone()));
                    let queue: Arc<dyn crate::backend::events::EventQueue> = Arc::new(queue);
                    Some(queue)
                }
                None => None,
            };
            (consumers, queue)
        };
        let (consumers, search) = match index_queue {
            Some(queue) => {
                let index = open_search(config, &store, all_rooms.as_ref()).await?;
                let consumer = IndexConsumer::new(
                    Arc::clone(&queue),
                    Arc::clone(&index),
                    Arc::clone(&store),
                    Arc::clone(&clock),
                    INDEX_POLL_INTERVAL,
                );
                (consumers.with_index(queue, consumer, None), Some(index))
            }
            None => (consumers, None),
        };
        backup.queues = consumers.embedded_queues().to_vec();
        backup.queues.extend(index_backup);
        let publisher = consumers.publisher();
        let writer_config = WriterConfig {
            idempotency_window_ms: i64::try_from(config.storage.idempotency_window_ms)
                .unwrap_or(i64::MAX),
            ..WriterConfig::default()
        };
        let writers: Vec<Box<dyn RoomExecutor>> = (0..shards)
            .map(|shard| {
                RoomWriter::new(
                    Arc::clone(&store),
                    Arc::clone(&fanout),
                    Arc::clone(&clock),
                    writer_config,
                )
                .with_shard(shard, shards)
                .with_events(publisher.clone())
                .boxed()
            })
            .collect();
        let nodes = registry.clone();
        let mut rabbit = None;
        let pipeline: Arc<dyn Pipeline> = match (clustered, registry) {
            (true, Some(registry)) => {
                let address = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                let started =
                    distributed::start_pipeline(config, &node_id, address, writers, registry)
                        .await
                        .map_err(StartError)?;
                rabbit = Some(Arc::clone(&started));
                let breaker = Arc::new(Breaker::new(BreakerConfig::default(), Arc::clone(&clock)));
                probes.push(Arc::new(distributed::PipelineProbe(Arc::clone(&breaker))));
                Arc::new(BreakerPipeline::new(started, breaker))
            }
            (true, None) => {
                return Err(StartError(
                    "a cluster needs storage.backend = \"scylla\"".into(),
                ));
            }
            (false, _) => Arc::new(LocalPipeline::start(writers, SHARD_QUEUE)),
        };
        let mut services = Services::new(
            store,
            pipeline,
            fanout,
            clock,
            Arc::new(verifier),
            session_config(config),
            advertised_limits(config),
            node_id,
        );
        services.probes = probes;
        services.search = search;
        services.events = publisher;
        services.delivery_queue = config.session.outbound_queue_frames;
        services.rates = crate::session::services::Rates::from_config(&config.limits);
        services.moderation = Arc::new(
            crate::moderation::Stage::from_config(&config.moderation).map_err(StartError)?,
        );
        services.contacts = config.contacts.clone();
        // Distributed mode: accepted contact ids cached as Redis sets (issue 22).
        if clustered && let Some(url) = &config.redis.url {
            let cache = crate::contacts::RedisContactIds::connect(
                url,
                &config.redis.key_prefix,
                config.contacts.cache_ttl_s,
                Arc::clone(&services.store),
            )
            .await
            .map_err(|e| StartError(format!("redis (contact cache): {e}")))?;
            services.contact_ids = Arc::new(cache);
        }
        if let Some(url) = &config.redis.url {
            let limiter =
                RedisRateLimiter::connect(url, &format!("{}rate:", config.redis.key_prefix))
                    .await
                    .map_err(|e| StartError(format!("redis: {e}")))?;
            services.limiter = Arc::new(limiter);
            if !clustered {
                let probe = crate::backend::redis_probe::RedisProbe::new(url)
                    .map_err(|e| StartError(format!("redis: {e}")))?;
                services.probes.push(Arc::new(probe));
            }
        }
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let state = AppState {
            services: Arc::new(services),
            allowed_origins: config.allowed_origins(addr).into(),
            connections: Arc::default(),
            max_connections_per_ip: config.limits.max_connections_per_ip,
            admin: Arc::new(
                AdminState::new(
                    dev.admin_key.clone(),
                    TokenMinter::from_config(&config.auth, Some(&dev.jwt_secret)).ok(),
                )
                .with_event_queues(consumers.queues().to_vec())
                .with_nodes(addr.to_string(), nodes)
                .with_backup(config.data_dir.clone(), backup),
            ),
        };
        let (quic, quic_fingerprint) = if config.quic.enabled {
            let (endpoint, fingerprint) = quic_endpoint(config, &dev, addr)?;
            (Some(endpoint), Some(fingerprint))
        } else {
            (None, None)
        };
        let tls = if config.tls.enabled {
            let (chain, key) = certificate(config, &dev)?;
            Some(crate::http::tls::server_config(&chain, &key).map_err(StartError)?)
        } else {
            None
        };
        Ok(Self {
            state,
            listener,
            consumers,
            quic,
            quic_fingerprint,
            quic_retry_above: config.quic.retry_above_handshakes,
            rabbit,
            tls,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// The UDP address of the QUIC endpoint: the TCP address's port when it was free, another
    /// port otherwise; `None` when QUIC is disabled.
    pub fn quic_addr(&self) -> Option<SocketAddr> {
        self.quic.as_ref()?.local_addr().ok()
    }

    /// The SHA-256 fingerprint of the QUIC certificate (`AB:CD:...`), which clients of the
    /// development certificate pin; `None` when QUIC is disabled.
    pub fn quic_fingerprint(&self) -> Option<&str> {
        self.quic_fingerprint.as_deref()
    }

    /// Serves until `shutdown` resolves, then drains the sessions and stops the event
    /// consumers.
    pub async fn serve(
        mut self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_consumers, consumers_stopped) = watch::channel(false);
        let tasks = self.consumers.spawn(&consumers_stopped);
        let services = Arc::clone(&self.state.services);
        let drained = async move {
            shutdown.await;
            drain(&services).await;
        };
        let quic = self.quic.take();
        if let Some(endpoint) = &quic {
            let state = QuicState {
                services: Arc::clone(&self.state.services),
                connections: Arc::clone(&self.state.connections),
                max_connections_per_ip: self.state.max_connections_per_ip,
                handshaking: Arc::default(),
                retry_above: self.quic_retry_above,
            };
            tokio::spawn(quic_endpoint::accept_loop(endpoint.clone(), state));
        }
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        let served = match self.tls.take() {
            Some(tls) => {
                use axum::serve::ListenerExt;
                // tap_io: axum's ConnectInfo<SocketAddr> is implemented for tapped listeners.
                let listener =
                    crate::http::tls::TlsListener::new(self.listener, tls)?.tap_io(|_: &mut _| {});
                axum::serve(listener, app)
                    .with_graceful_shutdown(drained)
                    .await
            }
            None => {
                axum::serve(no_delay(self.listener), app)
                    .with_graceful_shutdown(drained)
                    .await
            }
        };
        // After the drain every QUIC session has closed with its code; stop the endpoint.
        if let Some(endpoint) = quic {
            endpoint.close(
                quic::error_code(chatwire_protocol::v1::CloseCode::ServerDraining),
                b"server stopped",
            );
            let _ = tokio::time::timeout(QUIC_IDLE_WAIT, endpoint.wait_idle()).await;
        }
        // After the drain: the writers published their last batches, so the consumers may
        // stop. A delivery cut short stays leased in its queue and is due again at restart.
        let _ = stop_consumers.send(true);
        // Leave the live set at once, so the shards move without waiting for the TTL.
        if let Some(rabbit) = &self.rabbit {
            rabbit.shutdown().await;
        }
        let deadline = tokio::time::Instant::now() + CONSUMER_STOP_TIMEOUT;
        for mut task in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                task.abort();
            }
        }
        served
    }
}

/// How long stopping waits for QUIC connections to finish closing.
const QUIC_IDLE_WAIT: Duration = Duration::from_secs(2);

/// The QUIC endpoint on the TCP listener's address, with the configured certificate or the
/// development one; logs the certificate's SHA-256 fingerprint (clients pin it).
fn quic_endpoint(
    config: &Config,
    dev: &devdefaults::DevSecrets,
    addr: SocketAddr,
) -> Result<(quinn::Endpoint, String), StartError> {
    // ring is the only provider compiled in; installing it makes that explicit for any
    // rustls user in the process (a second install is refused, which is fine).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (chain, key) = certificate(config, dev)?;
    let heartbeat = Duration::from_millis(config.session.heartbeat_interval_ms);
    let server_config = quic_endpoint::server_config_chain(&chain, &key, heartbeat)
        .map_err(|e| StartError(e.to_string()))?;
    let endpoint =
        quic_endpoint::bind(server_config, addr).map_err(|e| StartError(e.to_string()))?;
    let quic_addr = endpoint
        .local_addr()
        .map_err(|e| StartError(e.to_string()))?;
    let leaf = chain.first().map(Vec::as_slice).unwrap_or_default();
    let fingerprint = quic_endpoint::fingerprint(leaf);
    tracing::info!(%quic_addr, alpn = "chatwire/1", sha256 = %fingerprint, "QUIC listening");
    Ok((endpoint, fingerprint))
}

/// The certificate chain (leaf first) and key of QUIC and of TLS on the HTTP listener, as
/// DER: the configured files (DER or PEM) or the development certificate.
fn certificate(
    config: &Config,
    dev: &devdefaults::DevSecrets,
) -> Result<(Vec<Vec<u8>>, Vec<u8>), StartError> {
    match (&config.quic.cert_file, &config.quic.key_file) {
        (Some(cert), Some(key)) => {
            let cert = crate::http::tls::certificate_chain_der(&read_file(cert)?)
                .map_err(|e| StartError(format!("{}: {e}", cert.display())))?;
            let key = crate::http::tls::private_key_der(&read_file(key)?)
                .map_err(|e| StartError(format!("{}: {e}", key.display())))?;
            Ok((cert, key))
        }
        (None, None) => Ok((vec![dev.tls_cert_der.clone()], dev.tls_key_der.clone())),
        _ => Err(StartError(
            "quic.cert_file and quic.key_file go together".into(),
        )),
    }
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, StartError> {
    std::fs::read(path).map_err(|e| StartError(format!("{}: {e}", path.display())))
}

/// How long stopping waits for consumers to finish the delivery in hand.
const CONSUMER_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Events a consumer leases at once (the consumers' default batch).
const CONSUMER_BATCH: i64 = 32;

/// The configured consumers (the push webhook with who is online, the app webhook) and the
/// retry policy of their queues.
type ConsumerParts = (
    Option<(WebhookSender, Arc<dyn PushAudience>)>,
    Option<WebhookSender>,
    RetryPolicy,
);

fn consumer_parts(
    config: &Config,
    store: &Arc<dyn Store>,
    fanout: &Arc<dyn Fanout>,
) -> Result<ConsumerParts, StartError> {
    let events = &config.events;
    let push = events
        .push
        .as_ref()
        .map(|hook| {
            let sender = webhook_sender("events.push", hook)?;
            let audience: Arc<dyn PushAudience> =
                Arc::new(StoreAudience::new(Arc::clone(store), Arc::clone(fanout)));
            Ok::<_, StartError>((sender, audience))
        })
        .transpose()?;
    let app = events
        .app
        .as_ref()
        .map(|hook| webhook_sender("events.app", hook))
        .transpose()?;
    // A lease outlives a whole batch of slow requests, so a slow receiver does not get the
    // same events twice; a lease only matters if a consumer task dies (a restart re-leases).
    let slowest = [&events.push, &events.app]
        .into_iter()
        .flatten()
        .map(|hook| i64::try_from(hook.timeout_ms).unwrap_or(i64::MAX))
        .max()
        .unwrap_or(0);
    let default_lease = RetryPolicy::default().lease_timeout_ms;
    let retry = RetryPolicy {
        tiers_ms: events.retry_tiers(),
        lease_timeout_ms: default_lease
            .max(slowest.saturating_mul(CONSUMER_BATCH).saturating_add(1_000)),
    };
    Ok((push, app, retry))
}

/// Opens the configured event consumers' queues under `data_dir/events` (none configured:
/// nothing is opened and there is no publisher).
fn open_consumers(
    config: &Config,
    store: &Arc<dyn Store>,
    fanout: &Arc<dyn Fanout>,
    clock: &Arc<dyn Clock>,
) -> Result<Consumers, StartError> {
    let (push, app, retry) = consumer_parts(config, store, fanout)?;
    let options = EventQueueOptions { retry, sync: true };
    Consumers::open(
        &config.data_dir.join("events"),
        &options,
        push,
        app,
        Arc::clone(clock),
    )
    .map_err(|e| StartError(format!("event queues: {e}")))
}

/// The configured consumers on RabbitMQ lanes shared by every node (each node consumes them
/// too; the broker spreads deliveries), fed by one exchange; and this node's own index queue
/// (`index`: its name), which the exchange fills with a copy of every event.
async fn open_cluster_consumers(
    config: &Config,
    store: &Arc<dyn Store>,
    fanout: &Arc<dyn Fanout>,
    clock: &Arc<dyn Clock>,
    index: Option<&str>,
) -> Result<
    (
        Consumers,
        Option<Arc<dyn crate::backend::events::EventQueue>>,
    ),
    StartError,
> {
    let (push, app, retry) = consumer_parts(config, store, fanout)?;
    let mut names = Vec::new();
    if push.is_some() {
        names.push("push");
    }
    if app.is_some() {
        names.push("app");
    }
    if let Some(index) = index {
        names.push(index);
    }
    if names.is_empty() {
        return Ok((
            Consumers::with_queues(None, None, None, Arc::clone(clock)),
            None,
        ));
    }
    let (publisher, mut queues) = distributed::open_events(config, &retry, &names)
        .await
        .map_err(StartError)?;
    let index = match index {
        Some(_) => queues.pop(),
        None => None,
    };
    let app = match app {
        Some(sender) => queues.pop().map(|queue| (sender, queue)),
        None => None,
    };
    let push = match push {
        Some((sender, audience)) => queues.pop().map(|queue| (sender, audience, queue)),
        None => None,
    };
    Ok((
        Consumers::with_queues(push, app, Some(publisher), Arc::clone(clock)),
        index,
    ))
}

/// How often an idle index consumer looks at its queue.
const INDEX_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The file in the index folder that says the index holds the whole log (written after a
/// rebuild; without it the index is rebuilt at start).
pub const INDEX_COMPLETE: &str = "complete";

/// Opens the search index in the data folder; rebuilds it from the room log when it is not
/// known complete (a first start with search, a new node, a restored backup, an interrupted
/// rebuild).
async fn open_search(
    config: &Config,
    store: &Arc<dyn Store>,
    rooms: &dyn AllRooms,
) -> Result<Arc<SearchIndex>, StartError> {
    let dir = config.data_dir.join(INDEX_DIR);
    let (index, _) = SearchIndex::open(&dir).map_err(|e| StartError(e.to_string()))?;
    let index = Arc::new(index);
    if !dir.join(INDEX_COMPLETE).exists() {
        reindex(store.as_ref(), rooms, &index, &dir)
            .await
            .map_err(StartError)?;
    }
    Ok(index)
}

/// Rebuilds the index in `dir` from every room of the store, then marks it complete.
pub async fn reindex(
    store: &dyn Store,
    rooms: &dyn AllRooms,
    index: &Arc<SearchIndex>,
    dir: &std::path::Path,
) -> Result<crate::search::Rebuilt, String> {
    let marker = dir.join(INDEX_COMPLETE);
    let _ = std::fs::remove_file(&marker);
    let rooms = rooms.room_ids().await.map_err(|e| e.to_string())?;
    let started = std::time::Instant::now();
    let rebuilt = crate::search::rebuild(store, index, &rooms).await?;
    std::fs::write(&marker, b"").map_err(|e| format!("{}: {e}", marker.display()))?;
    tracing::info!(
        rooms = rebuilt.rooms,
        messages = rebuilt.messages,
        ms = started.elapsed().as_millis() as u64,
        "search index rebuilt from the room log"
    );
    Ok(rebuilt)
}

/// The file in the index folder naming this node's index queue in a cluster.
const INDEX_QUEUE_FILE: &str = "queue-name";

/// The name of this node's index queue: `index` on the embedded default; in a cluster
/// `index-` and a random id kept in the index folder, so a restarted node finds its queue (and
/// the events it missed) again and a new node gets a queue of its own.
fn index_queue_name(config: &Config, clustered: bool) -> Result<String, StartError> {
    if !clustered {
        return Ok("index".to_owned());
    }
    let dir = config.data_dir.join(INDEX_DIR);
    let file = dir.join(INDEX_QUEUE_FILE);
    if let Ok(name) = std::fs::read_to_string(&file) {
        let name = name.trim();
        if !name.is_empty() {
            return Ok(name.to_owned());
        }
    }
    let name = format!("index-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&file, &name))
        .map_err(|e| StartError(format!("{}: {e}", file.display())))?;
    Ok(name)
}

/// The embedded index queue, `data_dir/events/index.redb`.
fn open_index_queue(
    config: &Config,
    name: &str,
) -> Result<crate::backend::events_embedded::EmbeddedEventQueue, StartError> {
    let options = EventQueueOptions {
        retry: RetryPolicy::default(),
        sync: true,
    };
    crate::webhook::setup::open_queue(&config.data_dir.join("events"), name, &options)
        .map_err(|e| StartError(format!("event queues: {e}")))
}

/// A signed sender for the webhook section `name`; reads secret files.
fn webhook_sender(name: &str, hook: &WebhookConfig) -> Result<WebhookSender, StartError> {
    let keys = hook
        .keys
        .iter()
        .map(|key| {
            let secret = key
                .secret_bytes(name)
                .map_err(|e| StartError(e.to_string()))?;
            SigningKey::new(key.id.clone(), secret)
                .map_err(|e| StartError(format!("{name}.keys: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let keys = SigningKeys::new(keys).map_err(|e| StartError(format!("{name}.keys: {e}")))?;
    WebhookSender::new(
        &hook.url,
        Arc::new(keys),
        hook.timeout(),
        hook.ca_file.as_deref(),
    )
    .map_err(|e| StartError(format!("{name}: {e}")))
}

/// How long a drain waits for sessions to finish what is in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Graceful drain: refuse new sessions, tell every live session to reconnect elsewhere (each
/// finishes the request it is executing first), and wait for them to close.
async fn drain(services: &Services) {
    services
        .draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let sessions = services
        .fanout
        .close_sessions(None, chatwire_protocol::v1::CloseCode::ServerDraining);
    tracing::info!(sessions, "draining");
    let deadline = tokio::time::Instant::now() + DRAIN_TIMEOUT;
    while services.fanout.session_count() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn session_config(config: &Config) -> SessionConfig {
    SessionConfig {
        handshake_timeout: Duration::from_millis(config.session.handshake_timeout_ms),
        heartbeat_interval: Duration::from_millis(config.session.heartbeat_interval_ms),
        max_in_flight: config.limits.max_in_flight_requests,
        ..SessionConfig::default()
    }
}

/// The limits a server with `config` advertises in `ConnectResponse`.
pub fn advertised_limits(config: &Config) -> chatwire_protocol::v1::Limits {
    let l = &config.limits;
    let clamp = |value: usize| u32::try_from(value).unwrap_or(u32::MAX);
    let rate = |per_minute: u32| per_minute.div_ceil(60);
    chatwire_protocol::v1::Limits {
        max_client_frame_bytes: clamp(l.max_client_frame_bytes),
        max_server_frame_bytes: clamp(l.max_server_frame_bytes),
        max_text_chars: clamp(l.max_text_chars),
        max_app_payload_bytes: clamp(l.max_app_payload_bytes),
        max_in_flight_requests: clamp(l.max_in_flight_requests),
        send_rate_per_second: rate(l.rate_sends.rate_per_minute),
        send_burst: l.rate_sends.burst,
        room_send_rate_per_second: rate(l.rate_room_sends.rate_per_minute),
        room_send_burst: l.rate_room_sends.burst,
        contact_requests_per_minute: l.rate_contact_requests.rate_per_minute,
        contact_requests_burst: l.rate_contact_requests.burst,
        idempotency_window_s: u32::try_from(config.storage.idempotency_window_ms / 1000)
            .unwrap_or(u32::MAX),
        ..default_limits()
    }
}

fn node_id() -> String {
    format!("node-{}", &uuid::Uuid::new_v4().simple().to_string()[..8])
}

/// The system clock, for `serve`.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// Accepted sockets send small writes at once. With Nagle's algorithm a reply written while the
/// previous event is still unacknowledged waits for the client's delayed ACK (about 40 ms on
/// Linux): chat frames are small and latency-bound, so coalescing only costs latency.
fn no_delay(listener: TcpListener) -> axum::serve::TapIo<TcpListener, fn(&mut TcpStream)> {
    use axum::serve::ListenerExt;
    fn set(tcp: &mut TcpStream) {
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(error = %err, "TCP_NODELAY not set");
        }
    }
    listener.tap_io(set as fn(&mut TcpStream))
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_sockets_have_nagle_off() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let mut listener = super::no_delay(listener);
        let client = tokio::net::TcpStream::connect(addr);
        let ((accepted, _), client) = tokio::join!(listener.accept(), client);
        client.expect("connect");
        assert!(accepted.nodelay().expect("nodelay"));
    }
}
