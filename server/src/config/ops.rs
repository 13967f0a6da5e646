//! Operating settings: the log format and TLS on the HTTP listener (docs/operations.md, "Logs"
//! and "TLS"), and the parsing of listen addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Deserializer, Serialize};

/// How log lines are written (to stderr).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event; ANSI colour only when stderr is a terminal.
    #[default]
    Text,
    /// One JSON object per line (`timestamp`, `level`, `fields`, `target`), never coloured.
    Json,
}

/// Logging (docs/operations.md, "Logs"). Which lines are written is chosen by `RUST_LOG`
/// (default `info`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    pub format: LogFormat,
}

/// TLS on the HTTP listener, so browsers and SDKs use `https://` and `wss://` without a proxy
/// (docs/operations.md, "TLS"). The certificate is the QUIC one: `quic.cert_file` and
/// `quic.key_file`, or the development certificate of the data folder.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Serve HTTPS (and `wss://`) instead of plain HTTP on `listen`. Default false.
    pub enabled: bool,
}

/// Parses a listen address: `IP:PORT`, or `localhost:PORT` (the IPv4 loopback). Any other host
/// name is refused with a message that says to use an address: a server binds an address, and
/// a name that resolves to several would bind only one of them.
pub fn parse_listen(raw: &str) -> Result<SocketAddr, String> {
    let raw = raw.trim();
    if let Ok(addr) = raw.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let help = "use an IP address and a port, such as 127.0.0.1:8080 (this machine only) or \
                0.0.0.0:8080 (every interface)";
    let Some((host, port)) = raw.rsplit_once(':') else {
        return Err(format!("{raw:?} has no port: {help}"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{raw:?}: {port:?} is not a port number; {help}"))?;
    match host.to_ascii_lowercase().as_str() {
        "localhost" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)),
        "ip6-localhost" => Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port)),
        "" | "*" => Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
        _ => Err(format!("{raw:?} is a host name: {help}")),
    }
}

/// Serde: `listen` as [`parse_listen`] reads it.
pub(super) fn deserialize_listen<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    let raw = String::deserialize(d)?;
    parse_listen(&raw).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("0.0.0.0:80").unwrap().to_string(),
            "0.0.0.0:80"
        );
        assert_eq!(parse_listen("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert_eq!(
            parse_listen("localhost:8080").unwrap().to_string(),
            "127.0.0.1:8080"
        );
        assert_eq!(parse_listen(":8080").unwrap().to_string(), "0.0.0.0:8080");
        let e = parse_listen("chat.example:8080").unwrap_err();
        assert!(e.contains("use an IP address"), "{e}");
        let e = parse_listen("localhost").unwrap_err();
        assert!(e.contains("no port") && e.contains("127.0.0.1:8080"), "{e}");
        assert!(parse_listen("localhost:http").is_err());
    }
}
