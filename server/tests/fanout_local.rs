//! The fan-out suite against the in-process fan-out of the embedded default.
//!
//! ```sh
//! cargo test -p chatwire-server --test fanout_local
//! ```

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use chatwire_server::backend::fanout::Fanout;
use chatwire_server::backend::fanout_local::LocalFanout;
use chatwire_server::clock::Clock;
use support::fanout_suite::{self, FanoutFactory};

struct Local;

#[async_trait]
impl FanoutFactory for Local {
    async fn fanout(&self, clock: Arc<dyn Clock>) -> Arc<dyn Fanout> {
        Arc::new(LocalFanout::new(clock))
    }
}

fn local() -> Local {
    Local
}

fanout_suite::fanout_suite_tests!(local);
