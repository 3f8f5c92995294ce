//! An embedded, private PostgreSQL cluster.
//!
//! [`Cluster::start`] finds the server binaries ([`find_bin_dir`]), runs
//! `initdb` on first use, starts `postgres` on a free port on 127.0.0.1
//! (TCP only, no Unix socket) and waits until it accepts connections. It is
//! used by `pulsar serve` when no `DATABASE_URL` is given, and by the test
//! harness, which starts one throwaway (non-durable) cluster per test
//! process and creates a fresh database per test.
//!
//! The server is a child of a dedicated thread and gets SIGTERM when this
//! process dies, so clusters never outlive their owner, even when the
//! [`Cluster`] is never dropped. Dropping or [`Cluster::stop`]ping it shuts
//! the server down cleanly.
//!
//! PostgreSQL refuses to run as root. When running as root, `initdb` and
//! `postgres` run as the `postgres` system user, which gets ownership of the
//! data directory; its parent directories must be traversable by that user.
//!
//! # Layout
//!
//! Everything lives in [`ClusterOptions::data_dir`]:
//!
//! - `pg/` — the PostgreSQL data directory (`PGDATA`), created by `initdb`.
//! - `pg-password` — the password of the superuser `pulsar`, generated at
//!   `initdb` time (mode 0600, owned by the invoking user).
//! - `postgres.log` — the server's stdout and stderr, appended to across
//!   runs.

#![warn(missing_docs)]

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

mod bin;
mod error;
mod os;
mod supervisor;

pub use bin::find_bin_dir;
pub use error::ClusterError;

use os::RunAs;
use supervisor::Supervisor;

/// The superuser `initdb` creates.
const SUPERUSER: &str = "pulsar";
/// How long the server may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a fast shutdown may take before escalating.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often to look at `postmaster.pid` while starting.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Starts to try when the free port we picked is taken before the server
/// binds it.
const PORT_ATTEMPTS: usize = 5;
/// Lines of the server log to include in errors.
const LOG_TAIL_LINES: usize = 40;

/// How to set up and run a [`Cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterOptions {
    /// Directory that holds the cluster (created if missing). The PGDATA lives in `<data_dir>/pg`.
    pub data_dir: PathBuf,
    /// false => fsync=off, synchronous_commit=off, full_page_writes=off (throwaway test clusters). true for real use.
    pub durable: bool,
    /// max_connections (default 200)
    pub max_connections: u32,
    /// More `name=value` server settings (e.g. `shared_preload_libraries=pg_stat_statements`
    /// for a benchmark that counts statements).
    pub settings: Vec<String>,
}

impl ClusterOptions {
    /// Options for a durable cluster in `data_dir` allowing 200 connections.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ClusterOptions {
            data_dir: data_dir.into(),
            durable: true,
            max_connections: 200,
            settings: Vec::new(),
        }
    }
}

/// A running PostgreSQL server owned by this process.
///
/// Stopped (fast shutdown) by [`Cluster::stop`] or on drop; killed with
/// SIGTERM by the kernel if this process dies first.
pub struct Cluster {
    data_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    password: String,
    server: Option<Supervisor>,
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("data_dir", &self.data_dir)
            .field("port", &self.port)
            .field("pid", &self.server.as_ref().map(Supervisor::pid))
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Cluster {
    /// Blocking. Finds binaries, runs initdb if `<data_dir>/pg/PG_VERSION` is missing, starts postgres on 127.0.0.1 with a free TCP port (bind port 0 to find one), waits until it accepts connections (poll postmaster.pid's status line == "ready" plus a TCP connect; timeout 60 s with a clear error including the tail of the server log), and returns.
    ///
    /// Fails with [`ClusterError::StartFailed`] if another live server
    /// uses the data directory; a `postmaster.pid` left by a crashed run is
    /// removed.
    pub fn start(opts: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let bin_dir = find_bin_dir()?;
        let run_as = RunAs::detect()?;

        fs::create_dir_all(&opts.data_dir).map_err(ClusterError::io(format!(
            "creating the data directory {}",
            opts.data_dir.display()
        )))?;
        let data_dir = fs::canonicalize(&opts.data_dir).map_err(ClusterError::io(format!(
            "resolving the data directory {}",
            opts.data_dir.display()
        )))?;
        let pgdata = data_dir.join("pg");
        let password_path = data_dir.join("pg-password");
        let log_path = data_dir.join("postgres.log");

        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .map_err(ClusterError::io(format!("opening {}", log_path.display())))?;

        if let RunAs::User { uid, gid } = run_as {
            os::check_traversable(&data_dir, uid, gid)?;
            os::chown_recursive(&data_dir, uid, gid, &password_path)?;
        }

        let password = if pgdata.join("PG_VERSION").is_file() {
            read_password(&password_path)?
        } else {
            initdb(&bin_dir, &data_dir, &pgdata, &password_path, run_as, opts)?
        };

        let mut attempt = 0;
        loop {
            attempt += 1;
            remove_stale_pid_file(&pgdata)?;
            let port = free_port()?;
            let log_offset = log
                .metadata()
                .map_err(ClusterError::io(format!(
                    "inspecting {}",
                    log_path.display()
                )))?
                .len();
            let stdout = log
                .try_clone()
                .map_err(ClusterError::io(format!("opening {}", log_path.display())))?;
            let stderr = log
                .try_clone()
                .map_err(ClusterError::io(format!("opening {}", log_path.display())))?;

            let mut cmd = run_as.command(&bin_dir.join("postgres"));
            cmd.arg("-D")
                .arg(&pgdata)
                .arg("-p")
                .arg(port.to_string())
                .args(server_settings(opts))
                .current_dir(&data_dir)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr);
            let mut server = Supervisor::spawn(cmd, format!("pgcluster-{port}")).map_err(
                ClusterError::io(format!("running {}", bin_dir.join("postgres").display())),
            )?;

            match wait_until_ready(&mut server, &pgdata, port) {
                Ready::Yes => {
                    return Ok(Cluster {
                        data_dir,
                        log_path,
                        port,
                        password,
                        server: Some(server),
                    })
                }
                Ready::Exited(status) => {
                    let tail = log_tail(&log_path, log_offset);
                    let port_taken =
                        tail.contains("could not bind") || tail.contains("already in use");
                    if port_taken && attempt < PORT_ATTEMPTS {
                        continue;
                    }
                    return Err(ClusterError::StartFailed {
                        log_tail: format!("postgres exited during startup ({status})\n{tail}"),
                    });
                }
                Ready::TimedOut => {
                    server.shut_down(libc::SIGQUIT, Duration::from_secs(5));
                    return Err(ClusterError::Timeout {
                        log_tail: format!(
                            "the server did not accept connections on port {port} within {} s\n{}",
                            START_TIMEOUT.as_secs(),
                            log_tail(&log_path, log_offset)
                        ),
                    });
                }
            }
        }
    }

    /// postgres://<user>:<password>@127.0.0.1:<port>/<database>
    ///
    /// The database name is percent-encoded; the user is `pulsar`, a
    /// superuser.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://{SUPERUSER}:{}@127.0.0.1:{}/{}",
            self.password,
            self.port,
            percent_encode(database)
        )
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Fast shutdown (SIGINT to the postmaster) and wait up to 30 s; idempotent.
    ///
    /// If the server has not exited by then it is shut down immediately
    /// (SIGQUIT, then SIGKILL) and [`ClusterError::Timeout`] is returned.
    /// Later calls return `Ok(())`.
    pub fn stop(&mut self) -> Result<(), ClusterError> {
        let Some(mut server) = self.server.take() else {
            return Ok(());
        };
        let log_offset = fs::metadata(&self.log_path).map_or(0, |m| m.len());
        if server.shut_down(libc::SIGINT, STOP_TIMEOUT) {
            Ok(())
        } else {
            Err(ClusterError::Timeout {
                log_tail: format!(
                    "the server did not shut down within {} s of SIGINT and was killed\n{}",
                    STOP_TIMEOUT.as_secs(),
                    log_tail(&self.log_path, log_offset)
                ),
            })
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// The `-c` settings the server is started with.
fn server_settings(opts: &ClusterOptions) -> Vec<String> {
    let mut settings = vec![
        "listen_addresses=127.0.0.1".to_owned(),
        "unix_socket_directories=".to_owned(),
        format!("max_connections={}", opts.max_connections),
        "shared_buffers=128MB".to_owned(),
        // Output goes to stderr, which is postgres.log.
        "logging_collector=off".to_owned(),
    ];
    if !opts.durable {
        settings.extend(
            [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
            ]
            .map(str::to_owned),
        );
    }
    settings.extend(opts.settings.iter().cloned());
    settings
        .into_iter()
        .flat_map(|setting| ["-c".to_owned(), setting])
        .collect()
}

/// Creates the cluster: generates and stores the superuser password, then
/// runs `initdb`. Returns the password.
fn initdb(
    bin_dir: &Path,
    data_dir: &Path,
    pgdata: &Path,
    password_path: &Path,
    run_as: RunAs,
    opts: &ClusterOptions,
) -> Result<String, ClusterError> {
    let password = random_password()?;
    // Stored before initdb runs, so a cluster never exists without it.
    write_private_file(password_path, &format!("{password}\n"))?;

    // initdb reads the password from a file the server user can read.
    let pwfile = RemoveOnDrop(data_dir.join(".initdb-pwfile"));
    let _ = fs::remove_file(&pwfile.0);
    write_private_file(&pwfile.0, &password)?;
    if let RunAs::User { uid, gid } = run_as {
        std::os::unix::fs::chown(&pwfile.0, Some(uid), Some(gid)).map_err(ClusterError::io(
            format!("changing the owner of {}", pwfile.0.display()),
        ))?;
    }

    let initdb = bin_dir.join("initdb");
    let mut pwfile_arg = std::ffi::OsString::from("--pwfile=");
    pwfile_arg.push(&pwfile.0);
    let mut cmd = run_as.command(&initdb);
    cmd.arg("-D")
        .arg(pgdata)
        .args(["-U", SUPERUSER, "--auth=scram-sha-256"])
        .arg(pwfile_arg)
        .args(["--encoding=UTF8", "--locale=C"])
        .current_dir(data_dir)
        .stdin(Stdio::null());
    if !opts.durable {
        cmd.arg("--no-sync");
    }
    let output = cmd
        .output()
        .map_err(ClusterError::io(format!("running {}", initdb.display())))?;
    if !output.status.success() {
        return Err(ClusterError::InitdbFailed {
            output: format!(
                "{} {}\n{}{}",
                initdb.display(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(password)
}

/// Deletes a file when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// 24 random bytes from /dev/urandom, hex-encoded.
fn random_password() -> Result<String, ClusterError> {
    let mut bytes = [0u8; 24];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(ClusterError::io("reading /dev/urandom"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Atomically writes `contents` to `path` with mode 0600.
fn write_private_file(path: &Path, contents: &str) -> Result<(), ClusterError> {
    let tmp = RemoveOnDrop(path.with_extension("tmp"));
    let _ = fs::remove_file(&tmp.0);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp.0)
        .map_err(ClusterError::io(format!("creating {}", tmp.0.display())))?;
    file.write_all(contents.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(ClusterError::io(format!("writing {}", tmp.0.display())))?;
    fs::rename(&tmp.0, path).map_err(ClusterError::io(format!("creating {}", path.display())))
}

fn read_password(path: &Path) -> Result<String, ClusterError> {
    let contents = fs::read_to_string(path).map_err(ClusterError::io(format!(
        "reading the superuser password from {} (it is created with the cluster; \
         without it the cluster cannot be used)",
        path.display()
    )))?;
    Ok(contents.trim().to_owned())
}

/// Removes `postmaster.pid` left by a server that is gone; fails if that
/// server still runs.
fn remove_stale_pid_file(pgdata: &Path) -> Result<(), ClusterError> {
    let path = pgdata.join("postmaster.pid");
    let contents = match fs::read_to_string(&path) {
        Ok(contents) => contents,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ClusterError::io(format!("reading {}", path.display()))(e)),
    };
    // A single-user backend writes its pid negated.
    let pid = contents
        .lines()
        .next()
        .and_then(|line| line.trim().parse::<i64>().ok())
        .and_then(|pid| u32::try_from(pid.unsigned_abs()).ok())
        .filter(|&pid| pid > 0);
    if let Some(pid) = pid {
        if os::is_live_postgres(pid) {
            return Err(ClusterError::StartFailed {
                log_tail: format!(
                    "another PostgreSQL server (pid {pid}) is already using the data directory \
                     {}; stop it first, or use another data directory",
                    pgdata.display()
                ),
            });
        }
    }
    fs::remove_file(&path).map_err(ClusterError::io(format!(
        "removing the stale {} of a server that is gone",
        path.display()
    )))
}

/// A port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> Result<u16, ClusterError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(ClusterError::io("finding a free TCP port on 127.0.0.1"))
}

enum Ready {
    Yes,
    Exited(String),
    TimedOut,
}

/// Polls until `postmaster.pid` says "ready" and the port accepts a TCP
/// connection, the server exits, or [`START_TIMEOUT`] passes.
fn wait_until_ready(server: &mut Supervisor, pgdata: &Path, port: u16) -> Ready {
    let deadline = Instant::now() + START_TIMEOUT;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    loop {
        if let Some(status) = server.try_exited() {
            return Ready::Exited(status.to_owned());
        }
        if pid_file_says_ready(pgdata, server.pid())
            && TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        {
            return Ready::Yes;
        }
        if Instant::now() >= deadline {
            return Ready::TimedOut;
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Whether `postmaster.pid` belongs to `pid` and its status line (the 8th)
/// is "ready".
fn pid_file_says_ready(pgdata: &Path, pid: u32) -> bool {
    let Ok(contents) = fs::read_to_string(pgdata.join("postmaster.pid")) else {
        return false;
    };
    let lines: Vec<&str> = contents.lines().collect();
    lines.first().map(|l| l.trim()) == Some(pid.to_string().as_str())
        && lines.get(7).map(|l| l.trim()) == Some("ready")
}

/// The last lines the server wrote to `log_path` after `offset`, with a
/// header naming the file.
fn log_tail(log_path: &Path, offset: u64) -> String {
    const MAX_BYTES: u64 = 64 * 1024;
    let read = || -> io::Result<String> {
        let mut file = File::open(log_path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(offset.max(len.saturating_sub(MAX_BYTES))))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) if text.trim().is_empty() => {
            format!("(the server wrote nothing to {})", log_path.display())
        }
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            format!(
                "--- last lines of {} ---\n{}",
                log_path.display(),
                tail.join("\n")
            )
        }
        Err(e) => format!("(could not read {}: {e})", log_path.display()),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests;
