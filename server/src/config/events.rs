//! The `[events]` section: the built-in downstream consumers (docs/architecture.md "Downstream
//! events") and their retries.
//!
//! ```toml
//! [events]
//! retry_tiers_ms = [1000, 10000, 60000]   # delays before the 2nd, 3rd, 4th try; then the DLQ
//!
//! [events.push]                            # offline push: new messages for offline members
//! url = "https://push-gateway.internal:8081/chatwire"
//! keys = [{ id = "2026-01", secret_file = "/etc/chatwire/push-hook-2026-01" }]
//!
//! [events.app]                             # app webhook: every room log event
//! url = "https://app.internal:9000/chatwire-events"
//! timeout_ms = 5000
//! keys = [
//!   { id = "2025-06", secret = "an old secret, still accepted by the receiver.." },
//!   { id = "2026-01", secret = "the newest key, last in the list, signs........" },
//! ]
//! ```
//!
//! Neither consumer is configured by default: then the writers publish nothing and no queue
//! file is created. Secrets are never printed (`Debug` shows key ids only).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};

/// Default retry tiers: 1 s, 10 s, 1 min, then the dead-letter queue.
pub const DEFAULT_RETRY_TIERS_MS: [u64; 3] = [1_000, 10_000, 60_000];
/// Default time a webhook request may take before it counts as failed.
pub const DEFAULT_WEBHOOK_TIMEOUT_MS: u64 = 5_000;
/// Longest webhook timeout (one minute).
pub const MAX_WEBHOOK_TIMEOUT_MS: u64 = 60_000;
/// Most retry tiers.
pub const MAX_RETRY_TIERS: usize = 16;
/// Longest single retry delay (one day).
pub const MAX_RETRY_TIER_MS: u64 = 24 * 3_600_000;
/// Shortest signing secret, in bytes (the HMAC-SHA256 output size).
pub const MIN_WEBHOOK_SECRET_BYTES: usize = 32;

/// Downstream events: which built-in consumers run, and how failed deliveries are retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// The offline push webhook (a service of the app's that fronts APNs and FCM): new
    /// messages for members with no live session. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub push: Option<WebhookConfig>,
    /// The app webhook: every room log event. Default: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<WebhookConfig>,
    /// The delay before each retry of a failed delivery, in ms; after the last tier fails the
    /// event goes to the dead-letter queue. So an event is tried `len + 1` times; an empty list
    /// dead-letters on the first failure. Applies to both consumers. Default
    /// `[1000, 10000, 60000]`.
    pub retry_tiers_ms: Vec<u64>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            push: None,
            app: None,
            retry_tiers_ms: DEFAULT_RETRY_TIERS_MS.to_vec(),
        }
    }
}

impl EventsConfig {
    /// Checks URLs, timeouts, key lists and tiers (no file is read).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(push) = &self.push {
            push.validate("events.push")?;
        }
        if let Some(app) = &self.app {
            app.validate("events.app")?;
        }
        if self.retry_tiers_ms.len() > MAX_RETRY_TIERS {
            return Err(invalid(format!(
                "events.retry_tiers_ms has {} tiers, at most {MAX_RETRY_TIERS}",
                self.retry_tiers_ms.len()
            )));
        }
        if let Some(tier) = self.retry_tiers_ms.iter().find(|&&t| t > MAX_RETRY_TIER_MS) {
            return Err(invalid(format!(
                "events.retry_tiers_ms holds {tier}, at most {MAX_RETRY_TIER_MS} (one day)"
            )));
        }
        Ok(())
    }

    /// The retry delays as the queue takes them.
    pub fn retry_tiers(&self) -> Vec<i64> {
        self.retry_tiers_ms
            .iter()
            .map(|&t| i64::try_from(t).unwrap_or(i64::MAX))
            .collect()
    }

    /// True when at least one consumer is configured.
    pub fn any(&self) -> bool {
        self.push.is_some() || self.app.is_some()
    }
}

/// Is the URL's host a loopback address (`localhost`, 127.0.0.0/8, `::1`)?
fn is_loopback(url: &reqwest::Url) -> bool {
    let host = url.host_str().unwrap_or_default();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// One webhook: where to POST, how long to wait, and the signing keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The receiver, an absolute `https://` URL; `http://` only to a loopback address or with
    /// `allow_http`. Redirects are never followed. Required.
    pub url: String,
    /// Allow a plain `http://` receiver that is not on loopback (a private network you trust).
    /// Default false.
    pub allow_http: bool,
    /// Extra certificate authorities (PEM or DER file) trusted for this receiver, besides the
    /// system's: for a receiver with a private CA.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long one request may take before it counts as failed (and is retried), in ms.
    /// Default 5000, at most 60 000.
    pub timeout_ms: u64,
    /// Signing keys, oldest first; the last one signs, every one is kept so a receiver can be
    /// given a new key before it signs. At least one.
    pub keys: Vec<WebhookKeyConfig>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            allow_http: false,
            ca_file: None,
            timeout_ms: DEFAULT_WEBHOOK_TIMEOUT_MS,
            keys: Vec::new(),
        }
    }
}

impl WebhookConfig {
    /// A webhook to `url` signing with one key, with the default timeout.
    pub fn new(
        url: impl Into<String>,
        key_id: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            allow_http: false,
            ca_file: None,
            timeout_ms: DEFAULT_WEBHOOK_TIMEOUT_MS,
            keys: vec![WebhookKeyConfig {
                id: key_id.into(),
                secret: Some(secret.into()),
                secret_file: None,
            }],
        }
    }

    /// Checks the section named `name` (`events.push`, `events.app`).
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        if self.url.is_empty() {
            return Err(invalid(format!("{name}.url is missing")));
        }
        let url = reqwest::Url::parse(&self.url)
            .map_err(|e| invalid(format!("{name}.url {:?} is not a URL: {e}", self.url)))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(invalid(format!("{name}.url {:?} has no host", self.url)));
        }
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http || is_loopback(&url) => {}
            "http" => {
                return Err(invalid(format!(
                    "{name}.url {:?}: plain http:// is only allowed to a loopback address; use \
                     https://, or set {name}.allow_http = true for a network you trust",
                    self.url
                )));
            }
            other => {
                return Err(invalid(format!(
                    "{name}.url {:?}: scheme {other:?}, use https://",
                    self.url
                )));
            }
        }
        if self.timeout_ms == 0 || self.timeout_ms > MAX_WEBHOOK_TIMEOUT_MS {
            return Err(invalid(format!(
                "{name}.timeout_ms is {}, between 1 and {MAX_WEBHOOK_TIMEOUT_MS}",
                self.timeout_ms
            )));
        }
        if self.keys.is_empty() {
            return Err(invalid(format!(
                "{name}.keys is empty: at least one signing key {{ id, secret }} is needed"
            )));
        }
        for (i, key) in self.keys.iter().enumerate() {
            let at = format!("{name}.keys[{i}]");
            let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
            if key.id.is_empty() || !key.id.chars().all(valid) {
                return Err(invalid(format!(
                    "{at}.id {:?}: use ASCII letters, digits, '-', '_' and '.'",
                    key.id
                )));
            }
            if self.keys[..i].iter().any(|k| k.id == key.id) {
                return Err(invalid(format!(
                    "{name}.keys: id {:?} appears twice",
                    key.id
                )));
            }
            match (&key.secret, &key.secret_file) {
                (Some(secret), None) => {
                    if secret.len() < MIN_WEBHOOK_SECRET_BYTES {
                        return Err(invalid(format!(
                            "{at}.secret (id {:?}) is {} bytes, at least \
                             {MIN_WEBHOOK_SECRET_BYTES}",
                            key.id,
                            secret.len()
                        )));
                    }
                }
                (None, Some(file)) if !file.as_os_str().is_empty() => {}
                _ => {
                    return Err(invalid(format!(
                        "{at} (id {:?}): set exactly one of secret and secret_file",
                        key.id
                    )));
                }
            }
        }
        Ok(())
    }

    /// The timeout as a duration.
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.timeout_ms)
    }
}

/// A webhook signing key. Its `Debug` shows the id and where the secret comes from, never the
/// secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookKeyConfig {
    /// The key id, sent as `kid` in the signature header so a receiver picks the right
    /// secret: ASCII letters, digits, `-`, `_`, `.`.
    pub id: String,
    /// The secret, at least 32 bytes. Prefer `secret_file` outside development.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// A file holding the secret instead: its bytes, less one trailing newline, at least 32
    /// of them. Read at start-up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_file: Option<PathBuf>,
}

impl fmt::Debug for WebhookKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookKeyConfig")
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("secret_file", &self.secret_file)
            .finish()
    }
}

impl WebhookKeyConfig {
    /// The secret's bytes: `secret`, or the content of `secret_file` less one trailing
    /// newline (`\n` or `\r\n`). Reads the file; `name` is the section, for messages.
    pub fn secret_bytes(&self, name: &str) -> Result<Vec<u8>, ConfigError> {
        let bytes = match (&self.secret, &self.secret_file) {
            (Some(secret), _) => secret.as_bytes().to_vec(),
            (None, Some(file)) => read_secret(file).map_err(|e| {
                invalid(format!(
                    "{name}.keys (id {:?}): cannot read secret_file {}: {e}",
                    self.id,
                    file.display()
                ))
            })?,
            (None, None) => {
                return Err(invalid(format!(
                    "{name}.keys (id {:?}): no secret",
                    self.id
                )));
            }
        };
        if bytes.len() < MIN_WEBHOOK_SECRET_BYTES {
            return Err(invalid(format!(
                "{name}.keys (id {:?}): the secret is {} bytes, at least \
                 {MIN_WEBHOOK_SECRET_BYTES}",
                self.id,
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

fn read_secret(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::{Config, ConfigSources, load};

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn load_file(text: &str) -> Result<Config, ConfigError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        load(&ConfigSources {
            file: Some(f.path().to_owned()),
            ..Default::default()
        })
    }

    fn message(text: &str) -> String {
        load_file(text).unwrap_err().to_string()
    }

    #[test]
    fn defaults_have_no_consumer_and_three_tiers() {
        let events = EventsConfig::default();
        assert_eq!(events.push, None);
        assert_eq!(events.app, None);
        assert!(!events.any());
        assert_eq!(events.retry_tiers_ms, vec![1_000, 10_000, 60_000]);
        assert_eq!(events.retry_tiers(), vec![1_000, 10_000, 60_000]);
        assert_eq!(WebhookConfig::default().timeout_ms, 5_000);
        events.validate().unwrap();
    }

    #[test]
    fn sections_parse_from_the_file() {
        let c = load_file(&format!(
            "[events]\nretry_tiers_ms = [1, 2]\n\
             [events.app]\nurl = \"http://127.0.0.1:9000/hook\"\n\
             keys = [{{ id = \"k1\", secret = \"{SECRET}\" }}, \
                     {{ id = \"k2\", secret_file = \"/etc/k2\" }}]\n\
             [events.push]\nurl = \"https://push.internal/p\"\ntimeout_ms = 250\n\
             keys = [{{ id = \"p\", secret = \"{SECRET}\" }}]\n"
        ))
        .unwrap();
        assert_eq!(c.events.retry_tiers_ms, vec![1, 2]);
        let app = c.events.app.expect("app");
        assert_eq!(app.url, "http://127.0.0.1:9000/hook");
        assert_eq!(app.timeout_ms, DEFAULT_WEBHOOK_TIMEOUT_MS);
        assert_eq!(app.keys.len(), 2);
        assert_eq!(app.keys[1].secret_file, Some(PathBuf::from("/etc/k2")));
        let push = c.events.push.expect("push");
        assert_eq!(push.timeout_ms, 250);
        assert_eq!(push.keys[0].id, "p");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let msg = message(&format!(
            "[events.app]\nurl = \"https://a/\"\nkeys = [{{ id = \"k\", secret = \"{SECRET}\" }}]\n\
             timout_ms = 5\n"
        ));
        assert!(msg.contains("timout_ms"), "{msg}");
        let msg = message(&format!(
            "[events.app]\nurl = \"https://a/\"\nkeys = [{{ id = \"k\", secrt = \"{SECRET}\" }}]\n"
        ));
        assert!(msg.contains("secrt"), "{msg}");
        assert!(message("[events]\nretries = 3\n").contains("retries"));
    }

    #[test]
    fn validation_names_the_key() {
        let key = format!("keys = [{{ id = \"k\", secret = \"{SECRET}\" }}]");
        let cases = [
            (format!("[events.app]\n{key}\n"), "events.app.url"),
            (
                format!("[events.app]\nurl = \"http://a.example/\"\n{key}\n"),
                "events.app.url",
            ),
            (
                format!("[events.push]\nurl = \"not a url\"\n{key}\n"),
                "events.push.url",
            ),
            (
                format!("[events.app]\nurl = \"https://a/\"\ntimeout_ms = 0\n{key}\n"),
                "events.app.timeout_ms",
            ),
            (
                "[events.app]\nurl = \"https://a/\"\n".to_owned(),
                "events.app.keys",
            ),
            (
                "[events.app]\nurl = \"https://a/\"\nkeys = [{ id = \"k\", secret = \"short\" }]\n"
                    .to_owned(),
                "events.app.keys[0].secret",
            ),
            (
                format!(
                    "[events.app]\nurl = \"https://a/\"\n\
                     keys = [{{ id = \"a,b\", secret = \"{SECRET}\" }}]\n"
                ),
                "events.app.keys[0].id",
            ),
            (
                format!(
                    "[events.app]\nurl = \"https://a/\"\nkeys = [{{ id = \"k\", secret = \
                     \"{SECRET}\" }}, {{ id = \"k\", secret = \"{SECRET}\" }}]\n"
                ),
                "events.app.keys: id \"k\" appears twice",
            ),
            (
                format!(
                    "[events.app]\nurl = \"https://a/\"\nkeys = [{{ id = \"k\", secret = \
                     \"{SECRET}\", secret_file = \"/f\" }}]\n"
                ),
                "events.app.keys[0]",
            ),
            (
                "[events.app]\nurl = \"https://a/\"\nkeys = [{ id = \"k\" }]\n".to_owned(),
                "exactly one of secret and secret_file",
            ),
            (
                "[events]\nretry_tiers_ms = [1, 86400001]\n".to_owned(),
                "events.retry_tiers_ms",
            ),
        ];
        for (text, expected) in cases {
            let msg = message(&text);
            assert!(msg.contains(expected), "{text}: {msg}");
        }
    }

    #[test]
    fn env_sets_tiers_and_overrides_a_webhook_url() {
        let env = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect::<Vec<_>>()
        };
        let c = load(&ConfigSources {
            env: env(&[("CHATWIRE_EVENTS__RETRY_TIERS_MS", "5, 50")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.events.retry_tiers_ms, vec![5, 50]);
        let e = load(&ConfigSources {
            env: env(&[("CHATWIRE_EVENTS__RETRY_TIERS_MS", "5,soon")]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(
            e.to_string().contains("CHATWIRE_EVENTS__RETRY_TIERS_MS"),
            "{e}"
        );

        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(
            f,
            "[events.app]\nurl = \"https://a/\"\nkeys = [{{ id = \"k\", secret = \"{SECRET}\" }}]\n"
        )
        .unwrap();
        let c = load(&ConfigSources {
            file: Some(f.path().to_owned()),
            env: env(&[
                ("CHATWIRE_EVENTS__APP__URL", "https://b:81/x"),
                ("CHATWIRE_EVENTS__APP__TIMEOUT_MS", "900"),
            ]),
            ..Default::default()
        })
        .unwrap();
        let app = c.events.app.expect("app");
        assert_eq!(app.url, "https://b:81/x");
        assert_eq!(app.timeout_ms, 900);
        assert_eq!(app.keys[0].id, "k");
        // A webhook from the environment alone has no keys: refused, naming the key.
        let e = load(&ConfigSources {
            env: env(&[("CHATWIRE_EVENTS__PUSH__URL", "https://b/")]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("events.push.keys"), "{e}");
    }

    #[test]
    fn secrets_come_from_files_and_never_print() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "{SECRET}").unwrap();
        let from_file = WebhookKeyConfig {
            id: "k".into(),
            secret: None,
            secret_file: Some(f.path().to_owned()),
        };
        assert_eq!(
            from_file.secret_bytes("events.app").unwrap(),
            SECRET.as_bytes(),
            "one trailing newline is dropped"
        );
        let mut short = tempfile::NamedTempFile::new().unwrap();
        write!(short, "tiny").unwrap();
        let short = WebhookKeyConfig {
            secret_file: Some(short.path().to_owned()),
            ..from_file.clone()
        };
        let e = short.secret_bytes("events.app").unwrap_err().to_string();
        assert!(
            e.contains("events.app.keys") && e.contains("at least 32"),
            "{e}"
        );
        let missing = WebhookKeyConfig {
            secret_file: Some("/nonexistent/secret".into()),
            ..from_file
        };
        assert!(missing.secret_bytes("events.push").is_err());

        let hook = WebhookConfig::new("https://a/", "k1", SECRET);
        hook.validate("events.app").unwrap();
        let debug = format!("{hook:?}");
        assert!(!debug.contains(SECRET) && debug.contains("k1"), "{debug}");
    }
}
