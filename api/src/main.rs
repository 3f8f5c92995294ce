//! `pulsar`: the server binary.

use std::net::SocketAddr;
use std::process::ExitCode;

use pulsar_api::runtime::{Role, Runtime};
use pulsar_api::{app, db, Config};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
pulsar: scoped API keys, workspace data, webhooks and audit over an event log

Usage:
  pulsar serve [--role all|api|projector]   run the server (default role: all)
  pulsar migrate                            apply database migrations and exit
  pulsar --help | --version
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (command, role) = match args.as_slice() {
        [] | ["--help"] | ["-h"] | ["help"] => {
            println!("{USAGE}\n{}", Config::HELP);
            return ExitCode::SUCCESS;
        }
        ["--version"] | ["-V"] => {
            println!("pulsar {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        ["serve"] => ("serve", Role::All),
        ["serve", "--role", role] | ["serve", "--role=", role] => match Role::parse(role) {
            Some(role) => ("serve", role),
            None => {
                eprintln!("pulsar: unknown role `{role}` (all, api, projector)");
                return ExitCode::from(2);
            }
        },
        ["migrate"] => ("migrate", Role::All),
        _ => {
            eprintln!("pulsar: unexpected arguments {args:?}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("pulsar: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("pulsar: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(command, role, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error}");
            eprintln!("pulsar: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

async fn run(command: &str, role: Role, config: Config) -> Result<(), BoxError> {
    let mut cluster = None;
    let url = match &config.database_url {
        Some(url) => url.clone(),
        None => {
            let (started, url) = embedded(&config).await?;
            cluster = Some(started);
            url
        }
    };
    let pool = db::connect(&url, config.db_pool_size)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))?;
    if command == "migrate" {
        db::migrate(&pool).await?;
        println!("migrations applied");
        return Ok(());
    }
    let listen = config.listen;
    let runtime = Runtime::start(config, pool, role).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let address = listener.local_addr()?;
    let router = app(runtime.state.clone());
    tracing::info!(%address, ?role, "pulsar is ready");
    println!("pulsar listening on http://{address}");
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    tracing::info!("shutting down");
    runtime.stop().await;
    if let Some(mut cluster) = cluster {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    Ok(())
}

/// Starts (or reuses) the private cluster under the data dir and returns a URL to the
/// `pulsar` database in it.
async fn embedded(config: &Config) -> Result<(pgcluster::Cluster, String), BoxError> {
    let options = pgcluster::ClusterOptions::new(config.data_dir.clone());
    tracing::info!(data_dir = %config.data_dir.display(), "no DATABASE_URL; starting the embedded PostgreSQL");
    let cluster = tokio::task::spawn_blocking(move || pgcluster::Cluster::start(&options))
        .await?
        .map_err(|e| format!("embedded PostgreSQL: {e}"))?;
    let admin = db::connect(&cluster.url("postgres"), 1).await?;
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = 'pulsar')")
            .fetch_one(&admin)
            .await?;
    if !exists {
        sqlx::query("CREATE DATABASE pulsar")
            .execute(&admin)
            .await?;
    }
    admin.close().await;
    let url = cluster.url("pulsar");
    Ok((cluster, url))
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
