//! The `chatwire` command line: `serve`, `token`, `migrate`, `version`.
//!
//! This module parses flags and runs the commands that need no server; `serve` is dispatched
//! by the binary. `--config` and `--data-dir` go before or after the subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::{AuthSetupError, MintError, TokenMinter};
use crate::chat::ids::UserId;
use crate::config::{CliOverrides, Config, ConfigError, ConfigSources};
use crate::devdefaults::{self, DevDefaultsError};

/// Chatwire: a protocol-first real-time chat gateway.
#[derive(Debug, Parser)]
#[command(name = "chatwire", version, propagate_version = true)]
pub struct Cli {
    /// TOML configuration file (default: `CHATWIRE_CONFIG`, else none).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data folder: embedded store and development secrets (default `./chatwire-data`).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print a development token for a user, signed with the configured HS256 secret (the data
    /// folder's `jwt-secret` unless `auth.hs256_secret_file` is set).
    Token(TokenArgs),
    /// Create or upgrade the store schema (idempotent).
    Migrate,
    /// Print the version.
    Version,
}

/// Flags of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Listen address, `IP:PORT` (default `127.0.0.1:8080`; port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
}

/// Flags of `token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (the token's `sub`).
    #[arg(long, value_name = "NAME", value_parser = parse_user)]
    pub user: UserId,
    /// Lifetime: a number with a unit, `ms`, `s`, `m`, `h` or `d`.
    #[arg(long = "ttl", value_name = "DURATION", default_value = "24h", value_parser = parse_duration_ms)]
    pub ttl_ms: u64,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The development secrets could not be read or created.
    #[error(transparent)]
    DevDefaults(#[from] DevDefaultsError),
    /// The token minter could not be built.
    #[error(transparent)]
    Auth(#[from] AuthSetupError),
    /// The token could not be minted.
    #[error(transparent)]
    Mint(#[from] MintError),
    /// The distributed store could not be migrated.
    #[error("migrate: {0}")]
    Migrate(String),
}

/// Parses the process's arguments; prints help or an error and exits on bad ones.
pub fn parse() -> Cli {
    Cli::parse()
}

impl Cli {
    /// The flags that override configuration values.
    pub fn overrides(&self) -> CliOverrides {
        let listen = match &self.command {
            Command::Serve(args) => args.listen,
            _ => None,
        };
        CliOverrides {
            data_dir: self.data_dir.clone(),
            listen,
        }
    }

    /// The configuration: defaults, the file, `CHATWIRE_*` variables, then these flags.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        crate::config::load(&ConfigSources::from_process_env(
            self.config.clone(),
            self.overrides(),
        ))
    }
}

/// `chatwire token`: a token for `args.user` issued at `now_ms`, signed so that a server with
/// the same configuration and data folder accepts it. Creates the development secrets when
/// the data folder has none yet.
pub fn token(config: &Config, args: &TokenArgs, now_ms: i64) -> Result<String, CliError> {
    let dev = match config.auth.hs256_secret_file {
        Some(_) => None,
        None => Some(devdefaults::load_or_create(&config.data_dir)?),
    };
    let minter =
        TokenMinter::from_config(&config.auth, dev.as_ref().map(|d| d.jwt_secret.as_slice()))?;
    let ttl_ms = i64::try_from(args.ttl_ms).map_err(|_| MintError::BadLifetime)?;
    Ok(minter.mint(&args.user, ttl_ms, now_ms)?)
}

/// What `chatwire migrate` prints for the embedded store.
pub const EMBEDDED_MIGRATE_MESSAGE: &str = "embedded store needs no migration";

/// `chatwire migrate`. The embedded store creates its tables when it opens, so there is
/// nothing to migrate; the CQL store (`storage.backend = "scylla"`) gets its keyspace, tables
/// and cluster metadata (idempotent: run it before every deploy).
pub fn migrate(config: &Config) -> Result<(), CliError> {
    match config.storage.backend {
        crate::config::StoreBackend::Embedded => {
            println!("{EMBEDDED_MIGRATE_MESSAGE}");
            Ok(())
        }
        crate::config::StoreBackend::Scylla => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CliError::Migrate(e.to_string()))?;
            let done = runtime
                .block_on(crate::distributed::migrate(config))
                .map_err(CliError::Migrate)?;
            println!("{done}");
            Ok(())
        }
    }
}

/// `chatwire version`: the binary's version and the protocol package it speaks.
pub fn version() -> String {
    format!(
        "chatwire {} (protocol chatwire.v1)",
        env!("CARGO_PKG_VERSION")
    )
}

fn parse_user(raw: &str) -> Result<UserId, String> {
    UserId::parse(raw).map_err(|e| e.to_string())
}

/// Parses a duration such as `500ms`, `30s`, `15m`, `24h` or `7d` into milliseconds. The unit
/// is required.
pub fn parse_duration_ms(raw: &str) -> Result<u64, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{raw:?}: expected a number and a unit, like 24h"))?;
    let scale: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        "" => return Err(format!("{raw:?}: add a unit (ms, s, m, h or d)")),
        other => {
            return Err(format!(
                "{raw:?}: unknown unit {other:?} (ms, s, m, h or d)"
            ));
        }
    };
    number
        .checked_mul(scale)
        .ok_or_else(|| format!("{raw:?} is too long"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::auth::TokenVerifier;

    fn cli(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("chatwire").chain(args.iter().copied()))
    }

    #[test]
    fn command_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_flags() {
        let c = cli(&[
            "serve",
            "--data-dir",
            "/d",
            "--listen",
            "127.0.0.1:0",
            "--config",
            "c.toml",
        ])
        .unwrap();
        assert!(matches!(c.command, Command::Serve(_)));
        assert_eq!(c.config, Some(PathBuf::from("c.toml")));
        let o = c.overrides();
        assert_eq!(o.data_dir, Some(PathBuf::from("/d")));
        assert_eq!(o.listen, Some("127.0.0.1:0".parse().unwrap()));
        // Global flags also go before the subcommand.
        let c = cli(&["--data-dir", "/d", "serve"]).unwrap();
        assert_eq!(c.overrides().data_dir, Some(PathBuf::from("/d")));
        assert!(cli(&["serve", "--listen", "localhost"]).is_err());
        assert!(cli(&[]).is_err());
    }

    #[test]
    fn token_flags() {
        let c = cli(&["token", "--user", "alice"]).unwrap();
        let Command::Token(args) = c.command else {
            panic!("not token")
        };
        assert_eq!(args.user.as_str(), "alice");
        assert_eq!(args.ttl_ms, 86_400_000);
        let c = cli(&["token", "--user", "bob", "--ttl", "90s"]).unwrap();
        let Command::Token(args) = c.command else {
            panic!("not token")
        };
        assert_eq!(args.ttl_ms, 90_000);
        assert!(cli(&["token"]).is_err());
        assert!(cli(&["token", "--user", "a b"]).is_err());
        assert!(cli(&["token", "--user", "a", "--ttl", "10"]).is_err());
        assert!(matches!(
            cli(&["migrate"]).unwrap().command,
            Command::Migrate
        ));
        assert!(matches!(
            cli(&["version"]).unwrap().command,
            Command::Version
        ));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("500ms"), Ok(500));
        assert_eq!(parse_duration_ms("15m"), Ok(900_000));
        assert_eq!(parse_duration_ms("7d"), Ok(604_800_000));
        for bad in ["", "h", "10", "1.5h", "-1h", "10y", "99999999999999999999h"] {
            assert!(parse_duration_ms(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_command_signs_with_the_data_folder_secret() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let args = TokenArgs {
            user: UserId::parse("alice").unwrap(),
            ttl_ms: 3_600_000,
        };
        let now = 1_800_000_000_000;
        let t = token(&config, &args, now).unwrap();
        // A server starting on the same folder reads the same secret and accepts the token.
        let dev = devdefaults::load_or_create(&config.data_dir).unwrap();
        let v = TokenVerifier::from_config(&config.auth, Some(&dev.jwt_secret)).unwrap();
        let verified = v.verify(&t, now).unwrap();
        assert_eq!(verified.user.as_str(), "alice");
        assert_eq!(verified.expires_at_ms, now + 3_600_000);
    }

    #[test]
    fn migrate_and_version() {
        migrate(&Config::default()).unwrap();
        assert!(version().starts_with("chatwire "));
    }
}
