//! Per-address connection caps: a count of live WebSocket sessions per client IP.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Live sessions per client address.
#[derive(Debug, Default)]
pub struct ConnectionCounter {
    counts: Mutex<HashMap<IpAddr, usize>>,
}

/// One counted connection; the count drops with it.
#[derive(Debug)]
pub struct ConnectionGuard {
    counter: Arc<ConnectionCounter>,
    ip: IpAddr,
}

impl ConnectionCounter {
    /// Counts a new connection from `ip`, unless `max` are already live.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ConnectionGuard> {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = counts.entry(ip).or_insert(0);
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(ConnectionGuard {
            counter: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        let mut counts = self
            .counter
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_counts_live_connections_only() {
        let counter = Arc::new(ConnectionCounter::default());
        let ip: IpAddr = [127, 0, 0, 1].into();
        let first = counter.acquire(ip, 2).expect("first");
        let _second = counter.acquire(ip, 2).expect("second");
        assert!(counter.acquire(ip, 2).is_none());
        assert!(counter.acquire([10, 0, 0, 1].into(), 2).is_some());
        drop(first);
        assert!(counter.acquire(ip, 2).is_some());
    }
}
