//! [`NodeRegistry`] on the `nodes` table: a heartbeat is an insert `USING TTL`, so a node that
//! stops renewing disappears on its own; `leave` deletes the row at once.

use async_trait::async_trait;

use super::ScyllaStore;
use crate::backend::nodes::{LiveNode, NodeRegistry};
use crate::backend::store::StoreError;

/// The TTL of a heartbeat in whole seconds (CQL's unit), rounded up, at least 1.
fn ttl_s(ttl_ms: u64) -> i32 {
    i32::try_from(ttl_ms.div_ceil(1000).max(1)).unwrap_or(i32::MAX)
}

#[async_trait]
impl NodeRegistry for ScyllaStore {
    async fn heartbeat(&self, node: &LiveNode, ttl_ms: u64) -> Result<(), StoreError> {
        let values = (node.node_id.as_str(), node.address.as_str(), ttl_s(ttl_ms));
        self.inner.write(&self.inner.st.node_insert, values).await?;
        Ok(())
    }

    async fn live_nodes(&self) -> Result<Vec<LiveNode>, StoreError> {
        let rows: Vec<(String, Option<String>)> =
            self.inner.rows(&self.inner.st.nodes_all, ()).await?;
        let mut nodes: Vec<LiveNode> = rows
            .into_iter()
            .map(|(node_id, address)| LiveNode {
                node_id,
                address: address.unwrap_or_default(),
            })
            .collect();
        nodes.sort_by(|a, b| a.node_id.cmp(&b.node_id));
        Ok(nodes)
    }

    async fn leave(&self, node_id: &str) -> Result<(), StoreError> {
        self.inner
            .write(&self.inner.st.node_delete, (node_id,))
            .await?;
        Ok(())
    }
}
