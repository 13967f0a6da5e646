//! The AMQP plumbing this module needs: connections with a short heartbeat, a confirm-mode
//! channel, and publishing with `mandatory` where a returned (unroutable) message is a
//! failure even though the broker then confirms it. Kept private to the module; the command
//! pipeline has its own copy in `backend::amqp` until the two are merged.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::topology::short;
use crate::backend::events::QueueError;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A driver error as the trait's retryable failure.
pub(super) fn broker(err: lapin::Error) -> QueueError {
    QueueError::Unavailable(format!("rabbitmq: {err}"))
}

/// The URL with `heartbeat` set unless it sets one itself.
pub(super) fn with_heartbeat(url: &str, heartbeat_s: u16) -> String {
    if url.contains("heartbeat=") {
        return url.to_owned();
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}heartbeat={heartbeat_s}")
}

/// One connection with one channel, in confirm mode when `confirms`.
#[derive(Debug)]
pub(super) struct Link {
    /// Kept so the connection lives as long as the channel (dropping it closes both).
    pub(super) conn: Connection,
    /// The channel.
    pub(super) channel: Channel,
}

impl Link {
    /// Connects (named `name` in the broker's UI) and opens the channel.
    pub(super) async fn open(
        url: &str,
        name: &str,
        heartbeat_s: u16,
        confirms: bool,
    ) -> Result<Self, QueueError> {
        let props = ConnectionProperties::default().with_connection_name(name.into());
        let url = with_heartbeat(url, heartbeat_s);
        let conn =
            match tokio::time::timeout(CONNECT_TIMEOUT, Connection::connect(&url, props)).await {
                Ok(conn) => conn.map_err(broker)?,
                Err(_) => {
                    return Err(QueueError::Unavailable(
                        "rabbitmq: connect timed out".into(),
                    ));
                }
            };
        let channel = conn.create_channel().await.map_err(broker)?;
        if confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(broker)?;
        }
        Ok(Self { conn, channel })
    }

    /// Whether the connection and channel still work.
    pub(super) fn usable(&self) -> bool {
        self.conn.status().connected() && self.channel.status().connected()
    }

    /// Closes the connection (its channel with it); errors are moot at this point.
    pub(super) async fn close(self) {
        let _ = self.conn.close(200, "closing".into()).await;
    }

    /// Publishes every message with `mandatory` and waits for all the confirms. Messages
    /// reach their queues in order; any nack or return fails the whole call (the messages
    /// before it may be queued: callers dedupe by event id).
    pub(super) async fn publish_all(&self, messages: Vec<Outgoing>) -> Result<(), QueueError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        let mut confirms = Vec::with_capacity(messages.len());
        for message in messages {
            let confirm = self
                .channel
                .basic_publish(
                    short(&message.exchange)?,
                    short(&message.routing_key)?,
                    options,
                    &message.body,
                    message.properties,
                )
                .await
                .map_err(broker)?;
            confirms.push((message.routing_key, confirm));
        }
        let mut failure = None;
        for (routing_key, confirm) in confirms {
            let outcome = match confirm.await.map_err(broker)? {
                Confirmation::Ack(None) => continue,
                Confirmation::Ack(Some(returned)) => format!(
                    "returned unroutable ({} {}): no queue bound for {routing_key:?}",
                    returned.reply_code, returned.reply_text
                ),
                Confirmation::Nack(_) => format!("the broker refused {routing_key:?} (nack)"),
                Confirmation::NotRequested => "publisher confirms are off".to_owned(),
            };
            failure.get_or_insert(outcome);
        }
        match failure {
            None => Ok(()),
            Some(why) => Err(QueueError::Unavailable(format!("rabbitmq publish: {why}"))),
        }
    }
}

/// One message to publish.
#[derive(Debug, Clone)]
pub(super) struct Outgoing {
    /// `""` for the default exchange (straight to the queue named by the routing key).
    pub(super) exchange: String,
    /// The routing key.
    pub(super) routing_key: String,
    /// The properties (headers included).
    pub(super) properties: BasicProperties,
    /// The body.
    pub(super) body: Vec<u8>,
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
            with_heartbeat("amqp://h/%2f?heartbeat=30", 5),
            "amqp://h/%2f?heartbeat=30"
        );
    }
}
