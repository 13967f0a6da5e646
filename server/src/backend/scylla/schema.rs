//! The CQL schema and `migrate`: creates the keyspace and the tables (idempotent: every
//! statement is `IF NOT EXISTS`), then records the schema version and the cluster metadata
//! with lightweight transactions, so the first migrate fixes them and later ones read them
//! back ("the recorded value wins"). Table layout: `docs/storage-scylla.md`.

use scylla::client::session::Session;
use scylla::statement::Statement;
use scylla::value::{CqlValue, Row};

use super::{ClusterMeta, ScyllaError, ScyllaOptions, open_session};

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i64 = 1;

const META_SCHEMA_VERSION: &str = "schema_version";
const META_BUCKET_WIDTH: &str = "bucket_width_ms";
const META_SHARDS: &str = "shards";

/// Table definitions; `{ks}` is replaced by the keyspace.
const TABLES: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS {ks}.meta (name text PRIMARY KEY, value bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.heads (room text PRIMARY KEY, seq bigint, ordinal bigint, \
     ts_ms bigint, pending blob, materialized_seq bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.events (room text, bucket bigint, seq bigint, event blob, \
     PRIMARY KEY ((room, bucket), seq)) WITH CLUSTERING ORDER BY (seq DESC) \
     AND compaction = {'class': 'TimeWindowCompactionStrategy', \
     'compaction_window_unit': 'DAYS', 'compaction_window_size': 1}",
    "CREATE TABLE IF NOT EXISTS {ks}.buckets (room text, bucket bigint, first_seq bigint, \
     PRIMARY KEY (room, bucket))",
    "CREATE TABLE IF NOT EXISTS {ks}.messages (room text, bucket bigint, seq bigint, \
     message blob, PRIMARY KEY ((room, bucket), seq)) WITH CLUSTERING ORDER BY (seq DESC)",
    "CREATE TABLE IF NOT EXISTS {ks}.edits (room text, target_seq bigint, edit_seq bigint, \
     bucket bigint, PRIMARY KEY (room, target_seq, edit_seq))",
    "CREATE TABLE IF NOT EXISTS {ks}.retention (room text PRIMARY KEY, first_seq bigint, \
     ordinal bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.rooms (room text PRIMARY KEY, settings blob)",
    "CREATE TABLE IF NOT EXISTS {ks}.members (room text, user_id text, member blob, \
     PRIMARY KEY (room, user_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.user_rooms (user_id text, room text, role int, \
     joined_seq bigint, read_seq bigint, read_ordinal bigint, delivered_seq bigint, \
     muted_until_ms bigint, PRIMARY KEY (user_id, room))",
    "CREATE TABLE IF NOT EXISTS {ks}.dedupe (room text, sender text, client_msg_id text, \
     seq bigint, ordinal bigint, ts_ms bigint, content_hash blob, expires_at_ms bigint, \
     PRIMARY KEY ((room, sender, client_msg_id)))",
    "CREATE TABLE IF NOT EXISTS {ks}.blocks (user_id text, other_id text, \
     PRIMARY KEY (user_id, other_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.push_tokens (push_token text PRIMARY KEY, user_id text)",
    "CREATE TABLE IF NOT EXISTS {ks}.user_push_tokens (user_id text, push_token text, \
     platform int, device_id text, PRIMARY KEY (user_id, push_token))",
    "CREATE TABLE IF NOT EXISTS {ks}.revocations (user_id text PRIMARY KEY, before_ms bigint)",
    "CREATE TABLE IF NOT EXISTS {ks}.nodes (node_id text PRIMARY KEY, address text)",
    "CREATE TABLE IF NOT EXISTS {ks}.reactions (room text, user_id text, target_seq bigint, \
     emoji text, PRIMARY KEY ((room, user_id), target_seq, emoji))",
    "CREATE TABLE IF NOT EXISTS {ks}.contacts (user_id text, other_id text, state int, \
     since_ms bigint, PRIMARY KEY (user_id, other_id))",
    "CREATE TABLE IF NOT EXISTS {ks}.outbox (shard int, room text, from_seq bigint, \
     PRIMARY KEY (shard, room)) WITH gc_grace_seconds = 3600",
    "CREATE TABLE IF NOT EXISTS {ks}.reviews (room text, seq bigint, item blob, \
     PRIMARY KEY (room, seq))",
    "CREATE TABLE IF NOT EXISTS {ks}.open_reviews (part int, room text, seq bigint, \
     PRIMARY KEY (part, room, seq))",
];

/// Refuses keyspace names that CQL would need quoted (they are spliced into statements).
pub(super) fn check_keyspace_name(keyspace: &str) -> Result<(), ScyllaError> {
    let valid = !keyspace.is_empty()
        && keyspace.len() <= 48
        && keyspace
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(ScyllaError::InvalidOption(format!(
            "keyspace name {keyspace:?}: use 1-48 letters, digits or _"
        )))
    }
}

fn query_error(e: impl std::fmt::Display) -> ScyllaError {
    ScyllaError::Query(e.to_string())
}

/// Creates the keyspace (SimpleStrategy with `replication_factor`) and the tables, and
/// records the schema version and cluster metadata. Idempotent; returns the recorded metadata
/// (the first migrate's values win over `options`).
pub async fn migrate(
    options: &ScyllaOptions,
    replication_factor: u32,
) -> Result<ClusterMeta, ScyllaError> {
    if options.bucket_width_ms <= 0 || options.shards == 0 || replication_factor == 0 {
        return Err(ScyllaError::InvalidOption(format!(
            "bucket width {} ms, {} shards, replication factor {replication_factor}",
            options.bucket_width_ms, options.shards
        )));
    }
    let session = Box::pin(open_session(options)).await?;
    let ks = &options.keyspace;
    let create = format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
         {{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}"
    );
    session
        .query_unpaged(create, &[])
        .await
        .map_err(query_error)?;
    for table in TABLES {
        session
            .query_unpaged(table.replace("{ks}", ks), &[])
            .await
            .map_err(query_error)?;
    }
    // Keyspaces migrated before `materialized_seq` (one Paxos round per batch, issue 15 M4)
    // get the column; adding it again is refused, which is fine.
    let added = session
        .query_unpaged(
            format!("ALTER TABLE {ks}.heads ADD materialized_seq bigint"),
            &[],
        )
        .await;
    if let Err(err) = added {
        let text = err.to_string();
        if !text.contains("conflicts with an existing column") && !text.contains("already") {
            return Err(query_error(err));
        }
    }
    session
        .await_schema_agreement()
        .await
        .map_err(query_error)?;
    let recorded = [
        (META_SCHEMA_VERSION, SCHEMA_VERSION),
        (META_BUCKET_WIDTH, options.bucket_width_ms),
        (META_SHARDS, i64::from(options.shards)),
    ];
    for (name, value) in recorded {
        let insert = format!("INSERT INTO {ks}.meta (name, value) VALUES (?, ?) IF NOT EXISTS");
        session
            .query_unpaged(insert, (name, value))
            .await
            .map_err(query_error)?;
    }
    check(&session, ks).await
}

/// Checks that `keyspace` holds this build's schema and reads the cluster metadata.
pub(super) async fn check(session: &Session, keyspace: &str) -> Result<ClusterMeta, ScyllaError> {
    let tables = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ?",
            (keyspace,),
        )
        .await
        .map_err(query_error)?
        .into_rows_result()
        .map_err(query_error)?;
    let has_meta = tables
        .rows::<(String,)>()
        .map_err(query_error)?
        .filter_map(Result::ok)
        .any(|(name,)| name == "meta");
    if !has_meta {
        return Err(ScyllaError::NotMigrated {
            keyspace: keyspace.to_owned(),
        });
    }
    let mut select = Statement::new(format!("SELECT name, value FROM {keyspace}.meta"));
    select.set_serial_consistency(None);
    let rows = session
        .query_unpaged(select, &[])
        .await
        .map_err(query_error)?
        .into_rows_result()
        .map_err(query_error)?;
    let mut version = None;
    let mut width = None;
    let mut shards = None;
    for row in rows.rows::<Row>().map_err(query_error)? {
        let row = row.map_err(query_error)?;
        let (Some(Some(CqlValue::Text(name))), Some(Some(CqlValue::BigInt(value)))) =
            (row.columns.first(), row.columns.get(1))
        else {
            continue;
        };
        match name.as_str() {
            META_SCHEMA_VERSION => version = Some(*value),
            META_BUCKET_WIDTH => width = Some(*value),
            META_SHARDS => shards = Some(*value),
            _ => {}
        }
    }
    match version {
        None => {
            return Err(ScyllaError::NotMigrated {
                keyspace: keyspace.to_owned(),
            });
        }
        Some(SCHEMA_VERSION) => {}
        Some(found) => {
            return Err(ScyllaError::SchemaVersion {
                keyspace: keyspace.to_owned(),
                found,
                expected: SCHEMA_VERSION,
            });
        }
    }
    let bucket_width_ms = width
        .filter(|w| *w > 0)
        .ok_or_else(|| ScyllaError::Corrupt(format!("bucket width {width:?}")))?;
    let shards = shards
        .and_then(|s| u32::try_from(s).ok())
        .filter(|s| *s > 0)
        .ok_or_else(|| ScyllaError::Corrupt(format!("shard count {shards:?}")))?;
    Ok(ClusterMeta {
        bucket_width_ms,
        shards,
    })
}
