//! Assembles a server from its configuration: the embedded store, the in-process pipeline
//! and fan-out, token checks, and the HTTP routes, served on a listener the caller binds (so
//! tests bind port 0) until the caller's shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::auth::{AuthError, TokenMinter, TokenVerifier};
use crate::backend::embedded::{EmbeddedOptions, EmbeddedStore};
use crate::backend::fanout::Fanout;
use crate::backend::fanout_local::LocalFanout;
use crate::backend::pipeline_local::LocalPipeline;
use crate::backend::store::Store;
use crate::chat::draft::WriterConfig;
use crate::chat::writer::RoomWriter;
use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::devdefaults;
use crate::http::admin::AdminState;
use crate::http::{AppState, router};
use crate::session::core::SessionConfig;
use crate::session::services::{Authenticate, Identity, Services, TokenRefusal, default_limits};

/// Writer shards of the embedded pipeline.
const SHARDS: usize = 8;

/// Commands a shard queues before it answers RATE_LIMITED.
const SHARD_QUEUE: usize = 4096;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(String);

impl Authenticate for TokenVerifier {
    fn authenticate(&self, token: &str, now_ms: i64) -> Result<Identity, TokenRefusal> {
        match self.verify(token, now_ms) {
            Ok(verified) => Ok(Identity {
                user: verified.user,
                expires_at_ms: verified.expires_at_ms,
                issued_at_ms: verified.issued_at_ms,
            }),
            Err(AuthError::Expired) => Err(TokenRefusal::Expired),
            Err(_) => Err(TokenRefusal::Invalid),
        }
    }
}

/// A server ready to serve.
#[derive(Debug)]
pub struct Server {
    state: AppState,
    listener: TcpListener,
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
        let options = EmbeddedOptions {
            bucket_width_ms: i64::try_from(config.storage.bucket_width_ms).unwrap_or(3_600_000),
            sync: true,
        };
        let store = EmbeddedStore::open(&config.data_dir.join("store"), options)
            .map_err(|e| StartError(e.to_string()))?;
        let store: Arc<dyn Store> = Arc::new(store);
        let verifier = TokenVerifier::from_config(&config.auth, Some(&dev.jwt_secret))
            .map_err(|e| StartError(e.to_string()))?;
        let fanout: Arc<dyn Fanout> = Arc::new(LocalFanout::new(Arc::clone(&clock)));
        let writer_config = WriterConfig {
            idempotency_window_ms: i64::try_from(config.storage.idempotency_window_ms)
                .unwrap_or(i64::MAX),
            ..WriterConfig::default()
        };
        let writers = (0..SHARDS)
            .map(|_| {
                RoomWriter::new(
                    Arc::clone(&store),
                    Arc::clone(&fanout),
                    Arc::clone(&clock),
                    writer_config,
                )
            })
            .collect();
        let pipeline = Arc::new(LocalPipeline::start(writers, SHARD_QUEUE));
        let mut services = Services::new(
            store,
            pipeline,
            fanout,
            clock,
            Arc::new(verifier),
            session_config(config),
            limits(config),
            node_id(),
        );
        services.delivery_queue = config.session.outbound_queue_frames;
        services.rates = crate::session::services::Rates::from_config(&config.limits);
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let state = AppState {
            services: Arc::new(services),
            allowed_origins: config.allowed_origins(addr).into(),
            connections: Arc::default(),
            max_connections_per_ip: config.limits.max_connections_per_ip,
            admin: Arc::new(AdminState::new(
                dev.admin_key.clone(),
                TokenMinter::from_config(&config.auth, Some(&dev.jwt_secret)).ok(),
            )),
        };
        Ok(Self { state, listener })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves until `shutdown` resolves.
    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let services = Arc::clone(&self.state.services);
        let drained = async move {
            shutdown.await;
            drain(&services).await;
        };
        let app = router(self.state).into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(self.listener, app)
            .with_graceful_shutdown(drained)
            .await
    }
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

fn limits(config: &Config) -> chatwire_protocol::v1::Limits {
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
