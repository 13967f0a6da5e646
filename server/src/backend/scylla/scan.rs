//! Every room of the keyspace, for rebuilds that walk the whole log (a node's search index).

use super::ScyllaStore;
use crate::backend::store::StoreError;
use crate::chat::ids::RoomId;

impl ScyllaStore {
    /// Every room id (token order). A full scan of the rooms table, paged: for rebuilds, not
    /// requests.
    pub async fn room_ids(&self) -> Result<Vec<RoomId>, StoreError> {
        let cql = format!("SELECT room FROM {}.rooms", self.inner.keyspace);
        let st = self
            .inner
            .session
            .prepare(cql)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let rows: Vec<(String,)> = self.inner.rows(&st, ()).await?;
        Ok(rows
            .into_iter()
            .filter_map(|(room,)| RoomId::parse(&room).ok())
            .collect())
    }
}
