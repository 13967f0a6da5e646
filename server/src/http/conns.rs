//! Per-address connection caps: a count of live sessions per client address, and
//! [`client_prefix`], the address limits are kept per.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// The address per-client limits are kept per: an IPv4 address as it is (an IPv4-mapped IPv6
/// address as its IPv4 address), an IPv6 address as its /64 prefix, which one subscriber
/// usually owns whole: keying on the full address would let one client take 2^64 keys.
pub fn client_prefix(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Live sessions per client address ([`client_prefix`]).
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
    /// Counts a new connection from `ip`, unless `max` are already live from its
    /// [`client_prefix`].
    pub fn acquire(self: &Arc<Self>, ip: IpAddr, max: usize) -> Option<ConnectionGuard> {
        let ip = client_prefix(ip);
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
    fn ipv6_clients_are_counted_per_64_prefix() {
        // Issue 15 M6.
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        let counter = Arc::new(ConnectionCounter::default());
        let first = counter.acquire(ip("2001:db8:1:2::1"), 2).expect("first");
        let _second = counter
            .acquire(ip("2001:db8:1:2:ffff::9"), 2)
            .expect("second");
        assert!(
            counter.acquire(ip("2001:db8:1:2::abcd"), 2).is_none(),
            "a third address of the same /64 is over the cap"
        );
        assert!(
            counter.acquire(ip("2001:db8:1:3::1"), 2).is_some(),
            "another /64"
        );
        drop(first);
        assert!(counter.acquire(ip("2001:db8:1:2::abcd"), 2).is_some());
        assert_eq!(client_prefix(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(client_prefix(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(client_prefix(ip("2001:db8::1:2:3:4")), ip("2001:db8::"));
    }

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
