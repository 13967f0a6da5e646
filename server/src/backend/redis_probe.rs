//! Readiness of Redis where it serves only the rate limiter (a single node with `redis.url`):
//! degraded, never critical, while it does not answer a PING. In a cluster the fan-out's probe
//! covers Redis.

use std::time::Duration;

use async_trait::async_trait;

use super::health::Probe;

/// How long a PING may take.
const PING_TIMEOUT: Duration = Duration::from_secs(1);

/// Pings Redis on a fresh connection per check (checks come from `/readyz` and the health
/// report, seconds apart).
#[derive(Debug)]
pub struct RedisProbe {
    client: redis::Client,
}

impl RedisProbe {
    /// A probe of the Redis at `url`.
    pub fn new(url: &str) -> Result<Self, String> {
        let client = redis::Client::open(url).map_err(|e| e.to_string())?;
        Ok(Self { client })
    }
}

#[async_trait]
impl Probe for RedisProbe {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn critical(&self) -> bool {
        false
    }

    async fn check(&self) -> Result<(), String> {
        let ping = async {
            let mut connection = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING")
                .query_async::<String>(&mut connection)
                .await
        };
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(format!("not answering ({err})")),
            Err(_) => Err("not answering (timed out)".into()),
        }
    }
}
