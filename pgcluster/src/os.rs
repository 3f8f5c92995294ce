//! The operating-system plumbing: which user the server runs as, file
//! ownership, signals, and the few `unsafe` calls this needs.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use crate::ClusterError;

/// The user `initdb` and `postgres` run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// Not root: run as ourselves.
    CurrentUser,
    /// Root: run as the `postgres` system user.
    User {
        /// Its uid.
        uid: u32,
        /// Its primary gid.
        gid: u32,
    },
}

impl RunAs {
    /// Decides whom to run the server as: ourselves, or the `postgres` user
    /// from /etc/passwd when we are root.
    pub(crate) fn detect() -> Result<RunAs, ClusterError> {
        if effective_uid() != 0 {
            return Ok(RunAs::CurrentUser);
        }
        let passwd = match fs::read_to_string("/etc/passwd") {
            Ok(contents) => contents,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ClusterError::NoPostgresUser)
            }
            Err(e) => return Err(ClusterError::io("reading /etc/passwd")(e)),
        };
        let (uid, gid) = parse_passwd(&passwd, "postgres").ok_or(ClusterError::NoPostgresUser)?;
        Ok(RunAs::User { uid, gid })
    }

    /// A command for `program` that runs as this user and gets SIGTERM when
    /// the thread spawning it exits.
    pub(crate) fn command(self, program: &Path) -> Command {
        let mut cmd = Command::new(program);
        if let RunAs::User { uid, gid } = self {
            // std also drops supplementary groups (setgroups(0)) when root.
            cmd.uid(uid).gid(gid);
        }
        set_parent_death_signal(&mut cmd);
        cmd
    }
}

/// Finds `name`'s uid and gid in the contents of an /etc/passwd file.
fn parse_passwd(contents: &str, name: &str) -> Option<(u32, u32)> {
    contents.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.trim().parse().ok()?;
        let gid = fields.next()?.trim().parse().ok()?;
        Some((uid, gid))
    })
}

/// Checks that every ancestor of `dir` (not `dir` itself) can be traversed
/// by the given user, naming the first one that cannot.
pub(crate) fn check_traversable(dir: &Path, uid: u32, gid: u32) -> Result<(), ClusterError> {
    for ancestor in dir.ancestors().skip(1) {
        let meta = fs::metadata(ancestor).map_err(ClusterError::io(format!(
            "inspecting {}",
            ancestor.display()
        )))?;
        let mode = meta.permissions().mode();
        let traversable = if meta.uid() == uid {
            mode & 0o100 != 0
        } else if meta.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        if !traversable {
            return Err(ClusterError::NotTraversable(ancestor.to_path_buf()));
        }
    }
    Ok(())
}

/// Gives `root` and everything below it to `uid:gid`, except `skip`. Does
/// not follow symlinks (it changes the links themselves) and leaves alone
/// entries that already have the right owner.
pub(crate) fn chown_recursive(
    root: &Path,
    uid: u32,
    gid: u32,
    skip: &Path,
) -> Result<(), ClusterError> {
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        if path == skip {
            continue;
        }
        let meta = match fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            // Vanished meanwhile (a running server's temp file): nothing to do.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(ClusterError::io(format!("inspecting {}", path.display()))(
                    e,
                ))
            }
        };
        if meta.uid() != uid || meta.gid() != gid {
            std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(ClusterError::io(
                format!("changing the owner of {} to uid {uid}", path.display()),
            ))?;
        }
        if meta.is_dir() {
            let entries = fs::read_dir(&path)
                .map_err(ClusterError::io(format!("listing {}", path.display())))?;
            for entry in entries {
                let entry =
                    entry.map_err(ClusterError::io(format!("listing {}", path.display())))?;
                stack.push(entry.path());
            }
        }
    }
    Ok(())
}

/// Whether `pid` is a live process that looks like a PostgreSQL server.
///
/// A pid from a stale `postmaster.pid` may since have been reused by an
/// unrelated process, so on Linux the process name is checked as well.
pub(crate) fn is_live_postgres(pid: u32) -> bool {
    let alive = match send_signal(pid, 0) {
        Ok(()) => true,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    };
    if !alive {
        return false;
    }
    match fs::read_to_string(format!("/proc/{pid}/comm")) {
        Ok(comm) => comm.contains("postgres") || comm.contains("postmaster"),
        // No /proc to ask: assume the worst.
        Err(_) => true,
    }
}

/// The effective uid of this process.
#[allow(unsafe_code)]
fn effective_uid() -> u32 {
    // SAFETY: geteuid has no preconditions, touches no memory and cannot fail.
    unsafe { libc::geteuid() }
}

/// Sends `signal` to the single process `pid` (0 only checks that it exists).
#[allow(unsafe_code)]
pub(crate) fn send_signal(pid: u32, signal: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid)
        .ok()
        .filter(|&pid| pid > 0)
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: kill has no memory-safety preconditions. `pid > 0` makes it
    // target exactly one process, never a process group or every process.
    if unsafe { libc::kill(pid, signal) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes the child get SIGTERM when the thread that spawned it exits.
///
/// This has to happen in the child: std runs `pre_exec` hooks after
/// setuid/setgid, and the kernel clears the parent-death signal on a
/// credential change, so setting it any earlier would be lost.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command) {
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe operations are allowed: it makes one prctl system
    // call and builds an io::Error from errno, which does not allocate. It
    // touches no memory shared with the parent, takes no locks.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        });
    }
}

/// Parent-death signals are Linux-only; elsewhere the server outlives a
/// crashed process and its stale `postmaster.pid` is cleaned up next time.
#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_cmd: &mut Command) {}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgresql:x:7:7::/:/bin/false\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(parse_passwd(passwd, "postgres"), Some((101, 104)));
        assert_eq!(parse_passwd(passwd, "root"), Some((0, 0)));
        assert_eq!(parse_passwd(passwd, "nobody"), None);
        assert_eq!(parse_passwd("postgres:x:abc:1:::", "postgres"), None);
    }

    #[test]
    fn never_signals_groups() {
        assert!(send_signal(0, 0).is_err());
        assert!(send_signal(u32::MAX, 0).is_err());
        assert!(send_signal(std::process::id(), 0).is_ok());
        // We are alive, but not a PostgreSQL server.
        assert!(!is_live_postgres(std::process::id()));
    }
}
