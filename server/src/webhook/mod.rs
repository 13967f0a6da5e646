//! Built-in downstream consumers (docs/architecture.md "Downstream events"): app webhooks and the
//! offline push webhook, each reading its own [`EventQueue`](crate::backend::events::EventQueue)
//! and POSTing signed JSON.
//!
//! ```text
//!  EventQueue ──lease──▶ WebhookConsumer ──Handler──▶ WebhookSender ──signed POST──▶ receiver
//!      ▲                      │                        (AppWebhook: every event;
//!      └──── ack (2xx) / nack (else: retry tiers, then DLQ)   OfflinePush: new messages
//!                                                             for offline members)
//! ```
//!
//! - `signing`: HMAC-SHA256 signatures with key ids for rotation (no I/O).
//! - `sender`: the JSON envelope and one signed POST.
//! - `consumer`: the lease / handle / ack loop, with an injected clock.
//! - `push`: who gets an offline push, behind a backend-agnostic lookup trait.
//! - `setup`: the configured consumers of a server, their queues and tasks.
//!
//! Delivery is at least once and, across retries, not in order: receivers dedupe by the
//! `Chatwire-Event-Id` header and order a room's events by `seq`.

pub mod consumer;
pub mod push;
pub mod sender;
pub mod setup;
pub mod signing;

pub use consumer::{AppWebhook, Handler, Polled, WebhookConsumer};
pub use push::{OfflinePush, PushAudience, PushDevice, Recipient, StoreAudience};
pub use sender::{DeliveryError, WebhookError, WebhookSender, envelope};
pub use setup::Consumers;
pub use signing::{
    EVENT_ID_HEADER, KeyError, SIGNATURE_HEADER, SignatureError, SigningKey, SigningKeys,
};
