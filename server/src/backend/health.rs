//! Readiness per backend (`/readyz`, docs/architecture.md "Downstream events"): each backend a node
//! depends on answers a cheap probe. A critical backend that fails (the store, the command
//! pipeline) makes the node not ready; a degraded one (Redis fan-out, whose loss never fails a
//! send) is reported but keeps the node ready.

use async_trait::async_trait;

/// One backend's probe.
#[async_trait]
pub trait Probe: Send + Sync + std::fmt::Debug {
    /// The backend's name in `/readyz` (`pipeline`, `fanout`, `events`).
    fn name(&self) -> &'static str;

    /// True when the node cannot serve without it.
    fn critical(&self) -> bool;

    /// Ok when the backend answers now; the reason otherwise.
    async fn check(&self) -> Result<(), String>;
}
