//! `chatwire`: the server binary.
//!
//! Run the server on its embedded default: `cargo run --release -p chatwire-server -- serve`
//! Mint a development token: `cargo run -p chatwire-server -- token --user alice`

use std::process::ExitCode;

use chatwire_server::cli::{self, Command};
use chatwire_server::server::{Server, system_clock};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::parse();
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("chatwire: configuration: {err}");
            return ExitCode::from(2);
        }
    };
    let result = match &cli.command {
        Command::Serve(args) => serve(config, args.listen),
        Command::Token(args) => cli::token(&config, args, system_clock().now_ms())
            .map(|token| println!("{token}"))
            .map_err(|e| e.to_string()),
        Command::Migrate => cli::migrate(&config).map_err(|e| e.to_string()),
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

fn serve(
    mut config: chatwire_server::config::Config,
    listen: Option<std::net::SocketAddr>,
) -> Result<(), String> {
    if let Some(listen) = listen {
        config.listen = listen;
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(config.listen).await.map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let server = Server::build(&config, listener, system_clock()).await.map_err(|e| e.to_string())?;
        let addr = server.local_addr().map_or_else(|| config.listen.to_string(), |a| a.to_string());
        eprintln!("chatwire: serving on http://{addr} (WebSocket: ws://{addr}/v1/ws, subprotocol chatwire.v1)");
        if let (Some(quic), Some(fingerprint)) = (server.quic_addr(), server.quic_fingerprint()) {
            eprintln!("chatwire: QUIC on udp://{quic} (ALPN chatwire/1), certificate SHA-256 {fingerprint}");
        }
        eprintln!("chatwire: data in {}", config.data_dir.display());
        eprintln!("chatwire: get a development token with: chatwire --data-dir {} token --user alice", config.data_dir.display());
        server.serve(shutdown_signal()).await.map_err(|e| e.to_string())
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
