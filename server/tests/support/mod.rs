//! Test helpers shared by the integration tests: behavioural suites that run against every
//! implementation of a backend trait, with their builders.

// Each test binary uses the part of the support code it needs.
#![allow(dead_code, unreachable_pub, unused_macros, unused_imports)]

pub mod cluster;
pub mod conformance_run;
pub mod events_suite;
pub mod fanout_suite;
pub mod pipeline_suite;
pub mod ratelimit_suite;
pub mod server;
pub mod store_suite;
