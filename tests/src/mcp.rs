//! The official Python MCP client (PyPI `mcp`), at 1.x and 2.x, driving a served Pulsar
//! through `tests/mcp/drive.py`. Each major lives in its own virtualenv under
//! `target/mcp-py/`, made on first use (`.ci/run` makes them ahead of the tests).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The interpreter of the virtualenv with `mcp` at `major`, pinned by
/// `tests/mcp/requirements-v{major}.txt`, made (or remade after the pins change) if needed.
pub fn python(major: u8) -> PathBuf {
    static MAKING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = MAKING.lock().unwrap_or_else(|e| e.into_inner());
    let requirements = root()
        .join("tests")
        .join("mcp")
        .join(format!("requirements-v{major}.txt"));
    let pins = std::fs::read_to_string(&requirements).expect("the pinned requirements");
    let venv = root()
        .join("target")
        .join("mcp-py")
        .join(format!("v{major}"));
    let python = venv.join("bin").join("python");
    let marker = venv.join("installed.txt");
    if std::fs::read_to_string(&marker).is_ok_and(|installed| installed == pins) {
        return python;
    }
    let run = |program: &Path, args: &[&str]| {
        let status = std::process::Command::new(program)
            .args(args)
            .status()
            .unwrap_or_else(|e| panic!("run {}: {e}", program.display()));
        assert!(status.success(), "{} {args:?} failed", program.display());
    };
    let _ = std::fs::remove_dir_all(&venv);
    run(
        Path::new("python3"),
        &["-m", "venv", venv.to_str().expect("utf-8 path")],
    );
    run(
        &python,
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            requirements.to_str().expect("utf-8 path"),
        ],
    );
    std::fs::write(&marker, pins).expect("write the marker");
    python
}

/// How the client connects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// 1.x: the `initialize` handshake.
    V1,
    /// 2.x forced to the handshake.
    V2Legacy,
    /// 2.x as it connects by default: `server/discover` under 2026-07-28.
    V2Auto,
}

impl Mode {
    pub const ALL: [Mode; 3] = [Mode::V1, Mode::V2Legacy, Mode::V2Auto];

    fn major(self) -> u8 {
        if self == Mode::V1 {
            1
        } else {
            2
        }
    }

    fn arg(self) -> &'static str {
        match self {
            Mode::V1 => "v1",
            Mode::V2Legacy => "v2-legacy",
            Mode::V2Auto => "v2-auto",
        }
    }
}

/// Runs `plan` (see `tests/mcp/drive.py`) against the MCP endpoint at `url`; returns
/// `{protocol_version, results: [...]}`. Panics, with the client's stderr, when the
/// client itself fails.
pub async fn drive(mode: Mode, url: &str, token: &str, workspace_id: &str, plan: &Value) -> Value {
    let python = tokio::task::spawn_blocking(move || python(mode.major()))
        .await
        .expect("make the virtualenv");
    let script = root().join("tests").join("mcp").join("drive.py");
    let output = tokio::process::Command::new(python)
        .arg(script)
        .args([url, token, workspace_id, mode.arg(), &plan.to_string()])
        .output()
        .await
        .expect("run the MCP client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the {mode:?} client failed:\n{stderr}\n{stdout}"
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("client output ({e}): {stdout}\n{stderr}"))
}
