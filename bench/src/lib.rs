//! `chatwire-bench`: load generator for Chatwire servers and the peers it is compared with.
//! Results and the commands that produced them live in `docs/benchmarks.md`.
