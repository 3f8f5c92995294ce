//! The thread that owns the server process.
//!
//! The parent-death signal fires when the *thread* that spawned the child
//! exits, not the process. So the postmaster is spawned from a dedicated
//! thread that then blocks in `wait()` for as long as the server runs: the
//! server gets SIGTERM exactly when this process dies (even if it never
//! drops its `Cluster`, as happens to statics in tests), and not when some
//! short-lived caller thread finishes.

use std::io;
use std::process::{Command, ExitStatus};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::os;

/// A running (or exited) server process and the thread that waits on it.
#[derive(Debug)]
pub(crate) struct Supervisor {
    pid: u32,
    /// Only used through `&mut self`; the mutex just makes `Cluster` `Sync`
    /// (so it can live in a `static`), as a bare `Receiver` is not.
    exit_rx: Mutex<Receiver<io::Result<ExitStatus>>>,
    /// How the process ended, once seen.
    exited: Option<String>,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    /// Spawns `cmd` from a new thread named `name` and returns once it runs.
    pub(crate) fn spawn(mut cmd: Command, name: String) -> io::Result<Supervisor> {
        let (spawn_tx, spawn_rx) = mpsc::channel();
        let (exit_tx, exit_rx) = mpsc::channel();
        let thread = thread::Builder::new().name(name).spawn(move || {
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    let _ = spawn_tx.send(Err(e));
                    return;
                }
            };
            let _ = spawn_tx.send(Ok(child.id()));
            // Blocks for the server's whole life, keeping this thread (the
            // child's "parent" for PR_SET_PDEATHSIG) alive.
            let _ = exit_tx.send(child.wait());
        })?;
        match spawn_rx.recv() {
            Ok(Ok(pid)) => Ok(Supervisor {
                pid,
                exit_rx: Mutex::new(exit_rx),
                exited: None,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(io::Error::other("the server supervisor thread died"))
            }
        }
    }

    /// The server's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// How the process ended, if it has (without blocking).
    pub(crate) fn try_exited(&mut self) -> Option<&str> {
        if self.exited.is_none() {
            match self.receiver().try_recv() {
                Ok(status) => self.record_exit(status),
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => {
                    self.record_exit(Err(io::Error::other("the server supervisor thread died")))
                }
            }
        }
        self.exited.as_deref()
    }

    /// Waits up to `timeout` for the process to end; true if it has.
    pub(crate) fn wait_exited(&mut self, timeout: Duration) -> bool {
        if self.exited.is_none() {
            match self.receiver().recv_timeout(timeout) {
                Ok(status) => self.record_exit(status),
                Err(RecvTimeoutError::Timeout) => return false,
                Err(RecvTimeoutError::Disconnected) => {
                    self.record_exit(Err(io::Error::other("the server supervisor thread died")))
                }
            }
        }
        true
    }

    /// Sends `signal` to the process unless it is known to have exited (its
    /// pid may then belong to someone else).
    pub(crate) fn signal(&mut self, signal: libc::c_int) {
        if self.try_exited().is_none() {
            // ESRCH means it exited since; nothing else can fail for a child.
            let _ = os::send_signal(self.pid, signal);
        }
    }

    /// Asks with `signal`, escalating to SIGQUIT (immediate shutdown) and
    /// then SIGKILL if needed. Returns true if the process ended within
    /// `grace` of the first signal.
    pub(crate) fn shut_down(&mut self, signal: libc::c_int, grace: Duration) -> bool {
        self.signal(signal);
        if self.wait_exited(grace) {
            return true;
        }
        for escalation in [libc::SIGQUIT, libc::SIGKILL] {
            self.signal(escalation);
            if self.wait_exited(Duration::from_secs(5)) {
                break;
            }
        }
        false
    }

    fn receiver(&mut self) -> &mut Receiver<io::Result<ExitStatus>> {
        self.exit_rx
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn record_exit(&mut self, status: io::Result<ExitStatus>) {
        self.exited = Some(match status {
            Ok(status) => status.to_string(),
            Err(e) => format!("could not wait for it: {e}"),
        });
        if let Some(thread) = self.thread.take() {
            // It has sent its last message and is returning.
            let _ = thread.join();
        }
    }
}
