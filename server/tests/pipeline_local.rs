//! The pipeline suite against the in-process shard tasks of the embedded default.
//!
//! ```sh
//! cargo test -p chatwire-server --test pipeline_local
//! ```

mod support;

use std::sync::Arc;

use async_trait::async_trait;
use chatwire_server::backend::pipeline::{Pipeline, RoomExecutor};
use chatwire_server::backend::pipeline_local::LocalPipeline;
use support::pipeline_suite::{self, PipelineFactory};

struct Local;

#[async_trait]
impl PipelineFactory for Local {
    async fn start(&self, writers: Vec<Box<dyn RoomExecutor>>, queue: usize) -> Arc<dyn Pipeline> {
        Arc::new(LocalPipeline::start(writers, queue))
    }
}

fn local() -> Local {
    Local
}

pipeline_suite::pipeline_suite_tests!(local);
