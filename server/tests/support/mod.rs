//! Test helpers shared by the integration tests: behavioural suites that run against every
//! implementation of a backend trait, with their builders.

// Each test binary uses the part of the support code it needs.
#![allow(dead_code, unreachable_pub, unused_macros, unused_imports)]

pub mod cluster;
pub mod conformance_run;
pub mod contacts_suite;
pub mod events_suite;
pub mod fanout_suite;
pub mod outbox_suite;
pub mod pipeline_suite;
pub mod proxy;
pub mod ratelimit_suite;
pub mod reviews_suite;
pub mod server;
pub mod store_suite;

/// An HTTP client for the tests. reqwest is built without a default TLS provider (the server
/// configures ring itself for its webhooks), so the process's default is set to ring first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}
