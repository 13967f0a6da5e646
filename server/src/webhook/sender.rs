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
//! `https://` receivers are reached with rustls on the ring provider (the server's only TLS
//! stack), trusting the system's certificate authorities plus the consumer's `ca_file`; plain
//! `http://` only where the configuration allows it (loopback, or `allow_http`). Redirects are
//! never followed: a 3xx is a failed delivery, retried like any other, so a receiver cannot
//! bounce signed events to another host.

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

/// The TLS client configuration: ring, the system's roots, plus `ca_file`'s certificates.
pub(crate) fn tls_config(
    ca_file: Option<&std::path::Path>,
) -> Result<rustls::ClientConfig, WebhookError> {
    let client = |why: String| WebhookError::Client(why);
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: a `ca_file` may be all a receiver needs.
    let system = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(system.certs);
    if let Some(path) = ca_file {
        let bytes = std::fs::read(path)
            .map_err(|e| client(format!("cannot read ca_file {}: {e}", path.display())))?;
        let certs = crate::http::tls::certificate_chain_der(&bytes)
            .map_err(|e| client(format!("ca_file {}: {e}", path.display())))?;
        let (added, _) = roots.add_parsable_certificates(
            certs
                .into_iter()
                .map(rustls::pki_types::CertificateDer::from),
        );
        if added == 0 {
            return Err(client(format!(
                "ca_file {} holds no usable certificate",
                path.display()
            )));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| client(e.to_string()))
        .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
}

/// Sends signed POSTs to one URL.
#[derive(Debug, Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    url: reqwest::Url,
    keys: Arc<SigningKeys>,
}

impl WebhookSender {
    /// A sender to `url` (absolute; the configuration decided whether plain `http://` is
    /// allowed), signing with `keys`, giving up on a request after `timeout`, trusting the
    /// system's certificate authorities and those of `ca_file` for `https://`.
    pub fn new(
        url: &str,
        keys: Arc<SigningKeys>,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, WebhookError> {
        let invalid = |why: &str| WebhookError::InvalidUrl(url.to_owned(), why.to_owned());
        let parsed = reqwest::Url::parse(url).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid("use https:// (or http:// where allowed)"));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls_config(ca_file)?)
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
