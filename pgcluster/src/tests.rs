//! Tests against a real PostgreSQL server.

#![allow(clippy::unwrap_used)]

use super::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A fresh directory under `<target dir>/tmp`, deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        // The test binary is <target>/<profile>/deps/<name>.
        let exe = std::env::current_exe().unwrap();
        let target = exe.ancestors().nth(3).unwrap();
        let dir = target.join("tmp").join(format!(
            "pgcluster-{name}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        // Only the parent: the cluster must create the data dir itself.
        fs::create_dir_all(dir.parent().unwrap()).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn test_options(dir: impl Into<PathBuf>) -> ClusterOptions {
    let mut opts = ClusterOptions::new(dir);
    opts.durable = false;
    opts.max_connections = 20;
    opts
}

/// Runs `psql <url> -c <sql>`; its trimmed output, or its error output.
fn psql(url: &str, sql: &str) -> Result<String, String> {
    let bin_dir = find_bin_dir().unwrap();
    let psql = [bin_dir.join("psql"), PathBuf::from("/usr/bin/psql")]
        .into_iter()
        .find(|p| p.is_file())
        .expect("psql is installed");
    let out = Command::new(psql)
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .arg(url)
        .arg("-c")
        .arg(sql)
        .env("PGCONNECT_TIMEOUT", "5")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `path` relative to the current directory (`../..` as needed).
fn relative_to_cwd(path: &Path) -> PathBuf {
    let cwd = fs::canonicalize(std::env::current_dir().unwrap()).unwrap();
    let common = cwd
        .components()
        .zip(path.components())
        .take_while(|(a, b)| a == b)
        .count();
    let mut relative = PathBuf::new();
    for _ in common..cwd.components().count() {
        relative.push("..");
    }
    relative.extend(path.components().skip(common));
    relative
}

#[test]
fn start_query_stop_restart() {
    let dir = TempDir::new("lifecycle");
    let opts = test_options(&dir.0);
    let mut cluster = Cluster::start(&opts).unwrap();
    let port = cluster.port();

    TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
    let url = cluster.url("postgres");
    assert!(url.starts_with("postgres://pulsar:"), "{url}");
    assert!(
        url.ends_with(&format!("@127.0.0.1:{port}/postgres")),
        "{url}"
    );
    assert_eq!(psql(&url, "select 1").unwrap(), "1");
    assert_eq!(psql(&url, "show fsync").unwrap(), "off");
    assert_eq!(psql(&url, "show max_connections").unwrap(), "20");
    assert_eq!(psql(&url, "select current_user").unwrap(), "pulsar");
    psql(&url, "create database \"per test\"").unwrap();
    psql(
        &cluster.url("per test"),
        "create table t (x int); insert into t values (42)",
    )
    .unwrap();

    // Authentication is enforced.
    let wrong = format!("postgres://pulsar:nope@127.0.0.1:{port}/postgres");
    let err = psql(&wrong, "select 1").unwrap_err();
    assert!(err.contains("password authentication failed"), "{err}");

    let password_path = dir.0.join("pg-password");
    let password = fs::read_to_string(&password_path).unwrap();
    assert_eq!(password.trim().len(), 48);
    assert!(url.contains(password.trim()));
    let meta = fs::metadata(&password_path).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(!dir.0.join(".initdb-pwfile").exists());
    assert!(!dir.0.join("pg-password.tmp").exists());
    assert!(fs::metadata(dir.0.join("postgres.log")).unwrap().len() > 0);

    cluster.stop().unwrap();
    cluster.stop().unwrap();
    assert!(TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_err());
    assert!(!dir.0.join("pg/postmaster.pid").exists());

    // Same data, same password, (probably) a new port.
    let cluster = Cluster::start(&opts).unwrap();
    assert_eq!(fs::read_to_string(&password_path).unwrap(), password);
    assert_eq!(
        psql(&cluster.url("per test"), "select x from t").unwrap(),
        "42"
    );
    assert!(format!("{cluster:?}").contains("<redacted>"));
    assert!(!format!("{cluster:?}").contains(password.trim()));
    drop(cluster);
    assert!(!dir.0.join("pg/postmaster.pid").exists());
}

#[test]
fn stale_pid_file_is_removed_but_a_live_server_is_not_shared() {
    let dir = TempDir::new("stale");
    // A relative data dir works too.
    let opts = test_options(relative_to_cwd(&dir.0));
    assert!(opts.data_dir.is_relative());
    let mut cluster = Cluster::start(&opts).unwrap();

    // A second cluster on the same data dir is refused.
    let err = Cluster::start(&opts).unwrap_err();
    assert!(matches!(err, ClusterError::StartFailed { .. }), "{err:?}");
    assert!(
        err.to_string().contains("another PostgreSQL server"),
        "{err}"
    );
    assert_eq!(psql(&cluster.url("postgres"), "select 1").unwrap(), "1");
    cluster.stop().unwrap();

    // Simulate a crash: postmaster.pid naming a process that is gone.
    let mut gone = Command::new("true").spawn().unwrap();
    let dead_pid = gone.id();
    gone.wait().unwrap();
    let pid_file = dir.0.join("pg/postmaster.pid");
    fs::write(
        &pid_file,
        format!(
            "{dead_pid}\n{}\n0\n5432\n\n127.0.0.1\n0 0\nready   \n",
            dir.0.display()
        ),
    )
    .unwrap();

    let cluster = Cluster::start(&opts).unwrap();
    assert_eq!(psql(&cluster.url("postgres"), "select 1").unwrap(), "1");
}

#[test]
fn cluster_can_live_in_a_static() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Cluster>();
    assert_send_sync::<ClusterOptions>();
    assert_send_sync::<ClusterError>();
}

#[test]
fn settings() {
    let mut opts = ClusterOptions::new("x");
    assert!(opts.durable);
    assert_eq!(opts.max_connections, 200);
    let durable = server_settings(&opts).join(" ");
    assert!(!durable.contains("fsync"), "{durable}");
    assert!(durable.contains("-c max_connections=200"), "{durable}");
    opts.durable = false;
    let throwaway = server_settings(&opts).join(" ");
    for s in [
        "fsync=off",
        "synchronous_commit=off",
        "full_page_writes=off",
    ] {
        assert!(throwaway.contains(s), "{throwaway}");
    }
}

#[test]
fn url_encoding_and_passwords() {
    assert_eq!(percent_encode("test_db-1.x~"), "test_db-1.x~");
    assert_eq!(percent_encode("a b/c%"), "a%20b%2Fc%25");
    let a = random_password().unwrap();
    let b = random_password().unwrap();
    assert_eq!(a.len(), 48);
    assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(a, b);
}

/// Set in the child process of [`dies_with_its_process`].
const CHILD_DIR_VAR: &str = "PGCLUSTER_TEST_CHILD_DATA_DIR";

#[test]
fn dies_with_its_process() {
    if let Some(data_dir) = std::env::var_os(CHILD_DIR_VAR) {
        // The child: start a cluster and exit without dropping it, like a
        // test binary holding its cluster in a static.
        let cluster = Cluster::start(&test_options(data_dir)).unwrap();
        println!("PORT={}", cluster.port());
        std::mem::forget(cluster);
        std::process::exit(0);
    }

    let dir = TempDir::new("orphan");
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "tests::dies_with_its_process", "--nocapture"])
        .env(CHILD_DIR_VAR, &dir.0)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let port: u16 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("PORT="))
        .unwrap_or_else(|| {
            panic!(
                "child failed: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
        .parse()
        .unwrap();

    // The server got SIGTERM (smart shutdown) when the process died.
    let deadline = Instant::now() + Duration::from_secs(20);
    while dir.0.join("pg/postmaster.pid").exists()
        || TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
    {
        assert!(Instant::now() < deadline, "the server outlived its process");
        thread::sleep(Duration::from_millis(50));
    }
    let log = fs::read_to_string(dir.0.join("postgres.log")).unwrap();
    assert!(log.contains("received smart shutdown request"), "{log}");
}
