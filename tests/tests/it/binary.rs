//! The real `pulsar` binary, as the README runs it: no DATABASE_URL, so it starts its own
//! embedded PostgreSQL under the data dir.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

/// The `pulsar` binary, built if needed (cargo test builds other packages' binaries only
/// when asked).
pub fn pulsar_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "--quiet", "-p", "pulsar-api", "--bin", "pulsar"])
                .current_dir(&root)
                .status()
                .expect("run cargo build");
            assert!(status.success(), "building the pulsar binary failed");
            root.join("target").join("debug").join("pulsar")
        })
        .clone()
}

/// A running `pulsar serve` and its address.
pub struct Server {
    child: std::process::Child,
    pub base: String,
}

impl Server {
    pub fn spawn(envs: &[(&str, &str)]) -> Server {
        let mut command = Command::new(pulsar_binary());
        command
            .arg("serve")
            .env_remove("DATABASE_URL")
            .env("PULSAR_LISTEN", "127.0.0.1:0")
            .env("PULSAR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (name, value) in envs {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn pulsar");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = lines
            .next()
            .expect("pulsar printed nothing")
            .expect("read stdout");
        let base = line
            .strip_prefix("pulsar listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_string();
        Server { child, base }
    }

    /// SIGTERM and wait: graceful shutdown must end the process (and its cluster).
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!("pulsar did not stop within 30 s of SIGTERM");
    }
}

#[tokio::test]
async fn serve_with_an_embedded_database_then_restart_on_the_same_data() {
    let data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/test-clusters")
        .join(format!("serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let data = data_dir.to_string_lossy().to_string();
    let server = tokio::task::spawn_blocking({
        let data = data.clone();
        move || Server::spawn(&[("PULSAR_DATA_DIR", &data)])
    })
    .await
    .expect("spawn");
    let client = reqwest::Client::new();
    let signup = client
        .post(format!("{}/api/v1/auth/signup", server.base))
        .json(&json!({"email": "bin@example.com", "password": "correct horse battery", "workspace_name": "Bin"}))
        .send()
        .await
        .expect("signup");
    assert_eq!(signup.status(), 201);
    let ready = client
        .get(format!("{}/readyz", server.base))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("join");
    assert!(status.success(), "pulsar exited with {status}");

    // Same data dir: the cluster and the account are still there.
    let server = tokio::task::spawn_blocking({
        let data = data.clone();
        move || Server::spawn(&[("PULSAR_DATA_DIR", &data)])
    })
    .await
    .expect("spawn");
    let login: Value = client
        .post(format!("{}/api/v1/auth/login", server.base))
        .json(&json!({"email": "bin@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    assert_eq!(login["primaryWorkspace"]["name"], "Bin");
    let status = tokio::task::spawn_blocking(move || server.terminate())
        .await
        .expect("join");
    assert!(status.success());
    let _ = std::fs::remove_dir_all(&data_dir);
}
