//! The `chatwire` command line: `serve`, `token`, `migrate`, `check-config`, `backup`,
//! `restore`, `version`.
//!
//! This module parses flags and runs the commands that need no server; `serve` is dispatched
//! by the binary. `--config` and `--data-dir` go before or after the subcommand.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::auth::{AuthSetupError, MintError, TokenMinter, TokenVerifier};
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
    /// Print the effective configuration and where each value came from (default, file,
    /// environment variable or flag), then exit.
    CheckConfig,
    /// Back up the store, the event queues and the secrets into a new or empty folder: a
    /// running server is asked through its admin API, otherwise the files are copied.
    Backup(BackupArgs),
    /// Restore a backup into the data folder, which must be new or empty.
    Restore(RestoreArgs),
    /// Rebuild the message search index from the room log (the server must be stopped).
    Reindex,
    /// Print the version.
    Version,
}

/// Flags of `backup`.
#[derive(Debug, Clone, Args)]
pub struct BackupArgs {
    /// The backup folder (new or empty); on the server's machine when a server makes it.
    #[arg(long, value_name = "DIR")]
    pub to: PathBuf,
    /// The running server's base URL (default: the configured `listen` address, when the
    /// data folder's store is in use).
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// Flags of `restore`.
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// The backup folder (holding `manifest.json`).
    #[arg(long, value_name = "DIR")]
    pub from: PathBuf,
}

/// Flags of `serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Listen address, `IP:PORT` or `localhost:PORT` (default `127.0.0.1:8080`; port 0 picks a
    /// free port).
    #[arg(long, value_name = "ADDR", value_parser = crate::config::parse_listen)]
    pub listen: Option<SocketAddr>,
}

/// Flags of `token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user id (the token's `sub`).
    #[arg(long, value_name = "NAME", value_parser = parse_user, required_unless_present = "verify")]
    pub user: Option<UserId>,
    /// Check a token instead: print its user and expiry if this server would accept it, or why
    /// not.
    #[arg(long, value_name = "TOKEN", conflicts_with = "user")]
    pub verify: Option<String>,
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
    /// A token was refused.
    #[error("token refused: {0}")]
    Refused(String),
    /// A backup or restore failed.
    #[error(transparent)]
    Backup(#[from] crate::backup::BackupError),
    /// The running server refused or failed a backup.
    #[error("backup by the server at {url}: {message}")]
    Remote {
        /// The server asked.
        url: String,
        /// What went wrong.
        message: String,
    },
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
        crate::config::load(&self.sources())
    }

    /// Where the configuration comes from in this process.
    pub fn sources(&self) -> ConfigSources {
        ConfigSources::from_process_env(self.config.clone(), self.overrides())
    }

    /// The configuration file in use (`--config`, else `CHATWIRE_CONFIG`).
    pub fn config_file(&self) -> Option<PathBuf> {
        self.sources().file
    }
}

/// `chatwire token`: a token for `user` issued at `now_ms`, signed so that a server with the
/// same configuration and data folder accepts it. Creates the development secrets when the
/// data folder has none yet (see [`new_secrets_warning`]).
pub fn token(config: &Config, user: &UserId, ttl_ms: u64, now_ms: i64) -> Result<String, CliError> {
    let dev = match config.auth.hs256_secret_file {
        Some(_) => None,
        None => Some(devdefaults::load_or_create(&config.data_dir)?),
    };
    let minter =
        TokenMinter::from_config(&config.auth, dev.as_ref().map(|d| d.jwt_secret.as_slice()))?;
    let ttl_ms = i64::try_from(ttl_ms).map_err(|_| MintError::BadLifetime)?;
    Ok(minter.mint(user, ttl_ms, now_ms)?)
}

/// The warning `chatwire token` prints before it creates a new HS256 secret: a token signed
/// with it is refused by a server that runs on another data folder.
pub fn new_secrets_warning(config: &Config) -> Option<String> {
    if config.auth.hs256_secret_file.is_some() {
        return None;
    }
    let secret = config.data_dir.join(devdefaults::JWT_SECRET_FILE);
    if secret.exists() {
        return None;
    }
    Some(format!(
        "warning: {} holds no {} yet: creating new development secrets there. A server started          on another data folder refuses this token: pass the server's --data-dir (or --config          with its data_dir / auth.hs256_secret_file)",
        config.data_dir.display(),
        devdefaults::JWT_SECRET_FILE
    ))
}

/// `chatwire token --verify`: who the token is for and when it expires, if a server with
/// this configuration and data folder accepts it now. Creates nothing.
pub fn verify(config: &Config, token: &str, now_ms: i64) -> Result<String, CliError> {
    let secret = match &config.auth.hs256_secret_file {
        Some(_) => None,
        None => {
            let path = config.data_dir.join(devdefaults::JWT_SECRET_FILE);
            match std::fs::read(&path) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if config
                        .auth
                        .algorithms
                        .contains(&crate::config::JwtAlgorithm::Hs256)
                    {
                        return Err(CliError::Refused(format!(
                            "{} does not exist: no server has run on {} (wrong --data-dir?)",
                            path.display(),
                            config.data_dir.display()
                        )));
                    }
                    None
                }
                Err(e) => return Err(CliError::Refused(format!("{}: {e}", path.display()))),
            }
        }
    };
    let verifier = TokenVerifier::from_config(&config.auth, secret.as_deref())?;
    let verified = verifier
        .verify(token.trim(), now_ms)
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let mut line = format!(
        "valid: user {}, expires at {} ms ({} s from now)",
        verified.user,
        verified.expires_at_ms,
        (verified.expires_at_ms - now_ms) / 1000
    );
    if let Some(iat) = verified.issued_at_ms {
        line.push_str(&format!(", issued at {iat} ms"));
    }
    line.push_str(" (revocations are checked by the server)");
    Ok(line)
}

/// Runs `chatwire token` as the binary does: prints the token, or the verdict of `--verify`.
pub fn token_command(config: &Config, args: &TokenArgs, now_ms: i64) -> Result<(), String> {
    if let Some(token) = &args.verify {
        println!(
            "{}",
            verify(config, token, now_ms).map_err(|e| e.to_string())?
        );
        return Ok(());
    }
    let Some(user) = &args.user else {
        return Err("give --user NAME or --verify TOKEN".into());
    };
    if let Some(warning) = new_secrets_warning(config) {
        eprintln!("chatwire: {warning}");
    }
    let token = token(config, user, args.ttl_ms, now_ms).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}

/// The command that mints a token for this server, as start-up prints it: this binary's
/// path, the data folder and the configuration file.
pub fn token_hint(cli: &Cli, config: &Config) -> String {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "chatwire".into());
    let mut hint = exe;
    if let Some(file) = cli.config_file() {
        hint.push_str(&format!(" --config {}", file.display()));
    }
    hint.push_str(&format!(
        " --data-dir {} token --user alice",
        config.data_dir.display()
    ));
    hint
}

/// Warnings about this process's environment: `CHATWIRE_*` variables that look like
/// misspelled configuration variables (they are ignored).
pub fn env_warnings() -> Vec<String> {
    let env: Vec<_> = std::env::vars_os().collect();
    crate::config::misspelled_env(&env)
        .into_iter()
        .map(|(var, meant)| {
            format!("{var} is not a configuration variable and is ignored: did you mean {meant}?")
        })
        .collect()
}

/// `chatwire check-config`: the effective configuration, one `key = value  # source` line
/// per value, with the warnings of [`env_warnings`].
pub fn check_config(cli: &Cli) -> Result<(), CliError> {
    let sources = cli.sources();
    match &sources.file {
        Some(file) => println!("# configuration file: {}", file.display()),
        None => println!("# no configuration file (--config or CHATWIRE_CONFIG)"),
    }
    let settings = crate::config::explain(&sources)?;
    let width = settings
        .iter()
        .map(|s| s.key.len() + s.value.len() + 3)
        .max()
        .unwrap_or(0);
    for setting in settings {
        let line = format!("{} = {}", setting.key, setting.value);
        println!("{line:width$}  # {}", setting.source);
    }
    for warning in env_warnings() {
        println!("# warning: {warning}");
    }
    println!("# configuration is valid");
    Ok(())
}

/// `chatwire backup`: asks the running server (`--server`, or the configured address when
/// the store is in use) or copies the files of a stopped one.
pub fn backup(config: &Config, args: &BackupArgs) -> Result<(), CliError> {
    if config.storage.backend == crate::config::StoreBackend::Scylla {
        return Err(CliError::Remote {
            url: "-".into(),
            message: "backups cover the embedded store and event queues; back up ScyllaDB \
                      and RabbitMQ with their own tools (docs/operations.md)"
                .into(),
        });
    }
    let to = crate::backup::absolute(&args.to)?;
    let manifest = match &args.server {
        Some(url) => remote_backup(config, url, &to)?,
        None => {
            let now = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
            let open = crate::backup::OpenDatabases::default();
            match crate::backup::backup(&config.data_dir, &open, &to, now) {
                Ok(manifest) => manifest,
                Err(crate::backup::BackupError::Copy(
                    crate::backend::redb_backup::CopyError::Locked(_),
                )) => {
                    let recorded = std::fs::read_to_string(config.data_dir.join(SERVER_URL_FILE));
                    let url = match recorded {
                        Ok(url) if !url.trim().is_empty() => url.trim().to_owned(),
                        _ => base_url(config, config.listen),
                    };
                    eprintln!("chatwire: the store is in use: asking the server at {url}");
                    remote_backup(config, &url, &to)?
                }
                Err(err) => return Err(err.into()),
            }
        }
    };
    let databases = manifest.files.iter().filter(|f| f.kind != "secret").count();
    println!(
        "backup written to {}: {} files ({databases} databases), {} by a running server",
        to.display(),
        manifest.files.len(),
        if manifest.online {
            "copied"
        } else {
            "not copied"
        }
    );
    Ok(())
}

/// The file in the data folder where a running server records its base URL, so that
/// `chatwire backup` finds it (the configured `listen` may say port 0 or every interface).
pub const SERVER_URL_FILE: &str = "server-url";

/// The base URL a command on this machine reaches a server bound to `addr` at (the loopback
/// for an unspecified address).
pub fn base_url(config: &Config, addr: std::net::SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => "127.0.0.1".to_owned(),
        ip if ip.is_unspecified() => "[::1]".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        ip => ip.to_string(),
    };
    format!("{}://{host}:{}", config.http_scheme(), addr.port())
}

/// Records the base URL of the server now serving on `addr` in the data folder (see
/// [`SERVER_URL_FILE`]); [`forget_server_url`] removes it at shutdown.
pub fn record_server_url(config: &Config, addr: std::net::SocketAddr) -> std::io::Result<()> {
    std::fs::write(
        config.data_dir.join(SERVER_URL_FILE),
        base_url(config, addr) + "\n",
    )
}

/// Removes the record of [`record_server_url`].
pub fn forget_server_url(config: &Config) {
    let _ = std::fs::remove_file(config.data_dir.join(SERVER_URL_FILE));
}

/// `chatwire restore`: the backup into the configured data folder (new or empty).
pub fn restore(config: &Config, args: &RestoreArgs) -> Result<(), CliError> {
    let manifest = crate::backup::restore(&args.from, &config.data_dir)?;
    println!(
        "restored {} files from {} into {}",
        manifest.files.len(),
        args.from.display(),
        config.data_dir.display()
    );
    Ok(())
}

/// `POST /admin/backup` on the server at `url` (`http://` or `https://`, trusting the
/// configured or development certificate), with the data folder's admin key.
fn remote_backup(
    config: &Config,
    url: &str,
    to: &std::path::Path,
) -> Result<crate::backup::Manifest, CliError> {
    let remote = |message: String| CliError::Remote {
        url: url.to_owned(),
        message,
    };
    let key_path = config.data_dir.join(devdefaults::ADMIN_KEY_FILE);
    let key = std::fs::read_to_string(&key_path)
        .map_err(|e| remote(format!("admin key {}: {e}", key_path.display())))?;
    let body = serde_json::json!({ "to": to.display().to_string() }).to_string();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| remote(e.to_string()))?;
    let (status, text) = runtime
        .block_on(crate::http::client::post_json(
            url,
            "/admin/backup",
            key.trim(),
            &body,
            &config.data_dir,
            config.quic.cert_file.as_deref(),
        ))
        .map_err(remote)?;
    if status != 200 {
        return Err(remote(format!("HTTP {status}: {text}")));
    }
    serde_json::from_str(&text).map_err(|e| remote(format!("unreadable manifest: {e}")))
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

/// `chatwire reindex`: empties the search index in the data folder and fills it from every
/// room of the embedded store, printing what it did. A running server holds the index: stop
/// it first (the index is also rebuilt at start whenever it is not known complete).
pub fn reindex(config: &Config) -> Result<(), String> {
    use crate::backend::embedded::{EmbeddedOptions, EmbeddedStore};
    use crate::backend::store::Store;
    if config.storage.backend != crate::config::StoreBackend::Embedded {
        return Err(
            "reindex rebuilds the embedded data folder's index; a cluster node \
             catches up from its index queue (docs/architecture.md \"Message search\")"
                .into(),
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let options = EmbeddedOptions {
            bucket_width_ms: i64::try_from(config.storage.bucket_width_ms).unwrap_or(3_600_000),
            sync: true,
        };
        let embedded = EmbeddedStore::open(&config.data_dir.join("store"), options)
            .map_err(|e| e.to_string())?;
        let store: std::sync::Arc<dyn Store> = std::sync::Arc::new(embedded.clone());
        let dir = config.data_dir.join(crate::search::INDEX_DIR);
        let (index, _) = crate::search::SearchIndex::open(&dir).map_err(|e| e.to_string())?;
        let index = std::sync::Arc::new(index);
        let started = std::time::Instant::now();
        let done = crate::server::reindex(store.as_ref(), &embedded, &index, &dir).await?;
        println!(
            "reindexed {} messages of {} rooms in {} ms",
            done.messages,
            done.rooms,
            started.elapsed().as_millis()
        );
        Ok(())
    })
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
        let c = cli(&["serve", "--listen", "localhost:8080"]).unwrap();
        assert_eq!(
            c.overrides().listen,
            Some("127.0.0.1:8080".parse().unwrap())
        );
        let e = cli(&["serve", "--listen", "chat.example:8080"]).unwrap_err();
        assert!(e.to_string().contains("use an IP address"), "{e}");
        assert!(cli(&[]).is_err());
    }

    #[test]
    fn token_flags() {
        let c = cli(&["token", "--user", "alice"]).unwrap();
        let Command::Token(args) = c.command else {
            panic!("not token")
        };
        assert_eq!(args.user.unwrap().as_str(), "alice");
        assert_eq!(args.ttl_ms, 86_400_000);
        let c = cli(&["token", "--verify", "a.b.c"]).unwrap();
        let Command::Token(args) = c.command else {
            panic!("not token")
        };
        assert_eq!(args.verify.as_deref(), Some("a.b.c"));
        assert!(cli(&["token", "--user", "a", "--verify", "x"]).is_err());
        assert!(matches!(
            cli(&["check-config"]).unwrap().command,
            Command::CheckConfig
        ));
        assert!(cli(&["backup"]).is_err());
        assert!(matches!(
            cli(&["backup", "--to", "/b"]).unwrap().command,
            Command::Backup(_)
        ));
        assert!(matches!(
            cli(&["restore", "--from", "/b"]).unwrap().command,
            Command::Restore(_)
        ));
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
        // A folder without secrets: the command warns before creating them.
        assert!(new_secrets_warning(&config).is_some());
        let now = 1_800_000_000_000;
        let t = token(&config, &UserId::parse("alice").unwrap(), 3_600_000, now).unwrap();
        assert!(new_secrets_warning(&config).is_none());
        let verdict = verify(&config, &t, now).unwrap();
        assert!(verdict.starts_with("valid: user alice"), "{verdict}");
        // Another folder: --verify says why, and creates nothing there.
        let other = Config {
            data_dir: dir.path().join("other"),
            ..Config::default()
        };
        let e = verify(&other, &t, now).unwrap_err().to_string();
        assert!(e.contains("wrong --data-dir"), "{e}");
        assert!(!other.data_dir.exists());
        devdefaults::load_or_create(&other.data_dir).unwrap();
        let e = verify(&other, &t, now).unwrap_err().to_string();
        assert!(e.contains("signature"), "{e}");
        let e = verify(&config, &t, now + 7_200_000)
            .unwrap_err()
            .to_string();
        assert!(e.contains("expired"), "{e}");
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
