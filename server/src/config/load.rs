//! Layering: defaults, then the TOML file, then `CHATWIRE_*` variables, then flags.
//!
//! The file and the variables are merged as TOML before one typed deserialization, so
//! `deny_unknown_fields` catches a misspelt key wherever it came from. A variable's value is
//! typed after the default at the same key: text for strings and unset options, a number, a
//! boolean, or a comma-separated list.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use toml::{Table, Value};

use super::{Config, ConfigError};

/// Prefix of the environment variables read.
pub const ENV_PREFIX: &str = "CHATWIRE_";
/// Variable naming the configuration file (a `--config` flag wins over it).
pub const ENV_CONFIG_FILE: &str = "CHATWIRE_CONFIG";

/// Top-level keys of [`Config`]. A `CHATWIRE_*` variable whose first key is not one of these
/// belongs to something else (test harnesses use `CHATWIRE_TEST_REDIS_URL` and the like) and is
/// ignored.
const TOP_LEVEL_KEYS: &[&str] = &[
    "data_dir",
    "listen",
    "public_origin",
    "allowed_origins",
    "auth",
    "limits",
    "session",
    "storage",
    "events",
    "quic",
    "redis",
    "cluster",
    "log",
    "tls",
    "moderation",
    "search",
    "contacts",
];

/// Overrides from command-line flags, applied last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CliOverrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<SocketAddr>,
}

/// Where a configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// Environment variables (all of them or only `CHATWIRE_*`; others are skipped).
    pub env: Vec<(OsString, OsString)>,
    /// Flags.
    pub cli: CliOverrides,
}

impl ConfigSources {
    /// Sources from this process's environment: the file is `file` (from `--config`) or else
    /// `CHATWIRE_CONFIG`.
    pub fn from_process_env(file: Option<PathBuf>, cli: CliOverrides) -> Self {
        let env: Vec<(OsString, OsString)> = std::env::vars_os()
            .filter(|(k, _)| k.to_str().is_some_and(|k| k.starts_with(ENV_PREFIX)))
            .collect();
        let file = file.or_else(|| {
            env.iter()
                .find(|(k, _)| k == ENV_CONFIG_FILE)
                .map(|(_, v)| PathBuf::from(v))
                .filter(|p| !p.as_os_str().is_empty())
        });
        Self { file, env, cli }
    }
}

/// Loads and validates a configuration from `sources`.
pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
    let defaults = defaults_table()?;
    let shape = shape_table()?;
    let mut table = defaults.clone();
    if let Some(path) = &sources.file {
        merge(&mut table, read_file(path)?);
    }
    let mut vars: Vec<(&OsString, &OsString)> = sources.env.iter().map(|(k, v)| (k, v)).collect();
    // Deterministic order; the keys are distinct paths, so order matters only for messages.
    vars.sort();
    for (var, value) in vars {
        apply_env(&mut table, &defaults, &shape, var, value)?;
    }
    let mut config: Config = Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| {
            ConfigError::Invalid(format!(
                "{} (after merging the file and CHATWIRE_* variables)",
                e.message()
            ))
        })?;
    if let Some(dir) = &sources.cli.data_dir {
        config.data_dir.clone_from(dir);
    }
    if let Some(listen) = sources.cli.listen {
        config.listen = listen;
    }
    config.validate()?;
    Ok(config)
}

/// Where one configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Its dotted key (`auth.issuer`).
    pub key: String,
    /// Its effective value, as TOML (secrets written inline are masked).
    pub value: String,
    /// `default`, `file PATH`, `env CHATWIRE_...` or `flag --...`.
    pub source: String,
}

/// The effective configuration of `sources`, one [`Setting`] per value, with where each came
/// from (`chatwire check-config`).
pub fn explain(sources: &ConfigSources) -> Result<Vec<Setting>, ConfigError> {
    let config = load(sources)?;
    let effective = table_of(config)?;
    let file = match &sources.file {
        Some(path) => Some((path, read_file(path)?)),
        None => None,
    };
    let mut env: Vec<(Vec<String>, String)> = Vec::new();
    for (var, _) in &sources.env {
        let Some(name) = var.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if name != ENV_CONFIG_FILE
            && TOP_LEVEL_KEYS.contains(&path.first().map(String::as_str).unwrap_or_default())
        {
            env.push((path, name.to_owned()));
        }
    }
    let mut settings = Vec::new();
    let mut leaves = Vec::new();
    flatten(&effective, &mut Vec::new(), &mut leaves);
    for (path, value) in leaves {
        let key = path.join(".");
        let flag = match key.as_str() {
            "data_dir" if sources.cli.data_dir.is_some() => Some("flag --data-dir"),
            "listen" if sources.cli.listen.is_some() => Some("flag --listen"),
            _ => None,
        };
        let source = if let Some(flag) = flag {
            flag.to_owned()
        } else if let Some((_, var)) = env.iter().find(|(p, _)| path.starts_with(p)) {
            format!("env {var}")
        } else if let Some((file_path, table)) = &file
            && (1..=path.len()).any(|n| lookup(table, &path[..n]).is_some_and(|v| !v.is_table()))
        {
            format!("file {}", file_path.display())
        } else {
            "default".to_owned()
        };
        let value = if path.last().is_some_and(|k| is_secret_key(k)) {
            "\"(hidden)\"".to_owned()
        } else {
            masked(value).to_string()
        };
        settings.push(Setting { key, value, source });
    }
    Ok(settings)
}

/// A key whose value is a secret written inline (`secret`, not `secret_file`).
fn is_secret_key(key: &str) -> bool {
    key.contains("secret") && !key.ends_with("_file")
}

/// `value` with the secrets inside it (in arrays of tables) hidden.
fn masked(value: Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.into_iter().map(masked).collect()),
        Value::Table(table) => Value::Table(
            table
                .into_iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(&k) {
                        Value::String("(hidden)".into())
                    } else {
                        masked(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        other => other,
    }
}

/// The leaves of `table`: values that are not tables (arrays of tables count as leaves).
fn flatten(table: &Table, prefix: &mut Vec<String>, out: &mut Vec<(Vec<String>, Value)>) {
    for (key, value) in table {
        prefix.push(key.clone());
        match value {
            Value::Table(inner) => flatten(inner, prefix, out),
            other => out.push((prefix.clone(), other.clone())),
        }
        prefix.pop();
    }
}

/// `CHATWIRE_*` variables that are probably misspelled configuration variables: their first
/// key is not a configuration key but is within two letters of one (`CHATWIRE_LISTN`,
/// `CHATWIRE_QUICK__ENABLED`). Each comes with the variable it probably meant. Other
/// `CHATWIRE_*` names (`CHATWIRE_TEST_*`, tool variables) are left alone.
pub fn misspelled_env(env: &[(OsString, OsString)]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (var, _) in env {
        let Some(name) = var.to_str() else { continue };
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if name == ENV_CONFIG_FILE || name.starts_with("CHATWIRE_TEST_") {
            continue;
        }
        let (first, tail) = match rest.split_once("__") {
            Some((first, tail)) => (first.to_ascii_lowercase(), Some(tail)),
            None => (rest.to_ascii_lowercase(), None),
        };
        if TOP_LEVEL_KEYS.contains(&first.as_str()) {
            continue;
        }
        let best = TOP_LEVEL_KEYS
            .iter()
            .map(|k| (edit_distance(&first, k), *k))
            .min();
        if let Some((distance, key)) = best
            && distance <= if key.len() <= 4 { 1 } else { 2 }
        {
            let mut meant = format!("{ENV_PREFIX}{}", key.to_ascii_uppercase());
            if let Some(tail) = tail {
                meant = format!("{meant}__{tail}");
            }
            found.push((name.to_owned(), meant));
        }
    }
    found.sort();
    found
}

/// Levenshtein distance of two short ASCII strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + cost);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// Merges `src` into `dst`: tables key by key, anything else (arrays included) replaced.
fn merge(dst: &mut Table, src: Table) {
    for (key, value) in src {
        match (dst.get_mut(&key), value) {
            (Some(Value::Table(d)), Value::Table(s)) => merge(d, s),
            (_, value) => {
                dst.insert(key, value);
            }
        }
    }
}

fn read_file(path: &Path) -> Result<Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let parse_error = |e: toml::de::Error| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    };
    // Typed first, for messages that point at the line of a misspelt key or a wrong type.
    toml::from_str::<Config>(&text).map_err(parse_error)?;
    toml::from_str::<Table>(&text).map_err(parse_error)
}

fn defaults_table() -> Result<Table, ConfigError> {
    table_of(Config::default())
}

/// The defaults with the optional sections present (at their own defaults), so that a
/// variable setting a key inside one (`CHATWIRE_EVENTS__APP__TIMEOUT_MS`) is typed after it.
fn shape_table() -> Result<Table, ConfigError> {
    let mut config = Config::default();
    config.events.push = Some(super::WebhookConfig::default());
    config.events.app = Some(super::WebhookConfig::default());
    table_of(config)
}

fn table_of(config: Config) -> Result<Table, ConfigError> {
    match Value::try_from(config) {
        Ok(Value::Table(t)) => Ok(t),
        Ok(_) => Err(ConfigError::Invalid(
            "defaults do not serialize to a table".into(),
        )),
        Err(e) => Err(ConfigError::Invalid(format!(
            "defaults do not serialize: {e}"
        ))),
    }
}

fn apply_env(
    table: &mut Table,
    defaults: &Table,
    shape: &Table,
    var: &OsString,
    value: &OsString,
) -> Result<(), ConfigError> {
    let Some(name) = var.to_str() else {
        return Ok(());
    };
    let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
        return Ok(());
    };
    if name == ENV_CONFIG_FILE {
        return Ok(());
    }
    let err = |message: String| ConfigError::Env {
        var: name.to_owned(),
        message,
    };
    let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
    let first = path.first().map(String::as_str).unwrap_or_default();
    if !TOP_LEVEL_KEYS.contains(&first) {
        // Catch `CHATWIRE_AUTH_ISSUER` (one underscore), which would otherwise be ignored.
        if let Some(section) = TOP_LEVEL_KEYS.iter().find(|k| {
            matches!(defaults.get(**k), Some(Value::Table(_)))
                && first.starts_with(&format!("{k}_"))
        }) {
            let upper = section.to_ascii_uppercase();
            return Err(err(format!(
                "nested keys are separated by two underscores: {ENV_PREFIX}{upper}__{}",
                rest[section.len() + 1..].to_owned()
            )));
        }
        return Ok(());
    }
    if path.iter().any(String::is_empty) {
        return Err(err("empty key between underscores".into()));
    }
    let Some(raw) = value.to_str() else {
        return Err(err("value is not UTF-8".into()));
    };
    let typed = typed_value(lookup(shape, &path), raw).map_err(err)?;
    // Alone on the defaults, so that a wrong key or value is blamed on this variable.
    let mut probe = defaults.clone();
    set_path(&mut probe, &path, typed.clone()).map_err(err)?;
    Value::Table(probe)
        .try_into::<Config>()
        .map_err(|e: toml::de::Error| err(e.message().to_owned()))?;
    set_path(table, &path, typed).map_err(err)
}

fn lookup<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (last, parents) = path.split_last()?;
    let mut t = table;
    for key in parents {
        t = t.get(key)?.as_table()?;
    }
    t.get(last)
}

fn typed_value(default: Option<&Value>, raw: &str) -> Result<Value, String> {
    Ok(match default {
        None | Some(Value::String(_)) => Value::String(raw.to_owned()),
        Some(Value::Integer(_)) => Value::Integer(
            raw.trim()
                .replace('_', "")
                .parse()
                .map_err(|_| format!("{raw:?} is not an integer"))?,
        ),
        Some(Value::Float(_)) => Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| format!("{raw:?} is not a number"))?,
        ),
        Some(Value::Boolean(_)) => match raw.trim() {
            "true" | "1" => Value::Boolean(true),
            "false" | "0" => Value::Boolean(false),
            _ => return Err(format!("{raw:?} is not true or false")),
        },
        // Items are typed after the default's first item (text when the default is empty).
        Some(Value::Array(items)) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| match items.first() {
                    Some(first @ (Value::Integer(_) | Value::Float(_) | Value::Boolean(_))) => {
                        typed_value(Some(first), s)
                    }
                    _ => Ok(Value::String(s.to_owned())),
                })
                .collect::<Result<_, _>>()?,
        ),
        Some(Value::Table(_)) => {
            return Err("names a section: set one of its keys (KEY__FIELD)".into());
        }
        Some(Value::Datetime(_)) => Value::String(raw.to_owned()),
    })
}

fn set_path(table: &mut Table, path: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = path.split_last() else {
        return Err("empty key".into());
    };
    let mut t = table;
    for key in parents {
        let entry = t
            .entry(key.clone())
            .or_insert_with(|| Value::Table(Table::new()));
        t = match entry {
            Value::Table(inner) => inner,
            _ => return Err(format!("{key} is not a section")),
        };
    }
    t.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::config::JwtAlgorithm;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn top_level_keys_cover_the_struct() {
        let defaults = defaults_table().unwrap();
        for key in defaults.keys() {
            assert!(
                TOP_LEVEL_KEYS.contains(&key.as_str()),
                "add {key} to TOP_LEVEL_KEYS"
            );
        }
    }

    #[test]
    fn misspelled_variables_are_found() {
        let found = misspelled_env(&env(&[
            ("CHATWIRE_LISTN", "127.0.0.1:1"),
            ("CHATWIRE_QUICK__ENABLED", "false"),
            ("CHATWIRE_DATADIR", "/x"),
            ("CHATWIRE_LISTEN", "127.0.0.1:1"),
            ("CHATWIRE_TEST_REDIS_URL", "redis://x"),
            ("CHATWIRE_SERVICES", "/tmp"),
            ("CHATWIRE_URL", "http://x"),
            ("CHATWIRE_CONFIG", "/c.toml"),
        ]));
        assert_eq!(
            found,
            vec![
                (
                    "CHATWIRE_DATADIR".to_owned(),
                    "CHATWIRE_DATA_DIR".to_owned()
                ),
                ("CHATWIRE_LISTN".to_owned(), "CHATWIRE_LISTEN".to_owned()),
                (
                    "CHATWIRE_QUICK__ENABLED".to_owned(),
                    "CHATWIRE_QUIC__ENABLED".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn explain_names_each_source() {
        let f = file(
            "[auth]\nissuer = \"file-iss\"\n[log]\nformat = \"json\"\n\
             [events.app]\nurl = \"https://hooks.internal/x\"\n\
             keys = [{ id = \"k1\", secret = \"s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t\" }]\n",
        );
        let settings = explain(&ConfigSources {
            file: Some(f.path().to_owned()),
            env: env(&[("CHATWIRE_SESSION__HEARTBEAT_INTERVAL_MS", "5000")]),
            cli: CliOverrides {
                data_dir: Some("/from/flag".into()),
                listen: None,
            },
        })
        .unwrap();
        let source = |key: &str| {
            settings
                .iter()
                .find(|s| s.key == key)
                .map(|s| (s.value.clone(), s.source.clone()))
                .unwrap_or_else(|| panic!("{key} missing"))
        };
        let file_source = format!("file {}", f.path().display());
        assert_eq!(
            source("auth.issuer"),
            ("\"file-iss\"".into(), file_source.clone())
        );
        assert_eq!(source("log.format"), ("\"json\"".into(), file_source));
        assert_eq!(
            source("session.heartbeat_interval_ms"),
            (
                "5000".into(),
                "env CHATWIRE_SESSION__HEARTBEAT_INTERVAL_MS".into()
            )
        );
        assert_eq!(
            source("data_dir"),
            ("\"/from/flag\"".into(), "flag --data-dir".into())
        );
        assert_eq!(source("auth.audience").1, "default");
        assert_eq!(source("tls.enabled"), ("false".into(), "default".into()));
        let keys = source("events.app.keys").0;
        assert!(keys.contains("k1") && !keys.contains("s3cr3t"), "{keys}");
    }

    #[test]
    fn localhost_listen_is_the_loopback_and_names_are_refused() {
        let c = load(&ConfigSources {
            env: env(&[("CHATWIRE_LISTEN", "localhost:9999")]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:9999");
        let e = load(&ConfigSources {
            env: env(&[("CHATWIRE_LISTEN", "chat.example:80")]),
            ..Default::default()
        })
        .unwrap_err();
        assert!(e.to_string().contains("use an IP address"), "{e}");
    }

    #[test]
    fn no_sources_gives_defaults() {
        assert_eq!(load(&ConfigSources::default()).unwrap(), Config::default());
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let f = file(
            "data_dir = \"/from/file\"\nlisten = \"127.0.0.1:9000\"\n\
             [auth]\nissuer = \"file-iss\"\naudience = \"file-aud\"\n\
             [session]\nheartbeat_interval_ms = 5000\n",
        );
        let sources = ConfigSources {
            file: Some(f.path().to_owned()),
            env: env(&[
                ("CHATWIRE_LISTEN", "127.0.0.1:0"),
                ("CHATWIRE_AUTH__ISSUER", "env-iss"),
                ("CHATWIRE_LIMITS__RATE_SENDS__BURST", "7"),
                (
                    "CHATWIRE_ALLOWED_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("CHATWIRE_TEST_REDIS_URL", "redis://ignored"),
                ("PATH", "/bin"),
            ]),
            cli: CliOverrides {
                data_dir: Some("/from/flag".into()),
                listen: None,
            },
        };
        let c = load(&sources).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.auth.issuer, "env-iss");
        assert_eq!(c.auth.audience, "file-aud");
        assert_eq!(c.session.heartbeat_interval_ms, 5000);
        assert_eq!(c.session.handshake_timeout_ms, 10_000);
        assert_eq!(c.limits.rate_sends.burst, 7);
        assert_eq!(c.limits.rate_sends.rate_per_minute, 600);
        assert_eq!(
            c.allowed_origins,
            vec!["https://a.example", "https://b.example"]
        );
    }

    #[test]
    fn unknown_file_key_fails_with_its_line() {
        let f = file("[auth]\nisuer = \"x\"\n");
        let e = load(&ConfigSources {
            file: Some(f.path().to_owned()),
            ..Default::default()
        })
        .unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ConfigError::Parse { .. }), "{msg}");
        assert!(msg.contains("isuer") && msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let e = load(&ConfigSources {
            file: Some("/nonexistent/chatwire.toml".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
    }

    #[test]
    fn env_typos_and_bad_values_fail() {
        let fails = |k: &str, v: &str| {
            load(&ConfigSources {
                env: env(&[(k, v)]),
                ..Default::default()
            })
            .unwrap_err()
        };
        let e = fails("CHATWIRE_AUTH__ISUER", "x");
        assert!(
            matches!(&e, ConfigError::Env { var, .. } if var == "CHATWIRE_AUTH__ISUER"),
            "{e}"
        );
        assert!(e.to_string().contains("isuer"), "{e}");
        let e = fails("CHATWIRE_AUTH_ISSUER", "x");
        assert!(e.to_string().contains("CHATWIRE_AUTH__ISSUER"), "{e}");
        assert!(
            fails("CHATWIRE_SESSION__HEARTBEAT_INTERVAL_MS", "fast")
                .to_string()
                .contains("integer")
        );
        assert!(matches!(
            fails("CHATWIRE_LISTEN", "not an address"),
            ConfigError::Env { .. }
        ));
        assert!(matches!(
            fails("CHATWIRE_AUTH", "x"),
            ConfigError::Env { .. }
        ));
        // Valid syntax, out of range: validation catches it.
        assert!(matches!(
            fails("CHATWIRE_SESSION__OUTBOUND_QUEUE_FRAMES", "0"),
            ConfigError::Invalid(_)
        ));
    }

    #[test]
    fn env_sets_options_and_lists() {
        let c = load(&ConfigSources {
            env: env(&[
                ("CHATWIRE_PUBLIC_ORIGIN", "https://chat.example"),
                ("CHATWIRE_AUTH__HS256_KID", "dev-1"),
                ("CHATWIRE_AUTH__ALGORITHMS", "HS256"),
                ("CHATWIRE_AUTH__LEEWAY_MS", "1_000"),
                ("CHATWIRE_REDIS__URL", "redis://127.0.0.1:6379/0"),
            ]),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.public_origin.as_deref(), Some("https://chat.example"));
        assert_eq!(c.auth.hs256_kid.as_deref(), Some("dev-1"));
        assert_eq!(c.auth.algorithms, vec![JwtAlgorithm::Hs256]);
        assert_eq!(c.auth.leeway_ms, 1000);
        assert_eq!(c.redis.url.as_deref(), Some("redis://127.0.0.1:6379/0"));
    }

    #[test]
    fn public_keys_come_from_the_file() {
        let f = file(
            "[auth]\nalgorithms = [\"HS256\", \"EdDSA\"]\n\
             [[auth.keys]]\nkid = \"k1\"\nalg = \"EdDSA\"\npem_file = \"/etc/k1.pem\"\n",
        );
        let c = load(&ConfigSources {
            file: Some(f.path().to_owned()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.auth.keys.len(), 1);
        assert_eq!(c.auth.keys[0].alg, JwtAlgorithm::EdDsa);
        let f = file("[[auth.keys]]\nkid = \"k1\"\nalg = \"none\"\npem = \"x\"\n");
        assert!(
            load(&ConfigSources {
                file: Some(f.path().to_owned()),
                ..Default::default()
            })
            .is_err()
        );
    }
}
