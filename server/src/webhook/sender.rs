//! One signed webhook POST: the JSON envelope of an event, the signature and event id headers,
//! and the outcome (2xx is success, anything else a failure to retry).
//!
//! The envelope:
//!
//! ```json
//! {"id": "g:team:42:message.created", "kind": "message.created", "lane": "high",
//!  "roomId": "g:team", "seq": 42, "occurredAtMs": 1700000000000, "attempt": 1,
//!  "data": { ...the event's payload (proto3 JSON of the RoomEvent for log events)... }}
//! ```
//!
//! Plain `http://` only: this build carries no TLS stack, so put a TLS-terminating proxy in front
//! of an `https` receiver (or enable a reqwest TLS feature).

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value, json};

use super::signing::{EVENT_ID_HEADER, SIGNATURE_HEADER, SigningKeys};
use crate::backend::events::Delivery;

/// The envelope of a delivery, as a JSON object (consumers may add fields before sending).
pub fn envelope(delivery: &Delivery) -> Map<String, Value> {
    let event = &delivery.event;
    // The payload is JSON by contract; anything else travels as a string rather than being lost.
    let data = serde_json::from_slice::<Value>(&event.payload)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&event.payload).into_owned()));
    let mut map = Map::new();
    map.insert("id".into(), json!(event.id));
    map.insert("kind".into(), json!(event.kind));
    map.insert("lane".into(), json!(event.lane.as_str()));
    if let Some(room) = &event.room_id {
        map.insert("roomId".into(), json!(room));
    }
    if let Some(seq) = event.seq {
        map.insert("seq".into(), json!(seq));
    }
    map.insert("occurredAtMs".into(), json!(event.occurred_at_ms));
    map.insert("attempt".into(), json!(delivery.attempt));
    map.insert("data".into(), data);
    map
}

/// A webhook that cannot be set up (a configuration mistake).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// Not an absolute `http://` URL.
    #[error("invalid webhook url {0:?}: {1}")]
    InvalidUrl(String, String),
    /// The HTTP client could not be built.
    #[error("webhook client: {0}")]
    Client(String),
}

/// Why one POST failed; the event is retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The receiver answered with a status other than 2xx.
    #[error("webhook answered {0}")]
    Status(u16),
    /// No answer: connection refused, timeout, reset.
    #[error("webhook unreachable: {0}")]
    Transport(String),
}

/// Sends signed POSTs to one URL.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
    keys: Arc<SigningKeys>,
}

impl WebhookSender {
    /// A sender to `url` (absolute, `http://`), signing with `keys`, giving up on a request
    /// after `timeout`.
    pub fn new(url: &str, keys: Arc<SigningKeys>, timeout: Duration) -> Result<Self, WebhookError> {
        let invalid = |why: &str| WebhookError::InvalidUrl(url.to_owned(), why.to_owned());
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if parsed.scheme() != "http" {
            return Err(invalid("only http:// is supported (no TLS in this build)"));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| WebhookError::Client(e.to_string()))?;
        Ok(Self {
            client,
            url: parsed,
            keys,
        })
    }

    /// The target URL.
    pub fn url(&self) -> &str {
        self.url.as_str()
    }

    /// POSTs `body` (JSON) for event `event_id`, signed at `now_ms`.
    pub async fn post(
        &self,
        event_id: &str,
        body: Vec<u8>,
        now_ms: i64,
    ) -> Result<(), DeliveryError> {
        let signature = self.keys.sign(&body, now_ms);
        let response = self
            .client
            .post(self.url.clone())
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header(EVENT_ID_HEADER, event_id)
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Transport(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status(status.as_u16()))
        }
    }
}
