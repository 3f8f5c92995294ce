//! `pulsar`: the server binary.

use std::net::SocketAddr;
use std::process::ExitCode;

use pulsar_api::runtime::{Role, Runtime};
use pulsar_api::{app, db, Config};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
pulsar: scoped API keys, workspace data, webhooks and audit over an event log

Usage:
  pulsar serve [--role all|api|projector|dispatcher]   run the server (default role: all)
  pulsar migrate                            apply database migrations and exit
  pulsar projections rebuild <name|all>     replay the log into fresh read models and swap
                                            them in (the server may keep running)
  pulsar --help | --version
";

/// What the command line asks for.
enum Command {
    Serve(Role),
    Migrate,
    /// `projections rebuild <name|all>`.
    Rebuild(String),
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let command = match args.as_slice() {
        [] | ["--help"] | ["-h"] | ["help"] => {
            println!("{USAGE}\n{}", Config::HELP);
            return ExitCode::SUCCESS;
        }
        ["--version"] | ["-V"] => {
            println!("pulsar {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        ["serve"] => Command::Serve(Role::All),
        ["serve", "--role", role] | ["serve", "--role=", role] => match Role::parse(role) {
            Some(role) => Command::Serve(role),
            None => {
                eprintln!("pulsar: unknown role `{role}` (all, api, projector, dispatcher)");
                return ExitCode::from(2);
            }
        },
        ["migrate"] => Command::Migrate,
        ["projections", "rebuild", name] => Command::Rebuild(name.to_string()),
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
    match runtime.block_on(run(command, config)) {
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

async fn run(command: Command, config: Config) -> Result<(), BoxError> {
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
    let role = match command {
        Command::Serve(role) => role,
        Command::Migrate => {
            db::migrate(&pool).await?;
            println!("migrations applied");
            return Ok(());
        }
        Command::Rebuild(name) => return rebuild(&pool, &name, cluster).await,
    };
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

/// `pulsar projections rebuild <name|all>`.
async fn rebuild(
    pool: &sqlx::PgPool,
    name: &str,
    cluster: Option<pgcluster::Cluster>,
) -> Result<(), BoxError> {
    db::migrate(pool).await?;
    let mut display = ProgressDisplay::new();
    let reports = pulsar_api::runtime::rebuild(pool, name, |progress| display.show(progress)).await;
    display.finish();
    for report in reports? {
        println!(
            "rebuilt {}: {} events in {:.1} s ({:.0} events/s), at {}",
            report.name,
            report.events,
            report.elapsed.as_secs_f64(),
            report.events as f64 / report.elapsed.as_secs_f64().max(1e-9),
            report.position
        );
    }
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

/// A progress bar on a terminal (events done, events/s, time left), plain progress lines
/// about once a second otherwise.
struct ProgressDisplay {
    terminal: bool,
    last: Option<std::time::Instant>,
    drawn: bool,
}

impl ProgressDisplay {
    fn new() -> Self {
        use std::io::IsTerminal;
        Self {
            terminal: std::io::stderr().is_terminal(),
            last: None,
            drawn: false,
        }
    }

    fn show(&mut self, progress: &pulsar_projections::rebuild::Progress) {
        use std::io::Write;
        let due = self.last.is_none_or(|at| {
            at.elapsed() >= std::time::Duration::from_millis(if self.terminal { 100 } else { 1000 })
        });
        if !due && progress.done < progress.total {
            return;
        }
        self.last = Some(std::time::Instant::now());
        let total = progress.total.max(progress.done).max(1);
        let line = format!(
            "{}: {}/{} events, {:.0} events/s, {} s left",
            progress.name,
            progress.done,
            total,
            progress.per_second(),
            progress.left().as_secs()
        );
        let mut err = std::io::stderr();
        if self.terminal {
            const WIDTH: u64 = 30;
            let filled = (progress.done * WIDTH / total).min(WIDTH) as usize;
            let bar = format!(
                "[{}{}]",
                "#".repeat(filled),
                "-".repeat(WIDTH as usize - filled)
            );
            let _ = write!(err, "\r\x1b[2K{bar} {line}");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.drawn {
            eprintln!();
        }
    }
}
