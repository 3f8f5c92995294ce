//! The real `pulsar` binary, as the README runs it: no DATABASE_URL, so it starts its own
//! embedded PostgreSQL under the data dir.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

pub use pulsar_tests::pulsar_binary;

/// A running `pulsar serve` and its address.
pub struct Server {
    child: std::process::Child,
    pub base: String,
}

impl Server {
    pub fn spawn(envs: &[(&str, &str)]) -> Server {
        Self::spawn_logged(envs, None)
    }

    /// As [`Server::spawn`]; with `log`, stderr (the server's log) goes to that file.
    pub fn spawn_logged(envs: &[(&str, &str)], log: Option<&std::path::Path>) -> Server {
        Self::spawn_role("all", envs, log)
    }

    /// `pulsar serve --role <role>`.
    pub fn spawn_role(role: &str, envs: &[(&str, &str)], log: Option<&std::path::Path>) -> Server {
        let mut command = Command::new(pulsar_binary());
        let stderr = match log {
            Some(path) => Stdio::from(std::fs::File::create(path).expect("log file")),
            None => Stdio::inherit(),
        };
        command
            .args(["serve", "--role", role])
            .env_remove("DATABASE_URL")
            .env("PULSAR_LISTEN", "127.0.0.1:0")
            .env("PULSAR_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr);
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

    /// SIGKILL: the process dies at once, mid-work, with no cleanup.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

#[tokio::test]
async fn a_key_revoked_on_one_process_is_refused_by_another_within_a_second() {
    let db = pulsar_tests::TestDb::new().await;
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-clusters");
    std::fs::create_dir_all(&dir).expect("dir");
    let logs = [
        dir.join(format!("a-{}.log", db.name)),
        dir.join(format!("b-{}.log", db.name)),
    ];
    let url = db.url.clone();
    // Both processes share one data dir, hence one webhook secret key and one audit
    // signing key (never the working directory).
    let data = dir
        .join(format!("keys-{}", db.name))
        .to_string_lossy()
        .to_string();
    let spawn = |log: PathBuf| {
        let (url, data) = (url.clone(), data.clone());
        tokio::task::spawn_blocking(move || {
            Server::spawn_logged(
                &[
                    ("DATABASE_URL", &url),
                    ("PULSAR_DATA_DIR", &data),
                    ("PULSAR_LOG", "debug"),
                ],
                Some(&log),
            )
        })
    };
    let a = spawn(logs[0].clone()).await.expect("spawn a");
    let b = spawn(logs[1].clone()).await.expect("spawn b");
    let client = reqwest::Client::new();
    let signup: Value = client
        .post(format!("{}/api/v1/auth/signup", a.base))
        .json(&json!({"email": "two@example.com", "password": "correct horse battery", "workspace_name": "Two"}))
        .send()
        .await
        .expect("signup")
        .json()
        .await
        .expect("json");
    let token = signup["token"].as_str().expect("token");
    let created: Value = client
        .post(format!("{}/api/v1/api-keys", a.base))
        .bearer_auth(token)
        .json(&json!({"name": "shared", "scopes": ["api-keys:read"]}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let key = created["data"]["key"].as_str().expect("key").to_string();
    let secret = created["data"]["apiSecret"]
        .as_str()
        .expect("secret")
        .to_string();
    let id = created["data"]["id"].as_str().expect("id").to_string();
    let on_b = || {
        client
            .get(format!("{}/api/v1/api-keys/{id}", b.base))
            .bearer_auth(&key)
            .send()
    };
    // B learns of the new key from the log.
    let mut status = 0;
    for _ in 0..100 {
        status = on_b().await.expect("b").status().as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(status, 200, "process B never accepted the key");
    // A wrong secret on B, to have a failed attempt in B's log too.
    let wrong = client
        .get(format!("{}/api/v1/api-keys/{id}", b.base))
        .header(
            "x-api-key",
            created["data"]["apiKey"].as_str().expect("apiKey"),
        )
        .header("x-api-secret", "x".repeat(42))
        .send()
        .await
        .expect("b");
    assert_eq!(wrong.status(), 401);

    let revoked = client
        .delete(format!("{}/api/v1/api-keys/{id}", a.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 204);
    let started = std::time::Instant::now();
    loop {
        let status = on_b().await.expect("b").status().as_u16();
        if status == 401 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "process B still accepted the revoked key after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let elapsed = started.elapsed();
    for server in [a, b] {
        let status = tokio::task::spawn_blocking(move || server.terminate())
            .await
            .expect("join");
        assert!(status.success());
    }
    // Debug logs of both processes hold no key material.
    for log in &logs {
        let text = std::fs::read_to_string(log).expect("log");
        assert!(
            text.contains("request"),
            "the log should have request lines"
        );
        assert!(
            !text.contains(&secret) && !text.contains(&key),
            "key material in {}",
            log.display()
        );
        let _ = std::fs::remove_file(log);
    }
    eprintln!("revocation reached the other process in {elapsed:?}");
}
