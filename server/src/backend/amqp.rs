//! Shared AMQP (RabbitMQ, lapin 4.x) helpers for the distributed backends: connecting with a
//! short heartbeat, channels in confirm mode, and publishing with `mandatory` where a returned
//! (unroutable) message counts as a failure even though the broker then confirms it.
//!
//! Each backend opens separate connections for publishing and for consuming (docs/architecture.md
//! "Room writers"): a publisher blocked by the broker's flow control must not stall the acks of a
//! consumer. Driver types stay inside the crate; nothing here is part of the public API.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

/// How long connecting may take before it counts as a failure.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an AMQP operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AmqpError {
    /// The broker could not be reached or refused the connection.
    #[error("cannot connect to the broker: {0}")]
    Connect(String),
    /// A channel operation failed (the channel or connection is broken).
    #[error("broker operation failed: {0}")]
    Broker(String),
    /// The broker refused to take the message (a full queue with `reject-publish`).
    #[error("the broker refused the message")]
    Nacked,
    /// No queue took the message (`mandatory` publish returned).
    #[error("the message could not be routed: {0}")]
    Returned(String),
}

impl From<lapin::Error> for AmqpError {
    fn from(err: lapin::Error) -> Self {
        AmqpError::Broker(err.to_string())
    }
}

/// The URL with `heartbeat` set to `heartbeat_s` unless the URL sets one itself.
pub(crate) fn with_heartbeat(url: &str, heartbeat_s: u16) -> String {
    if url.contains("heartbeat=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}heartbeat={heartbeat_s}")
}

/// Opens a connection named `name` (shown in the broker's management UI) with the given
/// heartbeat, so a hung peer is noticed within about two heartbeats.
pub(crate) async fn connect(
    url: &str,
    name: &str,
    heartbeat_s: u16,
) -> Result<Connection, AmqpError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let url = with_heartbeat(url, heartbeat_s);
    match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&url, props)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(err)) => Err(AmqpError::Connect(err.to_string())),
        Err(_) => Err(AmqpError::Connect("timed out".into())),
    }
}

/// A new channel in confirm mode: every publish on it is acked or nacked by the broker.
pub(crate) async fn confirm_channel(conn: &Connection) -> Result<Channel, AmqpError> {
    let channel = conn.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Publishes with `mandatory` on a confirm channel and returns once the message is on the
/// wire; the returned future settles with the broker's confirm (see [`settle`]). Messages
/// published on one channel reach a queue in the order of these calls.
pub(crate) async fn publish_mandatory(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<lapin::PublisherConfirm, AmqpError> {
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    Ok(channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            options,
            payload,
            properties,
        )
        .await?)
}

/// Waits for a publish's confirm: an ack without a returned message is success; a nack is
/// [`AmqpError::Nacked`]; an ack carrying a returned message is [`AmqpError::Returned`].
pub(crate) async fn settle(confirm: lapin::PublisherConfirm) -> Result<(), AmqpError> {
    match confirm.await? {
        Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(AmqpError::Returned(format!(
            "{} {}",
            returned.reply_code, returned.reply_text
        ))),
        Confirmation::Nack(_) => Err(AmqpError::Nacked),
    }
}

/// Publishes with `mandatory` and waits for the confirm ([`publish_mandatory`] + [`settle`]).
// For publishers that wait on each message (the event lanes); the pipeline settles in the
// background instead.
#[allow(dead_code)]
pub(crate) async fn publish_confirmed(
    channel: &Channel,
    exchange: &str,
    routing_key: &str,
    payload: &[u8],
    properties: BasicProperties,
) -> Result<(), AmqpError> {
    let confirm = publish_mandatory(channel, exchange, routing_key, payload, properties).await?;
    settle(confirm).await
}

#[cfg(test)]
mod tests {
    use super::with_heartbeat;

    #[test]
    fn heartbeat_is_added_once() {
        assert_eq!(
            with_heartbeat("amqp://h:5672/%2f", 5),
            "amqp://h:5672/%2f?heartbeat=5"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?frame_max=8192", 5),
            "amqp://h/%2f?frame_max=8192&heartbeat=5"
        );
        assert_eq!(
            with_heartbeat("amqp://h/%2f?heartbeat=30", 5),
            "amqp://h/%2f?heartbeat=30"
        );
    }
}
