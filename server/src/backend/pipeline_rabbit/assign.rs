//! Which shards a node consumes: rendezvous (highest random weight) hashing of each shard
//! over the live nodes. The node with the highest score is the shard's owner and the next
//! one its standby; both consume the shard queue, and the broker's single active consumer
//! lets one of them at a time take deliveries. When a node joins, only the shards it now
//! ranks in the top two of move; when one leaves, only its own.
//!
//! Pure functions: no I/O, no clock.

/// How many nodes consume each shard: the owner and one standby.
pub const CONSUMERS_PER_SHARD: usize = 2;

/// The score of `node` for `shard`: FNV-1a over the node id and the shard number, finished
/// with a 64-bit mixer so that nearby shard numbers give unrelated scores.
pub fn score(node: &str, shard: usize) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let shard = u64::try_from(shard).unwrap_or(u64::MAX);
    for byte in node.bytes().chain([0xff]).chain(shard.to_le_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64 finalizer
    hash ^= hash >> 30;
    hash = hash.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// The nodes that consume `shard`, best first (owner, then standby).
pub fn consumers_of<'a>(shard: usize, live: &[&'a str]) -> Vec<&'a str> {
    let mut ranked: Vec<(u64, &'a str)> = live.iter().map(|n| (score(n, shard), *n)).collect();
    // Ties (practically impossible) break by id so every node agrees.
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1)));
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked
        .into_iter()
        .take(CONSUMERS_PER_SHARD)
        .map(|(_, n)| n)
        .collect()
}

/// The shards of `0..shards` that `me` consumes, given the live nodes. `me` always counts as
/// live: a running node whose registry row lapsed still serves until it renews it.
pub fn shards_of(me: &str, live: &[String], shards: usize) -> Vec<usize> {
    let mut nodes: Vec<&str> = live.iter().map(String::as_str).collect();
    if !nodes.contains(&me) {
        nodes.push(me);
    }
    (0..shards)
        .filter(|&shard| consumers_of(shard, &nodes).contains(&me))
        .collect()
}
