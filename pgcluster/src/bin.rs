//! Locating the PostgreSQL server binaries.

use std::env;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::ClusterError;

/// Where Debian/Ubuntu install the per-version server binaries.
const DEBIAN_LIB_DIR: &str = "/usr/lib/postgresql";

/// Finds the directory holding the PostgreSQL server binaries (`initdb` and
/// `postgres`).
///
/// Searched in order:
/// 1. every directory on `$PATH` that holds both `initdb` and `postgres`
///    (symlinks are followed, so `/usr/local/bin/postgres ->
///    /usr/lib/postgresql/15/bin/postgres` yields the real directory, which
///    also holds `psql` and friends);
/// 2. `pg_config --bindir`;
/// 3. `/usr/lib/postgresql/*/bin`, highest version first.
///
/// The error lists what was searched and how to install the packages.
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    let mut searched = Vec::new();

    match env::var_os("PATH") {
        Some(path) => {
            for dir in env::split_paths(&path) {
                if !dir.as_os_str().is_empty() && has_server_binaries(&dir) {
                    return Ok(real_bin_dir(&dir));
                }
            }
            searched.push(format!("$PATH ({})", path.to_string_lossy()));
        }
        None => searched.push("$PATH (unset)".to_owned()),
    }

    match Command::new("pg_config")
        .arg("--bindir")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {
            let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if has_server_binaries(&dir) {
                return Ok(real_bin_dir(&dir));
            }
            searched.push(format!("`pg_config --bindir` ({})", dir.display()));
        }
        Ok(out) => searched.push(format!("`pg_config --bindir` (failed: {})", out.status)),
        Err(_) => searched.push("`pg_config --bindir` (pg_config not found)".to_owned()),
    }

    let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir(DEBIAN_LIB_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = parse_version(&entry.file_name().to_string_lossy())?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort_by(|a, b| b.0.cmp(&a.0));
    if let Some((_, dir)) = versions
        .into_iter()
        .find(|(_, dir)| has_server_binaries(dir))
    {
        return Ok(real_bin_dir(&dir));
    }
    searched.push(format!("{DEBIAN_LIB_DIR}/*/bin"));

    Err(ClusterError::NoBinaries {
        searched: searched.join(", "),
    })
}

/// Whether `dir` holds executable `initdb` and `postgres` files.
fn has_server_binaries(dir: &Path) -> bool {
    is_executable(&dir.join("initdb")) && is_executable(&dir.join("postgres"))
}

fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Resolves `dir` to the directory the `postgres` binary really lives in
/// (if that one is a complete bin dir too), else to `dir` made absolute.
fn real_bin_dir(dir: &Path) -> PathBuf {
    if let Some(real) = fs::canonicalize(dir.join("postgres"))
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        if has_server_binaries(&real) {
            return real;
        }
    }
    fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())
}

/// Parses a version directory name like `15` or `9.6` into its numbers.
fn parse_version(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn versions_sort_numerically() {
        let mut v: Vec<Vec<u32>> = ["9.6", "15", "10", "16"]
            .iter()
            .filter_map(|s| parse_version(s))
            .collect();
        v.sort();
        assert_eq!(v, vec![vec![9, 6], vec![10], vec![15], vec![16]]);
        assert_eq!(parse_version("main"), None);
    }

    #[test]
    fn finds_the_installed_binaries() {
        let dir = find_bin_dir().unwrap();
        assert!(dir.is_absolute());
        assert!(has_server_binaries(&dir), "{}", dir.display());
    }
}
