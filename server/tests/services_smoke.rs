//! Smoke test against the real backing services started by `scripts/services start`.
//!
//! Run it with the variables from `.services/env`:
//!
//! ```sh
//! scripts/services install && scripts/services start
//! set -a; . .services/env; set +a
//! cargo test -p chatwire-server --test services_smoke
//! ```
//!
//! A missing variable is a failure, never a skip: CI must not pass without the services.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lapin::options::{QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const OP_TIMEOUT: Duration = Duration::from_secs(20);

fn required_env(name: &str) -> String {
    match std::env::var(name) {
        Ok(value) if !value.trim().is_empty() => value,
        _ => panic!(
            "{name} is not set: start the services with `scripts/services start` and load them \
             with `set -a; . .services/env; set +a` before running this test"
        ),
    }
}

/// Runs `fut` with a deadline; panics with `what` if it does not finish in time.
async fn bounded<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(limit, fut).await {
        Ok(value) => value,
        Err(_) => panic!("{what}: no answer within {limit:?}"),
    }
}

fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn redis_answers_ping() {
    let url = required_env("CHATWIRE_TEST_REDIS_URL");
    let client = redis::Client::open(url.as_str())
        .unwrap_or_else(|e| panic!("CHATWIRE_TEST_REDIS_URL={url} is not a valid Redis URL: {e}"));
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(OP_TIMEOUT));
    let mut conn = bounded(
        "redis connect",
        CONNECT_TIMEOUT,
        client.get_multiplexed_async_connection_with_config(&config),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to Redis at {url}: {e}"));
    let pong: String = bounded(
        "redis PING",
        OP_TIMEOUT,
        redis::cmd("PING").query_async(&mut conn),
    )
    .await
    .unwrap_or_else(|e| panic!("PING to Redis at {url} failed: {e}"));
    assert_eq!(pong, "PONG");
}

#[tokio::test]
async fn rabbitmq_declares_and_deletes_a_queue() {
    let url = required_env("CHATWIRE_TEST_AMQP_URL");
    let conn = bounded(
        "amqp connect",
        CONNECT_TIMEOUT,
        Connection::connect(&url, ConnectionProperties::default()),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot connect to RabbitMQ at {url}: {e}"));
    let channel = bounded("amqp channel", OP_TIMEOUT, conn.create_channel())
        .await
        .expect("open an AMQP channel");

    let name = format!("chatwire-smoke-{}", unique_suffix());
    let queue = bounded(
        "queue.declare",
        OP_TIMEOUT,
        channel.queue_declare(
            name.as_str().into(),
            QueueDeclareOptions {
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        ),
    )
    .await
    .expect("declare a queue");
    assert_eq!(queue.name().as_str(), name);

    let remaining = bounded(
        "queue.delete",
        OP_TIMEOUT,
        channel.queue_delete(name.as_str().into(), QueueDeleteOptions::default()),
    )
    .await
    .expect("delete the queue");
    assert_eq!(remaining, 0, "fresh queue should hold no messages");

    bounded(
        "amqp close",
        OP_TIMEOUT,
        conn.close(200, "smoke test done".into()),
    )
    .await
    .expect("close the AMQP connection");
}

#[tokio::test]
async fn cassandra_is_release_5() {
    let nodes = required_env("CHATWIRE_TEST_CQL_NODES");
    let mut builder = SessionBuilder::new().connection_timeout(CONNECT_TIMEOUT);
    for node in nodes.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        builder = builder.known_node(node);
    }
    let session: Session = bounded("cql connect", CONNECT_TIMEOUT * 3, builder.build())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to Cassandra at {nodes}: {e}"));

    let result = bounded(
        "cql query",
        OP_TIMEOUT,
        session.query_unpaged("SELECT release_version FROM system.local", &[]),
    )
    .await
    .expect("query system.local");
    let (version,): (String,) = result
        .into_rows_result()
        .expect("system.local returns rows")
        .single_row()
        .expect("system.local has exactly one row with a text release_version");
    assert!(
        version.starts_with("5."),
        "expected Apache Cassandra 5.x, server reports {version}"
    );
}
