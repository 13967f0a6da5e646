//! HTTP: the WebSocket upgrade, the admin API, health, readiness and metrics.
