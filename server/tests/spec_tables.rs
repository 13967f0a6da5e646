//! One source for every default: the tables of docs/protocol.md (§21) and docs/operations.md
//! ("Configuration") against the definitions in `chatwire_protocol::limits` and
//! `Config::default()`, and a real `chatwire serve` process with every default against the
//! tables: what it advertises in `ConnectResponse`, and the `Disconnect` it sends when SIGTERM
//! drains it. A table that drifts from the code fails here.

mod support;

use std::collections::BTreeMap;

use chatwire_conformance::client::Client;
use chatwire_protocol::limits;
use chatwire_protocol::v1;
use chatwire_server::config::Config;
use chatwire_server::server::advertised_limits;
use prost::Message as _;
use prost_reflect::{DescriptorPool, DynamicMessage, Value};
use support::server::{ServerProcess, dev_token, within};

fn doc(name: &str) -> String {
    let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The lines of the first Markdown table after the heading that starts with `heading`, up to
/// the next heading; with `skip` tables skipped first.
fn table(text: &str, heading: &str, skip: usize) -> Vec<Vec<String>> {
    let start = text
        .lines()
        .position(|l| l.starts_with(heading))
        .unwrap_or_else(|| panic!("no heading {heading:?}"));
    let mut tables: Vec<Vec<Vec<String>>> = Vec::new();
    let mut in_table = false;
    for line in text.lines().skip(start + 1) {
        if line.starts_with('#') {
            break;
        }
        if let Some(row) = line.strip_prefix('|') {
            if !in_table {
                tables.push(Vec::new());
                in_table = true;
            }
            let cells: Vec<String> = row
                .trim_end()
                .trim_end_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            let separator = cells.iter().all(|c| c.chars().all(|ch| "-: ".contains(ch)));
            if !separator && let Some(current) = tables.last_mut() {
                current.push(cells);
            }
        } else {
            in_table = false;
        }
    }
    let mut rows = tables
        .into_iter()
        .nth(skip)
        .unwrap_or_else(|| panic!("no table {skip} under {heading:?}"));
    rows.remove(0); // the header
    rows
}

/// The first whole number of `cell` (`65536 (64 KiB)` is 65536).
fn number(cell: &str) -> Option<u64> {
    let digits: String = cell
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The names between backticks in `cell`.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Every field of a `Limits` by its proto name (reflection: a field added to the proto is
/// compared too, so it cannot be left out of the table).
fn limits_by_name(limits: &v1::Limits) -> BTreeMap<String, u64> {
    let pool = DescriptorPool::decode(chatwire_protocol::FILE_DESCRIPTOR_SET).expect("descriptors");
    let descriptor = pool
        .get_message_by_name("chatwire.v1.Limits")
        .expect("Limits");
    let message = DynamicMessage::decode(descriptor.clone(), limits.encode_to_vec().as_slice())
        .expect("decode");
    descriptor
        .fields()
        .map(|field| {
            let value = match message.get_field(&field).as_ref() {
                Value::U32(v) => u64::from(*v),
                Value::U64(v) => *v,
                other => panic!("Limits.{} is {other:?}", field.name()),
            };
            (field.name().to_owned(), value)
        })
        .collect()
}

/// §21's `Limits` table: field name → default.
fn spec_limits() -> BTreeMap<String, u64> {
    table(&doc("protocol.md"), "## 21. Limits and defaults", 0)
        .into_iter()
        .map(|row| {
            let field = code_spans(&row[1]).remove(0);
            let value = number(&row[2]).unwrap_or_else(|| panic!("no number in {row:?}"));
            (field, value)
        })
        .collect()
}

/// §21's second table: value name → its default cell.
fn spec_other_values() -> BTreeMap<String, String> {
    table(&doc("protocol.md"), "## 21. Limits and defaults", 1)
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect()
}

#[test]
fn the_protocol_limits_table_is_the_code() {
    let code = limits_by_name(&limits::default_limits());
    assert_eq!(
        spec_limits(),
        code,
        "docs/protocol.md §21 vs chatwire_protocol::limits"
    );
    // The server's configuration defaults advertise exactly these values.
    assert_eq!(
        advertised_limits(&Config::default()),
        limits::default_limits()
    );
    let other = spec_other_values();
    let ms = |name: &str| number(&other[name]).unwrap_or_else(|| panic!("{name}: no number"));
    assert_eq!(
        ms("handshake timeout"),
        limits::DEFAULT_HANDSHAKE_TIMEOUT_MS
    );
    assert_eq!(
        ms("heartbeat interval"),
        limits::DEFAULT_HEARTBEAT_INTERVAL_MS
    );
    assert_eq!(
        ms("`TokenExpiring` lead time"),
        limits::TOKEN_EXPIRING_LEAD_MS
    );
    assert_eq!(
        other["drain `reconnect_delay_ms`"],
        format!(
            "{} to {} ms, uniform per session",
            limits::DRAIN_RECONNECT_DELAY_MIN_MS,
            limits::DRAIN_RECONNECT_DELAY_MAX_MS
        )
    );
    let config = Config::default();
    assert_eq!(
        config.session.heartbeat_interval_ms,
        limits::DEFAULT_HEARTBEAT_INTERVAL_MS
    );
    assert_eq!(
        config.session.handshake_timeout_ms,
        limits::DEFAULT_HANDSHAKE_TIMEOUT_MS
    );
}

/// `Config::default()` flattened: `limits.rate_sends` → its JSON value.
fn config_defaults() -> BTreeMap<String, serde_json::Value> {
    fn flatten(
        prefix: &str,
        value: &serde_json::Value,
        out: &mut BTreeMap<String, serde_json::Value>,
    ) {
        match value {
            // A token bucket is one value in the table (`600/min, burst 60`).
            serde_json::Value::Object(map) if !map.contains_key("rate_per_minute") => {
                for (key, value) in map {
                    let path = if prefix.is_empty() {
                        key.clone()
                    } else {
                        format!("{prefix}.{key}")
                    };
                    flatten(&path, value, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = BTreeMap::new();
    flatten(
        "",
        &serde_json::to_value(Config::default()).expect("serializable"),
        &mut out,
    );
    out
}

/// Whether the documented default `cell` states `value`. Values a table row describes in words
/// (unset options, lists, paths) are not compared.
fn states(cell: &str, value: &serde_json::Value) -> Option<bool> {
    match value {
        serde_json::Value::Number(n) => Some(number(cell) == n.as_u64()),
        serde_json::Value::Bool(b) => Some(cell.trim() == b.to_string()),
        serde_json::Value::String(s) if !s.is_empty() => Some(cell.contains(s.as_str())),
        serde_json::Value::Object(bucket) => {
            let rate = bucket.get("rate_per_minute")?.as_u64()?;
            let burst = bucket.get("burst")?.as_u64()?;
            let normal = cell.replace(", burst ", " b");
            Some(normal.trim() == format!("{rate}/min b{burst}"))
        }
        _ => None,
    }
}

#[test]
fn the_operations_configuration_table_is_the_code() {
    let defaults = config_defaults();
    let mut documented = Vec::new();
    for row in table(&doc("operations.md"), "## Configuration", 0) {
        let names = code_spans(&row[0]);
        // `limits.rate_requests` / `rate_sends`: later names share the first one's section;
        // `storage.cql.nodes` / `.keyspace`: a leading dot continues the first one's path.
        let first = names[0].clone();
        let section = first.rsplit_once('.').map_or("", |(s, _)| s).to_owned();
        let keys: Vec<String> = names
            .iter()
            .map(|name| match name.strip_prefix('.') {
                Some(rest) => format!("{section}.{rest}"),
                None if name.contains('.') || section.is_empty() => name.clone(),
                None => format!("{section}.{name}"),
            })
            .collect();
        if keys.iter().any(|k| k.ends_with('*')) {
            continue;
        }
        let cell = row[1].as_str();
        let parts: Vec<String> = if keys.len() == 1 {
            vec![cell.to_owned()]
        } else if cell.split(" / ").count() == keys.len() {
            cell.split(" / ").map(str::to_owned).collect()
        } else {
            cell.split(", ").map(str::to_owned).collect()
        };
        for (i, key) in keys.iter().enumerate() {
            let value = defaults.get(key).unwrap_or_else(|| {
                panic!("docs/operations.md documents {key}, not a key of Config")
            });
            documented.push(key.clone());
            if parts.len() != keys.len() {
                // One description for all the keys of the row (`the server's own origin`).
                continue;
            }
            if let Some(same) = states(&parts[i], value) {
                assert!(
                    same,
                    "docs/operations.md: {key} default {:?}, the code says {value}",
                    parts[i]
                );
            }
        }
    }
    // Every limit and session setting has a row: a default cannot drift by being left out.
    for key in defaults
        .keys()
        .filter(|k| k.starts_with("limits.") || k.starts_with("session."))
    {
        assert!(
            documented.contains(key),
            "docs/operations.md has no row for {key}"
        );
    }
}

/// A real server with every default advertises §21's values and heartbeat interval, and
/// grants no capability it does not list in the registry (§22).
#[tokio::test]
async fn a_real_server_advertises_the_documented_defaults() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::spawn_defaults(dir.path()).await;
    let client = Client::open(&server.target())
        .await
        .expect("websocket opens");
    let response = within(client.connect(&dev_token(dir.path(), "alice")))
        .await
        .expect("connect");
    let advertised = limits_by_name(&response.limits.unwrap_or_default());
    assert_eq!(
        advertised,
        spec_limits(),
        "ConnectResponse.limits vs docs/protocol.md §21"
    );
    let other = spec_other_values();
    assert_eq!(
        Some(u64::from(response.heartbeat_interval_ms)),
        number(&other["heartbeat interval"])
    );
    let registry: Vec<String> = table(&doc("protocol.md"), "### 22.1 Capabilities", 0)
        .into_iter()
        .map(|row| code_spans(&row[0]).remove(0))
        .collect();
    for capability in chatwire_server::session::driver::SERVER_CAPABILITIES {
        assert!(
            registry.iter().any(|c| c == capability),
            "{capability} not in §22.1"
        );
    }
}

/// SIGTERM drains: every session gets `Disconnect(SERVER_DRAINING)` with `reconnect` and a
/// `reconnect_delay_ms` in the documented range, then the close 4005.
#[tokio::test]
async fn sigterm_asks_sessions_to_reconnect_after_a_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServerProcess::spawn_defaults(dir.path()).await;
    let client = Client::open(&server.target())
        .await
        .expect("websocket opens");
    within(client.connect(&dev_token(dir.path(), "alice")))
        .await
        .expect("connect");
    server.signal("TERM");
    let disconnect = loop {
        let event = within(client.next_event()).await.expect("an event");
        if let Some(v1::event::Kind::Disconnect(disconnect)) = event.kind {
            break disconnect;
        }
    };
    assert_eq!(disconnect.code(), v1::CloseCode::ServerDraining);
    assert!(disconnect.reconnect);
    let range = limits::DRAIN_RECONNECT_DELAY_MIN_MS..limits::DRAIN_RECONNECT_DELAY_MAX_MS;
    assert!(
        range.contains(&disconnect.reconnect_delay_ms),
        "reconnect_delay_ms {} not in {range:?}",
        disconnect.reconnect_delay_ms
    );
    assert_eq!(within(client.wait_closed()).await.code, 4005);
}

/// §19 and §20 list every `ErrorCode` and `CloseCode` of the proto with its number, and nothing
/// else.
#[test]
fn the_error_and_close_code_tables_are_the_proto() {
    let pool = DescriptorPool::decode(chatwire_protocol::FILE_DESCRIPTOR_SET).expect("descriptors");
    for (heading, name) in [
        ("## 19. Error codes", "chatwire.v1.ErrorCode"),
        ("## 20. Close codes", "chatwire.v1.CloseCode"),
    ] {
        let proto: BTreeMap<String, i32> = pool
            .get_enum_by_name(name)
            .expect("enum")
            .values()
            .map(|v| (v.name().to_owned(), v.number()))
            .collect();
        let documented: BTreeMap<String, i32> = table(&doc("protocol.md"), heading, 0)
            .into_iter()
            .map(|row| {
                let number = i32::try_from(number(&row[0]).expect("a number")).expect("i32");
                (code_spans(&row[1]).remove(0), number)
            })
            .collect();
        assert_eq!(documented, proto, "docs/protocol.md {heading} vs {name}");
    }
}
