//! Every room of the store, for rebuilds that walk the whole log (`chatwire reindex`).

use redb::{ReadableDatabase, ReadableTable};

use super::EmbeddedStore;
use super::tables::ROOMS;
use crate::backend::store::StoreError;
use crate::chat::ids::RoomId;

impl EmbeddedStore {
    /// Every room id, in id order. Reads the whole room table: for rebuilds, not requests.
    pub async fn room_ids(&self) -> Result<Vec<RoomId>, StoreError> {
        self.run(|inner| {
            let txn = inner.db.begin_read()?;
            let rooms = txn.open_table(ROOMS)?;
            let mut out = Vec::new();
            for entry in rooms.iter()? {
                let (key, _) = entry?;
                if let Ok(room) = RoomId::parse(key.value()) {
                    out.push(room);
                }
            }
            Ok(out)
        })
        .await
    }
}
