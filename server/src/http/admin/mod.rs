//! The admin HTTP API (docs/operations.md "Admin API"): rooms and members, server-side sends,
//! history and moderation, user rooms and presence, revocation, erasure, development tokens, stats,
//! readiness and metrics, with its OpenAPI document at `/openapi.json` and a browsable, offline
//! Swagger UI at `/docs`.
//!
//! ```text
//!  /admin/* ──admin key──▶ handler ──parse + validate──▶ RoomCommand ──▶ pipeline ──▶ room writer
//!                                 └──────────────reads─────────────▶ store, fan-out
//! ```
//!
//! Changes to rooms go through the room's writer like a client's, so they are ordered, logged
//! and delivered live; the admin API acts with `privileged: true` (owner rights without
//! membership) as the user `system` unless a request names another actor (a send's `sender`).
//! Creating a room is the exception: it runs unprivileged as the given owner, exactly as that
//! user's own CreateGroup would. Reads go to the store directly and see the whole log, and so
//! does retention (it moves no head and writes no event; see `messages::retention`).
//! Downstream event queues (webhook consumers) are inspected under `/admin/events`: dead
//! letters listed and replayed, lane depths. `/admin/health` is the health report (score,
//! findings, rates, backends, nodes) that the `/dashboard` page polls.

mod auth;
mod backup;
mod document;
mod erase;
mod error;
mod events;
mod extract;
mod health;
mod messages;
mod moderation;
mod ops;
mod reviews;
mod rooms;
mod tokens;
mod users;
mod views;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::middleware;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

pub use error::{ApiError, ErrorBody};

use super::AppState;
use crate::auth::TokenMinter;
use crate::backend::events::EventQueue;
use crate::backend::nodes::NodeRegistry;
use crate::chat::command::{Outcome, RoomCommand, RoomOp};
use crate::chat::ids::{RoomId, UserId};
use crate::session::services::Services;

/// The user the admin API acts as when a request names none.
pub const SYSTEM_USER: &str = "system";

/// What the admin handlers share besides the session services.
pub struct AdminState {
    key: String,
    minter: Option<TokenMinter>,
    started: Instant,
    requests: AtomicU64,
    event_queues: Vec<(&'static str, Arc<dyn EventQueue>)>,
    /// The cluster's registry of live nodes (none outside a cluster).
    registry: Option<Arc<dyn NodeRegistry>>,
    /// Where this node's clients connect.
    address: String,
    /// The snapshot the health report's rates are computed against.
    window: health::Window,
    /// The data folder and its open databases, for `POST /admin/backup` (no databases in a
    /// cluster: backups cover the embedded backends).
    backup: Option<(std::path::PathBuf, crate::backup::OpenDatabases)>,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState")
            .field("minter", &self.minter)
            .field("started", &self.started)
            .field(
                "event_queues",
                &self
                    .event_queues
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// Admin state checking `key`; `minter` is `None` where HS256 tokens cannot be minted.
    pub fn new(key: String, minter: Option<TokenMinter>) -> Self {
        Self {
            key,
            minter,
            started: Instant::now(),
            requests: AtomicU64::new(0),
            event_queues: Vec::new(),
            registry: None,
            address: String::new(),
            window: health::Window::default(),
            backup: None,
        }
    }

    /// Lets `POST /admin/backup` copy `data_dir` with these open databases (the store's
    /// handle set: the embedded backends).
    pub fn with_backup(
        mut self,
        data_dir: std::path::PathBuf,
        open: crate::backup::OpenDatabases,
    ) -> Self {
        self.backup = open.store.is_some().then_some((data_dir, open));
        self
    }

    /// The downstream event consumers' queues by name (`push`, `app`), for the dead-letter
    /// endpoints, stats and metrics.
    pub fn with_event_queues(mut self, queues: Vec<(&'static str, Arc<dyn EventQueue>)>) -> Self {
        self.event_queues = queues;
        self
    }

    /// This node's address, and the cluster's registry of live nodes for the health report.
    pub fn with_nodes(mut self, address: String, registry: Option<Arc<dyn NodeRegistry>>) -> Self {
        self.address = address;
        self.registry = registry;
        self
    }

    fn event_queues(&self) -> &[(&'static str, Arc<dyn EventQueue>)] {
        &self.event_queues
    }

    fn key_matches(&self, given: &str) -> bool {
        auth::key_matches(&self.key, given)
    }

    fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Chatwire admin API",
        description = "Operate a Chatwire gateway: rooms, members, server-side sends, history, \
                       moderation, revocation, erasure, development tokens, webhook dead \
                       letters and stats. Every \
                       `/admin` endpoint needs `Authorization: Bearer <admin key>`; errors are \
                       `{\"code\", \"message\"}` JSON."
    ),
    modifiers(&AdminKey),
    security(("admin_key" = [])),
    components(schemas(ErrorBody)),
    tags(
        (name = "rooms", description = "Rooms and members"),
        (name = "messages", description = "Server-side sends, history, moderation"),
        (name = "moderation", description = "The review queue of flagged and reported messages"),
        (name = "users", description = "User rooms, presence, revocation, erasure"),
        (name = "tokens", description = "Development tokens"),
        (name = "events", description = "Webhook consumers: dead letters, lane depths"),
        (name = "ops", description = "Stats, readiness, metrics"),
        (name = "backup", description = "Backups of the embedded backends"),
    )
)]
struct ApiDoc;

/// Declares the bearer admin key.
struct AdminKey;

impl Modify for AdminKey {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some(
                "The admin key (the data folder's `admin-key` file by default)",
            ))
            .build();
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("admin_key", SecurityScheme::Http(scheme));
    }
}

/// The admin routes, `/readyz`, `/metrics`, `/openapi.json` and `/docs`.
pub fn routes(state: &AppState) -> Router<AppState> {
    let admin = OpenApiRouter::new()
        .routes(routes!(rooms::create_room))
        .routes(routes!(rooms::get_room, rooms::update_room))
        .routes(routes!(rooms::list_members, rooms::add_members))
        .routes(routes!(rooms::remove_member))
        .routes(routes!(rooms::set_role))
        .routes(routes!(messages::send))
        .routes(routes!(messages::history))
        .routes(routes!(messages::delete))
        .routes(routes!(messages::retention))
        .routes(routes!(moderation::restrict))
        .routes(routes!(moderation::audit))
        .routes(routes!(reviews::list))
        .routes(routes!(reviews::get))
        .routes(routes!(reviews::approve))
        .routes(routes!(reviews::remove))
        .routes(routes!(users::rooms))
        .routes(routes!(users::presence))
        .routes(routes!(users::revoke))
        .routes(routes!(erase::erase))
        .routes(routes!(tokens::mint))
        .routes(routes!(ops::stats))
        .routes(routes!(health::health))
        .routes(routes!(events::dead_letters))
        .routes(routes!(events::replay))
        .routes(routes!(events::stats))
        .routes(routes!(backup::backup))
        .fallback(|| async { ApiError::no_route() })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ));
    let public = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::dashboard));
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/admin", admin)
        .merge(public)
        .split_for_parts();
    let mut api = api;
    document::complete(&mut api);
    // No validator: Swagger UI would otherwise send the document to an outside service.
    let config = Config::new(["/openapi.json"]).validator_url("none");
    router.merge(
        SwaggerUi::new("/docs")
            .url("/openapi.json", api)
            .config(config),
    )
}

/// Runs a command on the room's writer on behalf of the admin API.
async fn write(
    services: &Services,
    room: RoomId,
    actor: UserId,
    op: RoomOp,
    privileged: bool,
) -> Result<Outcome, ApiError> {
    let trace_id = format!("admin-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let command = RoomCommand {
        room,
        actor,
        op,
        trace_id,
        privileged,
    };
    Ok(services.pipeline.execute(command).await?)
}

/// The `system` user.
fn system_user() -> UserId {
    // A constant that is a valid id.
    UserId::parse(SYSTEM_USER).unwrap_or_else(|_| unreachable!("`system` is a valid user id"))
}

/// A page size within the protocol's page limit.
fn page_limit(services: &Services, asked: Option<u32>) -> usize {
    services.page_limit(asked.unwrap_or(0), 100)
}
