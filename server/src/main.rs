//! `chatwire`: the server binary.
//!
//! Run the server on its embedded default: `cargo run --release -p chatwire-server -- serve`
//! Mint a development token: `target/release/chatwire token --user alice`

use std::process::ExitCode;

use chatwire_server::cli::{self, Command};
use chatwire_server::server::{Server, system_clock};

fn main() -> ExitCode {
    let cli = cli::parse();
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("chatwire: configuration: {err}");
            return ExitCode::from(2);
        }
    };
    chatwire_server::logs::init(config.log.format);
    for warning in cli::env_warnings() {
        tracing::warn!("{warning}");
    }
    let result = match &cli.command {
        Command::Serve(_) => serve(&cli, config),
        Command::Token(args) => cli::token_command(&config, args, system_clock().now_ms()),
        Command::Migrate => cli::migrate(&config).map_err(|e| e.to_string()),
        Command::CheckConfig => cli::check_config(&cli).map_err(|e| e.to_string()),
        Command::Backup(args) => cli::backup(&config, args).map_err(|e| e.to_string()),
        Command::Restore(args) => cli::restore(&config, args).map_err(|e| e.to_string()),
        Command::Reindex => cli::reindex(&config),
        Command::Version => {
            println!("{}", cli::version());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("chatwire: {err}");
            ExitCode::FAILURE
        }
    }
}

fn serve(cli: &cli::Cli, config: chatwire_server::config::Config) -> Result<(), String> {
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let server = Server::build(&config, listener, system_clock()).await.map_err(|e| e.to_string())?;
        let addr = server.local_addr().map_or_else(|| config.listen.to_string(), |a| a.to_string());
        let (http, ws) = if config.tls.enabled { ("https", "wss") } else { ("http", "ws") };
        eprintln!("chatwire: serving on {http}://{addr} (WebSocket: {ws}://{addr}/v1/ws, subprotocol chatwire.v1)");
        eprintln!("chatwire: example chat page {http}://{addr}/ ; admin API docs {http}://{addr}/docs ; dashboard {http}://{addr}/dashboard");
        if let (Some(quic), Some(fingerprint)) = (server.quic_addr(), server.quic_fingerprint()) {
            eprintln!("chatwire: QUIC on udp://{quic} (ALPN chatwire/1), certificate SHA-256 {fingerprint}");
        }
        eprintln!("chatwire: data in {}", config.data_dir.display());
        eprintln!("chatwire: admin key in {} (send it as Authorization: Bearer <key>)", config.data_dir.join(chatwire_server::devdefaults::ADMIN_KEY_FILE).display());
        eprintln!("chatwire: get a development token with: {}", cli::token_hint(cli, &config));
        if let Some(bound) = server.local_addr()
            && let Err(err) = cli::record_server_url(&config, bound)
        {
            tracing::warn!(error = %err, "cannot record the server's URL for `chatwire backup`");
        }
        let served = server.serve(shutdown_signal()).await.map_err(|e| e.to_string());
        cli::forget_server_url(&config);
        served
    })
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("chatwire: shutting down");
}
