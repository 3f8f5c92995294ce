//! `pulsar`: the server binary.

use std::net::SocketAddr;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use pulsar_api::application::audit::SignedCheckpoint;
use pulsar_api::application::audit_export;
use pulsar_api::runtime::{Role, Runtime};
use pulsar_api::{app, db, Config};
use pulsar_projections::audit::EventFilter;
use tracing_subscriber::EnvFilter;

const USAGE: &str = "\
pulsar: scoped API keys, workspace data, webhooks and audit over an event log

Usage:
  pulsar serve [--role all|api|projector|dispatcher]   run the server (default role: all)
  pulsar migrate                            apply database migrations and exit
  pulsar projections rebuild <name|all>     replay the log into fresh read models and swap
                                            them in (the server may keep running)
  pulsar audit export [FILTERS] [--checkpoint FILE] > log.ndjson
                                            the log's events (all, or those FILTERS select:
                                            --workspace-id --aggregate-type --aggregate-id
                                            --actor-id --event-type --from --to, RFC 3339)
                                            with the latest signed checkpoint and the proofs
                                            an auditor needs; --checkpoint adds the proof
                                            that the log extends that saved checkpoint
  pulsar audit verify [--checkpoint FILE]   re-hash every event, recompute the signed root,
                                            and prove a saved checkpoint a prefix of the log
  pulsar audit verify --export FILE [--checkpoint FILE]
                                            check an export offline (no database)
  pulsar --help | --version
";

/// What the command line asks for.
enum Command {
    Serve(Role),
    Migrate,
    /// `projections rebuild <name|all>`.
    Rebuild(String),
    /// `audit export ...`.
    AuditExport {
        filter: EventFilter,
        since: Option<SignedCheckpoint>,
    },
    /// `audit verify [--checkpoint FILE]`.
    AuditVerify(Option<SignedCheckpoint>),
}

/// `--name value` or `--name=value` options, each at most once, of known names.
fn options<'a>(
    args: &[&'a str],
    known: &[&str],
) -> Result<std::collections::HashMap<String, &'a str>, String> {
    let mut out = std::collections::HashMap::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            return Err(format!("unexpected argument `{arg}`"));
        };
        let (name, value) = match flag.split_once('=') {
            Some((name, value)) => (name, value),
            None => (
                flag,
                *rest
                    .next()
                    .ok_or_else(|| format!("--{flag} needs a value"))?,
            ),
        };
        if !known.contains(&name) {
            return Err(format!("unknown option --{name}"));
        }
        if out.insert(name.to_string(), value).is_some() {
            return Err(format!("--{name} is given twice"));
        }
    }
    Ok(out)
}

fn read_checkpoint(path: &str) -> Result<SignedCheckpoint, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    SignedCheckpoint::parse(&text).map_err(|e| format!("{path}: {e}"))
}

fn time_option(name: &str, value: Option<&&str>) -> Result<Option<DateTime<Utc>>, String> {
    value
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| format!("--{name} must be an RFC 3339 time"))
        })
        .transpose()
}

/// `audit export` options.
fn export_command(args: &[&str]) -> Result<Command, String> {
    let given = options(
        args,
        &[
            "workspace-id",
            "aggregate-type",
            "aggregate-id",
            "actor-id",
            "event-type",
            "from",
            "to",
            "checkpoint",
        ],
    )?;
    let text = |name: &str| given.get(name).map(|v| v.to_string());
    let filter = EventFilter {
        workspace_id: text("workspace-id"),
        aggregate_type: text("aggregate-type"),
        aggregate_id: text("aggregate-id"),
        actor_id: text("actor-id"),
        event_type: text("event-type"),
        from: time_option("from", given.get("from"))?,
        to: time_option("to", given.get("to"))?,
        below_index: None,
    };
    let since = given
        .get("checkpoint")
        .map(|p| read_checkpoint(p))
        .transpose()?;
    Ok(Command::AuditExport { filter, since })
}

/// `audit verify --export FILE [--checkpoint FILE]`: offline, no database.
fn verify_export(path: &str, saved: Option<&SignedCheckpoint>) -> ExitCode {
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) => {
            eprintln!("pulsar: {path}: {error}");
            return ExitCode::from(2);
        }
    };
    let mut display = ProgressDisplay::new();
    let report = audit_export::verify_export(
        std::io::BufReader::with_capacity(1 << 20, file),
        saved,
        |p| display.show(p),
    );
    display.finish();
    println!(
        "{}",
        serde_json::to_string_pretty(&report).unwrap_or_default()
    );
    if report.ok {
        ExitCode::SUCCESS
    } else {
        eprintln!(
            "pulsar: the export does not verify: {}",
            report.problem.as_deref().unwrap_or("")
        );
        ExitCode::FAILURE
    }
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
        ["audit", "export", rest @ ..] => match export_command(rest) {
            Ok(command) => command,
            Err(error) => {
                eprintln!("pulsar: audit export: {error}");
                return ExitCode::from(2);
            }
        },
        ["audit", "verify", rest @ ..] => {
            let given = match options(rest, &["checkpoint", "export"]) {
                Ok(given) => given,
                Err(error) => {
                    eprintln!("pulsar: audit verify: {error}");
                    return ExitCode::from(2);
                }
            };
            let saved = match given
                .get("checkpoint")
                .map(|p| read_checkpoint(p))
                .transpose()
            {
                Ok(saved) => saved,
                Err(error) => {
                    eprintln!("pulsar: audit verify: {error}");
                    return ExitCode::from(2);
                }
            };
            if let Some(path) = given.get("export") {
                return verify_export(path, saved.as_ref());
            }
            Command::AuditVerify(saved)
        }
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
        Command::AuditExport { filter, since } => {
            let result = audit_export_to_stdout(&pool, filter, since.as_ref()).await;
            stop_cluster(cluster).await?;
            return result;
        }
        Command::AuditVerify(saved) => {
            let result = audit_verify(&pool, saved.as_ref()).await;
            stop_cluster(cluster).await?;
            return result;
        }
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

async fn stop_cluster(cluster: Option<pgcluster::Cluster>) -> Result<(), BoxError> {
    if let Some(mut cluster) = cluster {
        tokio::task::spawn_blocking(move || cluster.stop()).await??;
    }
    Ok(())
}

/// `pulsar audit export`: NDJSON to stdout, progress and a summary to stderr.
async fn audit_export_to_stdout(
    pool: &sqlx::PgPool,
    filter: EventFilter,
    since: Option<&SignedCheckpoint>,
) -> Result<(), BoxError> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 20, stdout.lock());
    let mut display = ProgressDisplay::new();
    let summary = audit_export::export(pool, filter, since, &mut out, |p| display.show(p)).await;
    display.finish();
    let summary = summary?;
    eprintln!(
        "exported {} events of a tree of {} ({})",
        summary.events,
        summary.tree_size,
        if summary.complete {
            "the whole log: its leaves give the checkpoint's root"
        } else {
            "filtered: each event carries its inclusion proof"
        }
    );
    Ok(())
}

/// `pulsar audit verify [--checkpoint FILE]`: the report as JSON on stdout; fails unless
/// everything holds.
async fn audit_verify(
    pool: &sqlx::PgPool,
    saved: Option<&SignedCheckpoint>,
) -> Result<(), BoxError> {
    let mut display = ProgressDisplay::new();
    let report = audit_export::verify_log(pool, saved, |p| display.show(p)).await;
    display.finish();
    let report = report?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    if report.ok {
        Ok(())
    } else {
        Err("the audit log does not verify (see the report above)".into())
    }
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
