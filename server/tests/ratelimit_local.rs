//! The rate limiter suite against the in-process token buckets of the embedded default.
//!
//! ```sh
//! cargo test -p chatwire-server --test ratelimit_local
//! ```

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use chatwire_server::backend::ratelimit::{LocalRateLimiter, RateLimiter};
use support::ratelimit_suite::{self, LimiterFactory};

struct Local;

#[async_trait]
impl LimiterFactory for Local {
    async fn limiter(&self) -> Arc<dyn RateLimiter> {
        Arc::new(LocalRateLimiter::new())
    }
}

fn local() -> Local {
    Local
}

ratelimit_suite::ratelimit_suite_tests!(local);
