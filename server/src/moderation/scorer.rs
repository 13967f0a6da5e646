//! The optional external scorer: `POST {url}` with `{"room_id", "sender", "text"}` as JSON,
//! answered with `{"score": N}` (0 to 100). The stage bounds each call with its timeout.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// Scores a message's text, 0 (fine) to 100 (certainly abusive).
#[async_trait]
pub trait Scorer: Send + Sync + Debug {
    /// The score, or why there is none.
    async fn score(&self, room_id: &str, sender: &str, text: &str) -> Result<u32, String>;
}

#[derive(Serialize)]
struct Request<'a> {
    room_id: &'a str,
    sender: &'a str,
    text: &'a str,
}

#[derive(Deserialize)]
struct Answer {
    score: u32,
}

/// The scorer over HTTPS (plain `http://` only to a loopback address).
#[derive(Debug, Clone)]
pub struct HttpScorer {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl HttpScorer {
    /// A scorer at `url`; each request gives up after `timeout`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("moderation.scorer.url: {e}"))?;
        let host = parsed.host_str().unwrap_or_default();
        let loopback = host == "localhost"
            || host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => {
                return Err(
                    "moderation.scorer.url: use https:// (http:// only to loopback)".into(),
                );
            }
        }
        let tls = crate::webhook::sender::tls_config(None).map_err(|e| e.to_string())?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            url: parsed,
        })
    }
}

#[async_trait]
impl Scorer for HttpScorer {
    async fn score(&self, room_id: &str, sender: &str, text: &str) -> Result<u32, String> {
        let response = self
            .client
            .post(self.url.clone())
            .json(&Request {
                room_id,
                sender,
                text,
            })
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("scorer answered {}", response.status()));
        }
        let answer: Answer = response.json().await.map_err(|e| e.to_string())?;
        Ok(answer.score.min(100))
    }
}
