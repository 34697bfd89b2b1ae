//! Commands, copies and long-running processes on the hosts of a hosts file, through the
//! system's OpenSSH client (`ssh`, `scp`). Nothing here speaks SSH itself.
//!
//! **One connection per host.** The first operation on a host starts a master connection
//! (`ControlMaster`) whose socket lives in a private directory (mode 700, a short path under
//! /tmp: socket paths are limited to about 104 bytes); every later `ssh` and `scp` to that host
//! is multiplexed over it, so only the first pays for the handshake. The master is this
//! process's own child and holds a session of its own whose remote side reads its stdin
//! (`cat`): when this process dies, however it dies, that stdin closes, the session ends, and
//! the master exits as soon as the other sessions have ended too (their own lifelines see to
//! that). So `ControlPersist` is `no`: a persisting master would be a detached daemon that this
//! process could not own, and it could expire between two operations. A master that died (a
//! lost link: `ServerAliveInterval` notices within about 15 s) is started again by the next
//! operation. Dropping the [`Ssh`] ends every master and removes the directory; a directory
//! left by a killed process (its masters gone with their lifelines) is removed by the next
//! engine this user starts.
//!
//! **Sessions.** sshd allows 10 sessions per connection by default (`MaxSessions`; see
//! [`SshOptions::max_sessions`]); the master holds one, and a per-host semaphore keeps the
//! rest at most 9, of which long-running processes ([`Ssh::spawn`]) may hold 8, so that a
//! command to stop one can always run.
//!
//! **Failures.** `ssh` exits 255 when ssh itself failed (could not connect, authenticate, or
//! lost the connection), and that is [`SshError::Ssh`], naming the host and quoting ssh's
//! stderr; any other exit status is the remote command's. Only operations that are safe to
//! repeat are retried after such a failure: connecting, [`Ssh::probe`] (for read-only
//! commands), copies (to a temporary name, then renamed) and fetches. [`Ssh::run`] is never
//! retried.
//!
//! **Lifelines.** A process started with [`Ssh::spawn`] reads a pipe from this process on its
//! stdin. It closes when the handle is dropped or this process dies, and `paxbench node
//! --exit-on-stdin-eof` then stops. A dropped link is noticed on this side within about 15 s,
//! but sshd on the far side may not notice for hours; [`RemoteProcess::keep_alive`] sends a
//! heartbeat on the lifeline, and `paxbench node --lifeline-timeout` stops when it falls
//! silent.
//!
//! **Commands** are strings for the remote login shell, which must be a POSIX shell; build
//! them with [`crate::shell::quote`] / [`crate::shell::join`]. Every `ssh` runs with
//! `BatchMode=yes` (never a prompt), `ConnectTimeout`, `ServerAliveInterval`, in a process
//! group of its own (so a Ctrl-C meant for the controller leaves the connections to it), plus
//! the hosts file's `user`, `identity`, `port`, `jump`, `options` and `config`.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest, Sha256};

use crate::hosts::{Host, Hosts, SshSettings};
use crate::shell::quote;

/// sshd's default `MaxSessions`: sessions one connection may carry.
pub const DEFAULT_MAX_SESSIONS: usize = 10;

/// What went wrong, always naming the host.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// ssh itself failed (exit status 255): it could not connect or authenticate, or it lost
    /// the connection.
    #[error("host {host}: ssh failed: {stderr}")]
    Ssh {
        /// The host's name.
        host: String,
        /// What ssh said.
        stderr: String,
    },
    /// The remote command ran and failed.
    #[error("host {host}: `{command}` exited with status {code}: {stderr}")]
    Remote {
        /// The host's name.
        host: String,
        /// The command.
        command: String,
        /// Its exit status.
        code: i32,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// `scp` failed (scp reports every failure, its own or the remote side's, as status 1).
    #[error("host {host}: {what}: {stderr}")]
    Copy {
        /// The host's name.
        host: String,
        /// What was being copied where.
        what: String,
        /// What scp said.
        stderr: String,
    },
    /// An operation did not finish in time.
    #[error("host {host}: {what} did not finish within {after:?}")]
    Timeout {
        /// The host's name.
        host: String,
        /// The operation.
        what: String,
        /// The limit.
        after: Duration,
    },
    /// Something failed on this machine (starting ssh, reading a file).
    #[error("host {host}: {what}: {source}")]
    Local {
        /// The host's name ("-" when none is concerned).
        host: String,
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The remote side answered something unexpected, or a request cannot work.
    #[error("host {host}: {what}")]
    Unexpected {
        /// The host's name.
        host: String,
        /// What happened.
        what: String,
    },
}

impl SshError {
    /// The host concerned.
    pub fn host(&self) -> &str {
        match self {
            SshError::Ssh { host, .. }
            | SshError::Remote { host, .. }
            | SshError::Copy { host, .. }
            | SshError::Timeout { host, .. }
            | SshError::Local { host, .. }
            | SshError::Unexpected { host, .. } => host,
        }
    }

    /// Whether ssh (or scp) itself failed, as opposed to the remote command: the failures after
    /// which a repeatable operation is retried.
    pub fn is_ssh_failure(&self) -> bool {
        matches!(self, SshError::Ssh { .. } | SshError::Copy { .. })
    }
}

/// Timeouts and limits.
#[derive(Clone, Debug)]
pub struct SshOptions {
    /// `ConnectTimeout`.
    pub connect_timeout: Duration,
    /// `ServerAliveInterval`; with `ServerAliveCountMax` 3 a dead link is noticed after three.
    pub server_alive_interval: Duration,
    /// How long [`Ssh::run`] and [`Ssh::probe`] wait for a command.
    pub command_timeout: Duration,
    /// How long one copy or fetch may take.
    pub copy_timeout: Duration,
    /// Tries of an operation that is safe to repeat (at least 1).
    pub attempts: u32,
    /// How long [`RemoteProcess::stop`] waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// The hosts' sshd `MaxSessions` (at least 3): the master holds one, spawned processes
    /// leave one for commands.
    pub max_sessions: usize,
}

impl Default for SshOptions {
    fn default() -> Self {
        SshOptions {
            connect_timeout: Duration::from_secs(10),
            server_alive_interval: Duration::from_secs(5),
            command_timeout: Duration::from_secs(60),
            copy_timeout: Duration::from_secs(600),
            attempts: 3,
            stop_grace: Duration::from_secs(5),
            max_sessions: DEFAULT_MAX_SESSIONS,
        }
    }
}

/// A finished remote command.
#[derive(Clone, Debug)]
pub struct Output {
    /// The host's name.
    pub host: String,
    /// The command.
    pub command: String,
    /// Its exit status (never 255: that is [`SshError::Ssh`]).
    pub code: i32,
    /// Its stdout (lossy UTF-8).
    pub stdout: String,
    /// Its stderr (lossy UTF-8).
    pub stderr: String,
}

impl Output {
    /// Whether it exited 0.
    pub fn success(&self) -> bool {
        self.code == 0
    }

    /// Itself if it exited 0, else [`SshError::Remote`].
    pub fn check(self) -> Result<Output, SshError> {
        if self.success() {
            Ok(self)
        } else {
            Err(SshError::Remote {
                host: self.host,
                command: self.command,
                code: self.code,
                stderr: tidy(self.stderr.as_bytes()),
            })
        }
    }
}

/// A binary on a host, as [`Ssh::deploy_binary`] left it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployed {
    /// Its absolute path there: `$HOME/.paxbench/bin/<sha256>/<file name>`.
    pub path: String,
    /// Its SHA-256, hex.
    pub sha256: String,
    /// Whether it was copied (false: it was already there, with that hash).
    pub copied: bool,
}

/// How a [`RemoteProcess::stop`] ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// It exited (by itself, or on SIGTERM), with this status as ssh reported it (255 if a
    /// signal ended it).
    Exited(i32),
    /// It outlived SIGTERM and the grace period, and SIGKILL ended it.
    Killed,
}

/// Connections to the hosts of one hosts file. Cheap to clone (shared); `Send + Sync`.
#[derive(Clone)]
pub struct Ssh {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SshSettings,
    hosts: Vec<Host>,
    opts: SshOptions,
    states: Vec<HostState>,
    hashes: Mutex<HashMap<PathBuf, (u64, SystemTime, String)>>,
    // Declared last: removed after every master is gone.
    control: tempfile::TempDir,
}

#[derive(Default)]
struct HostState {
    master: Mutex<Option<Master>>,
    used: Mutex<usize>,
    freed: Condvar,
    home: OnceLock<String>,
}

struct Master {
    child: Child,
    lifeline: Option<ChildStdin>,
}

impl Ssh {
    /// Connections (none open yet) to the hosts of `hosts`, with default options.
    pub fn new(hosts: &Hosts) -> Result<Ssh, SshError> {
        Self::with_options(hosts, SshOptions::default())
    }

    /// Connections to the hosts of `hosts`.
    pub fn with_options(hosts: &Hosts, opts: SshOptions) -> Result<Ssh, SshError> {
        let local = |what: &str, source| SshError::Local {
            host: "-".into(),
            what: what.into(),
            source,
        };
        // /tmp rather than $TMPDIR: a long TMPDIR would push socket paths past their limit.
        let tmp = Path::new("/tmp");
        sweep_dead_control_dirs(tmp);
        let control = tempfile::Builder::new()
            .prefix(CONTROL_PREFIX)
            .tempdir_in(tmp)
            .map_err(|e| local("creating the ssh control directory in /tmp", e))?;
        std::fs::set_permissions(control.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| local("securing the ssh control directory", e))?;
        if let Some(me) = process_identity(std::process::id()) {
            std::fs::write(control.path().join(OWNER_FILE), me)
                .map_err(|e| local("writing the ssh control directory's owner", e))?;
        }
        Ok(Ssh {
            inner: Arc::new(Inner {
                settings: hosts.ssh.clone(),
                hosts: hosts.hosts.clone(),
                opts,
                states: hosts.hosts.iter().map(|_| HostState::default()).collect(),
                hashes: Mutex::new(HashMap::new()),
                control,
            }),
        })
    }

    /// The options in force.
    pub fn options(&self) -> &SshOptions {
        &self.inner.opts
    }

    /// Opens the host's master connection unless it is up: proves the host reachable with
    /// these settings. Retried.
    pub fn connect(&self, host: &Host) -> Result<(), SshError> {
        self.inner.connect(self.inner.index(host)?)
    }

    /// Runs a shell command; its exit status is in the [`Output`]. Never retried: use it for
    /// commands that must not run twice.
    pub fn run(&self, host: &Host, command: &str) -> Result<Output, SshError> {
        let idx = self.inner.index(host)?;
        self.inner
            .exec(idx, command, self.inner.opts.command_timeout)
    }

    /// Runs a read-only (or otherwise repeatable) shell command, retried if ssh fails.
    pub fn probe(&self, host: &Host, command: &str) -> Result<Output, SshError> {
        let idx = self.inner.index(host)?;
        self.inner.retrying(|| {
            self.inner
                .exec(idx, command, self.inner.opts.command_timeout)
        })
    }

    /// The remote `$HOME` (asked once per host).
    pub fn remote_home(&self, host: &Host) -> Result<String, SshError> {
        self.inner.remote_home(self.inner.index(host)?)
    }

    /// Copies a local file to `remote` (absolute, relative to the remote home, or `~/...`)
    /// with permissions `mode`, atomically: scp to a temporary name in the same directory
    /// (created if missing), chmod, then rename over `remote`. Retried.
    pub fn copy_to(
        &self,
        host: &Host,
        local: &Path,
        remote: &str,
        mode: u32,
    ) -> Result<(), SshError> {
        let idx = self.inner.index(host)?;
        self.inner.copy_to(idx, local, remote, mode, None)
    }

    /// Copies `remote` (a file, or a directory with everything in it) into `local_dir`
    /// (created if missing) as `local_dir/<its last component>`, and returns that path.
    /// Retried; a `remote` that does not exist is an error at once.
    pub fn fetch(&self, host: &Host, remote: &str, local_dir: &Path) -> Result<PathBuf, SshError> {
        let inner = &self.inner;
        let idx = inner.index(host)?;
        let name = inner.host_name(idx);
        let rel = remote_path(name, remote)?;
        let base = rel.rsplit('/').find(|c| !c.is_empty()).unwrap_or(&rel);
        std::fs::create_dir_all(local_dir).map_err(|e| SshError::Local {
            host: name.into(),
            what: format!("creating {}", local_dir.display()),
            source: e,
        })?;
        // scp says 1 for every failure: find out first whether there is anything to fetch, so
        // that only failures of ssh itself are retried.
        let q = quote(&rel);
        inner
            .retrying(|| inner.exec(idx, &format!("test -e {q}"), inner.opts.command_timeout))?
            .check()
            .map_err(|_| SshError::Unexpected {
                host: name.into(),
                what: format!("nothing to fetch at {rel}"),
            })?;
        let what = format!("fetching {rel} into {}", local_dir.display());
        inner.retrying(|| {
            inner.scp(
                idx,
                &what,
                vec![
                    "-r".into(),
                    inner.scp_target(idx, &rel).into(),
                    local_dir.into(),
                ],
            )
        })?;
        Ok(local_dir.join(base))
    }

    /// Starts a long-running command and returns once its pid is known. The remote side runs
    /// `sh -c 'echo $$; exec <command>'`, so the pid is the program's own: `command` must be
    /// one simple command that `exec` can replace the shell with (redirections are fine, e.g.
    /// `env RUST_LOG=info ./paxbench node ... 2>node.log`). Its stdin is a pipe from this
    /// process (the lifeline), closed when the [`RemoteProcess`] is dropped, closed with
    /// [`RemoteProcess::close_lifeline`], or when this process dies.
    pub fn spawn(&self, host: &Host, command: &str) -> Result<RemoteProcess, SshError> {
        let idx = self.inner.index(host)?;
        RemoteProcess::start(self.clone(), idx, command)
    }

    /// Puts `local_binary` on the host as `~/.paxbench/bin/<sha256>/<its file name>`, mode
    /// 755. The hash is computed here (once per file and modification time). A file only ever
    /// reaches that path by a rename after its hash was checked there (where the host has
    /// `sha256sum` or `shasum`), so a file of the right size already at that path is the
    /// binary, and the copy is skipped.
    pub fn deploy_binary(&self, host: &Host, local_binary: &Path) -> Result<Deployed, SshError> {
        let inner = &self.inner;
        let idx = inner.index(host)?;
        let name = inner.host_name(idx);
        let sha256 = inner.sha256(name, local_binary)?;
        let size = std::fs::metadata(local_binary)
            .map_err(|e| SshError::Local {
                host: name.into(),
                what: format!("reading {}", local_binary.display()),
                source: e,
            })?
            .len();
        let file = local_binary
            .file_name()
            .and_then(|f| f.to_str())
            .filter(|f| safe_path(f))
            .ok_or_else(|| SshError::Unexpected {
                host: name.into(),
                what: format!(
                    "{} has no plain file name to deploy under",
                    local_binary.display()
                ),
            })?;
        let rel = format!(".paxbench/bin/{sha256}/{file}");
        let home = inner.remote_home(idx)?;
        let path = format!("{}/{rel}", home.trim_end_matches('/'));
        let f = quote(&rel);
        let there = inner
            .retrying(|| {
                inner.exec(
                    idx,
                    &format!("if [ -f {f} ]; then wc -c < {f}; fi"),
                    inner.opts.command_timeout,
                )
            })?
            .check()?;
        let copied = there.stdout.trim().parse::<u64>().ok() != Some(size);
        if copied {
            inner.copy_to(idx, local_binary, &rel, 0o755, Some(&sha256))?;
        }
        Ok(Deployed {
            path,
            sha256,
            copied,
        })
    }
}

impl Inner {
    fn index(&self, host: &Host) -> Result<usize, SshError> {
        self.hosts
            .iter()
            .position(|h| h.name == host.name && h.ssh == host.ssh)
            .ok_or_else(|| SshError::Unexpected {
                host: host.name.clone(),
                what: "not a host of this hosts file".into(),
            })
    }

    fn host_name(&self, idx: usize) -> &str {
        &self.hosts[idx].name
    }

    fn control_path(&self, idx: usize) -> PathBuf {
        self.control.path().join(format!("h{idx}"))
    }

    /// Options common to ssh and scp; `master` for the connection that creates the socket.
    /// ssh keeps the first value it is given for an option, so the ones that must hold come
    /// first, then the hosts file's, then defaults the hosts file may override.
    fn common_args(&self, idx: usize, master: bool) -> Vec<OsString> {
        let s = &self.settings;
        let mut a: Vec<OsString> = Vec::new();
        let opt = |a: &mut Vec<OsString>, k: &str, v: &str| {
            a.push("-o".into());
            a.push(format!("{k}={v}").into());
        };
        if let Some(config) = &s.config {
            a.push("-F".into());
            a.push(config.into());
        }
        opt(&mut a, "ControlMaster", if master { "yes" } else { "no" });
        let mut path = OsString::from("ControlPath=");
        path.push(self.control_path(idx));
        a.push("-o".into());
        a.push(path);
        opt(&mut a, "ControlPersist", "no");
        opt(&mut a, "BatchMode", "yes");
        if let Some(identity) = &s.identity {
            a.push("-i".into());
            a.push(identity.into());
        }
        if let Some(jump) = &s.jump {
            a.push("-J".into());
            a.push(jump.into());
        }
        if let Some(port) = s.port {
            opt(&mut a, "Port", &port.to_string());
        }
        // A user@ in the target wins over the file-wide user (ssh would do the opposite).
        if let Some(user) = &s.user {
            if !self.hosts[idx].ssh.contains('@') {
                opt(&mut a, "User", user);
            }
        }
        for o in &s.options {
            a.push("-o".into());
            a.push(o.into());
        }
        let secs = |d: Duration| d.as_secs().max(1).to_string();
        opt(&mut a, "ConnectTimeout", &secs(self.opts.connect_timeout));
        opt(
            &mut a,
            "ServerAliveInterval",
            &secs(self.opts.server_alive_interval),
        );
        opt(&mut a, "ServerAliveCountMax", "3");
        a
    }

    fn ssh_command(&self, idx: usize, master: bool, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.args(self.common_args(idx, master))
            .args(["-T", "--", &self.hosts[idx].ssh, remote])
            .process_group(0);
        c
    }

    /// `host:path` for scp, with an IPv6 literal in brackets.
    fn scp_target(&self, idx: usize, path: &str) -> String {
        let target = &self.hosts[idx].ssh;
        let (user, host) = match target.rsplit_once('@') {
            Some((u, h)) => (format!("{u}@"), h),
            None => (String::new(), target.as_str()),
        };
        if host.contains(':') && !host.starts_with('[') {
            format!("{user}[{host}]:{path}")
        } else {
            format!("{user}{host}:{path}")
        }
    }

    fn connect(&self, idx: usize) -> Result<(), SshError> {
        let state = &self.states[idx];
        let mut master = state.master.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = master.as_mut() {
            if matches!(m.child.try_wait(), Ok(None)) {
                return Ok(());
            }
            *master = None;
        }
        let mut attempt = 1;
        loop {
            let tried = Instant::now();
            match self.start_master(idx) {
                Ok(m) => {
                    *master = Some(m);
                    return Ok(());
                }
                // A quick failure (refused, reset, throttled by MaxStartups) may pass on a
                // second try; one that waited out ConnectTimeout would mostly wait again.
                Err(e)
                    if e.is_ssh_failure()
                        && attempt < self.opts.attempts
                        && tried.elapsed() < self.opts.connect_timeout / 2 =>
                {
                    std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Starts the master connection, with its own session reading its stdin (the lifeline),
    /// and waits until that session has started: by then the control socket listens.
    fn start_master(&self, idx: usize) -> Result<Master, SshError> {
        let name = self.host_name(idx);
        // A socket left by a master that died would make ssh give up multiplexing.
        let _ = std::fs::remove_file(self.control_path(idx));
        let mut child = self
            .ssh_command(idx, true, "echo paxbench-ready; exec cat >/dev/null")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SshError::Local {
                host: name.into(),
                what: "starting ssh".into(),
                source: e,
            })?;
        let lifeline = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let stderr = Tail::collect(child.stderr.take().expect("piped"));
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Drain until the master exits.
            for _ in lines {}
        });
        let limit = self.opts.connect_timeout * 2 + Duration::from_secs(10);
        match rx.recv_timeout(limit) {
            Ok(line) if line.trim() == "paxbench-ready" => Ok(Master { child, lifeline }),
            Ok(line) => {
                kill_child(&mut child);
                Err(SshError::Unexpected {
                    host: name.into(),
                    what: format!(
                        "the login shell printed {line:?} before anything else; \
                         a login script that prints breaks ssh commands"
                    ),
                })
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                kill_child(&mut child);
                Err(SshError::Timeout {
                    host: name.into(),
                    what: "connecting".into(),
                    after: limit,
                })
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().ok();
                let stderr = stderr.wait(Duration::from_secs(2));
                match status.and_then(|s| s.code()) {
                    Some(255) | None => Err(SshError::Ssh {
                        host: name.into(),
                        stderr,
                    }),
                    Some(code) => Err(SshError::Remote {
                        host: name.into(),
                        command: "the master connection's session".into(),
                        code,
                        stderr,
                    }),
                }
            }
        }
    }

    /// Takes one of the host's sessions; `long` for a spawned process, which must leave one.
    fn acquire(self: &Arc<Self>, idx: usize, long: bool) -> Result<Permit, SshError> {
        let state = &self.states[idx];
        let max = self.opts.max_sessions.max(3);
        let cap = max - 1 - usize::from(long);
        let limit = self.opts.command_timeout;
        let deadline = Instant::now() + limit;
        let mut used = state.used.lock().unwrap_or_else(|e| e.into_inner());
        while *used >= cap {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(SshError::Timeout {
                    host: self.host_name(idx).into(),
                    what: format!(
                        "waiting for a free ssh session ({} in use; sshd allows {max} per connection)",
                        *used + 1
                    ),
                    after: limit,
                });
            }
            used = state
                .freed
                .wait_timeout(used, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        *used += 1;
        Ok(Permit {
            inner: self.clone(),
            idx,
        })
    }

    fn exec(
        self: &Arc<Self>,
        idx: usize,
        command: &str,
        limit: Duration,
    ) -> Result<Output, SshError> {
        self.connect(idx)?;
        let _permit = self.acquire(idx, false)?;
        let name = self.host_name(idx);
        let mut cmd = self.ssh_command(idx, false, command);
        let ran = run_local(&mut cmd, limit).map_err(|e| SshError::Local {
            host: name.into(),
            what: "starting ssh".into(),
            source: e,
        })?;
        let Some(Finished {
            status,
            stdout,
            stderr,
        }) = ran
        else {
            return Err(SshError::Timeout {
                host: name.into(),
                what: format!("`{command}`"),
                after: limit,
            });
        };
        match status.code() {
            Some(255) | None => Err(SshError::Ssh {
                host: name.into(),
                stderr: tidy(&stderr),
            }),
            Some(code) => Ok(Output {
                host: name.into(),
                command: command.into(),
                code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            }),
        }
    }

    fn scp(self: &Arc<Self>, idx: usize, what: &str, args: Vec<OsString>) -> Result<(), SshError> {
        self.connect(idx)?;
        let _permit = self.acquire(idx, false)?;
        let name = self.host_name(idx);
        let mut cmd = Command::new("scp");
        cmd.args(self.common_args(idx, false))
            .arg("-q")
            .args(args)
            .process_group(0);
        let limit = self.opts.copy_timeout;
        let ran = run_local(&mut cmd, limit).map_err(|e| SshError::Local {
            host: name.into(),
            what: "starting scp".into(),
            source: e,
        })?;
        match ran {
            None => Err(SshError::Timeout {
                host: name.into(),
                what: what.into(),
                after: limit,
            }),
            Some(f) if f.status.success() => Ok(()),
            Some(Finished { stderr, .. }) => Err(SshError::Copy {
                host: name.into(),
                what: what.into(),
                stderr: tidy(&stderr),
            }),
        }
    }

    fn retrying<T>(&self, mut f: impl FnMut() -> Result<T, SshError>) -> Result<T, SshError> {
        let mut attempt = 1;
        loop {
            match f() {
                Err(e) if e.is_ssh_failure() && attempt < self.opts.attempts => {
                    std::thread::sleep(Duration::from_millis(500 * u64::from(attempt)));
                    attempt += 1;
                }
                r => return r,
            }
        }
    }

    fn remote_home(self: &Arc<Self>, idx: usize) -> Result<String, SshError> {
        if let Some(h) = self.states[idx].home.get() {
            return Ok(h.clone());
        }
        let cmd = "printf '%s\\n' \"$HOME\"";
        let out = self
            .retrying(|| self.exec(idx, cmd, self.opts.command_timeout))?
            .check()?;
        let home = out.stdout.trim_end_matches('\n').to_string();
        if !home.starts_with('/') {
            return Err(SshError::Unexpected {
                host: self.host_name(idx).into(),
                what: format!("$HOME is {home:?}, not an absolute path"),
            });
        }
        Ok(self.states[idx].home.get_or_init(|| home).clone())
    }

    fn copy_to(
        self: &Arc<Self>,
        idx: usize,
        local: &Path,
        remote: &str,
        mode: u32,
        sha256: Option<&str>,
    ) -> Result<(), SshError> {
        static COPIES: AtomicU64 = AtomicU64::new(0);
        let name = self.host_name(idx);
        if mode > 0o7777 {
            return Err(SshError::Unexpected {
                host: name.into(),
                what: format!("{mode:o} is not a file mode"),
            });
        }
        let rel = remote_path(name, remote)?;
        let (dir, file) = match rel.rsplit_once('/') {
            Some((d, f)) => (d, f),
            None => ("", rel.as_str()),
        };
        if file.is_empty() {
            return Err(SshError::Unexpected {
                host: name.into(),
                what: format!("{remote} names a directory, not a file"),
            });
        }
        let what = format!("copying {} to {remote}", local.display());
        self.retrying(|| {
            let n = COPIES.fetch_add(1, Ordering::Relaxed);
            let tmp_name = format!(".{file}.tmp-{}-{n}", std::process::id());
            let tmp = if dir.is_empty() {
                tmp_name
            } else {
                format!("{dir}/{tmp_name}")
            };
            if !dir.is_empty() {
                self.exec(
                    idx,
                    &format!("mkdir -p {}", quote(dir)),
                    self.opts.command_timeout,
                )?
                .check()?;
            }
            let copied = self
                .scp(
                    idx,
                    &what,
                    vec![local.into(), self.scp_target(idx, &tmp).into()],
                )
                .and_then(|()| {
                    let (t, f) = (quote(&tmp), quote(&rel));
                    // With a hash: checked on the copy, before it takes the final name.
                    let verify = sha256.map_or(String::new(), |h| {
                        format!(
                            "h=$({{ sha256sum {t} || shasum -a 256 {t}; }} 2>/dev/null | cut -c1-64) && \
                             {{ [ -z \"$h\" ] || [ \"$h\" = {h} ] || \
                             {{ echo \"the copy's sha256 is $h, not {h}\" >&2; false; }}; }} && "
                        )
                    });
                    self.exec(
                        idx,
                        &format!("chmod {mode:o} {t} && {verify}mv -f {t} {f}"),
                        self.opts.command_timeout,
                    )?
                    .check()
                });
            if copied.is_err() {
                let _ = self.exec(
                    idx,
                    &format!("rm -f {}", quote(&tmp)),
                    self.opts.command_timeout,
                );
            }
            copied.map(|_| ())
        })
    }

    fn sha256(&self, host: &str, path: &Path) -> Result<String, SshError> {
        let local = |what: String, e| SshError::Local {
            host: host.into(),
            what,
            source: e,
        };
        let meta =
            std::fs::metadata(path).map_err(|e| local(format!("reading {}", path.display()), e))?;
        let key = (
            meta.len(),
            meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        );
        let mut cache = self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((len, mtime, h)) = cache.get(path) {
            if (*len, *mtime) == key {
                return Ok(h.clone());
            }
        }
        let mut file = std::fs::File::open(path)
            .map_err(|e| local(format!("opening {}", path.display()), e))?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(|e| local(format!("reading {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let h: String = hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        cache.insert(path.to_path_buf(), (key.0, key.1, h.clone()));
        Ok(h)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Close every master's lifeline first, so that they all wind down at once.
        let mut masters: Vec<(usize, Master)> = Vec::new();
        for (idx, state) in self.states.iter().enumerate() {
            let m = state
                .master
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(mut m) = m {
                m.lifeline = None;
                masters.push((idx, m));
            }
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        for (idx, mut m) in masters {
            while matches!(m.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if matches!(m.child.try_wait(), Ok(None)) {
                // Sessions still open: ask the master to close everything, then end it.
                let mut exit = Command::new("ssh");
                exit.args(self.common_args(idx, false))
                    .args(["-O", "exit", "--", &self.hosts[idx].ssh])
                    .process_group(0);
                let _ = run_local(&mut exit, Duration::from_secs(2));
                let until = Instant::now() + Duration::from_secs(1);
                while matches!(m.child.try_wait(), Ok(None)) && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(10));
                }
                kill_child(&mut m.child);
            }
        }
    }
}

/// A session slot on a host; released when dropped.
struct Permit {
    inner: Arc<Inner>,
    idx: usize,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let state = &self.inner.states[self.idx];
        let mut used = state.used.lock().unwrap_or_else(|e| e.into_inner());
        *used -= 1;
        state.freed.notify_all();
    }
}

/// A command started by [`Ssh::spawn`]: its remote pid, its lifeline, its output.
pub struct RemoteProcess {
    ssh: Ssh,
    idx: usize,
    pid: u32,
    child: Child,
    lifeline: Arc<Mutex<Option<ChildStdin>>>,
    stdout: Arc<Lines>,
    stderr: Tail,
    exit: Option<i32>,
    _permit: Permit,
}

impl RemoteProcess {
    fn start(ssh: Ssh, idx: usize, command: &str) -> Result<RemoteProcess, SshError> {
        let inner = &ssh.inner;
        inner.connect(idx)?;
        let permit = inner.acquire(idx, true)?;
        let name = inner.host_name(idx).to_string();
        let remote = format!("exec sh -c {}", quote(&format!("echo $$; exec {command}")));
        let mut child = inner
            .ssh_command(idx, false, &remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| SshError::Local {
                host: name.clone(),
                what: "starting ssh".into(),
                source: e,
            })?;
        let lifeline = child.stdin.take();
        let stderr = Tail::collect(child.stderr.take().expect("piped"));
        let stdout = Lines::collect(child.stdout.take().expect("piped"));
        let limit = inner.opts.connect_timeout * 2 + Duration::from_secs(10);
        let first = stdout.read_line(limit);
        let fail = |child: &mut Child, what: String| {
            kill_child(child);
            SshError::Unexpected {
                host: name.clone(),
                what,
            }
        };
        let pid = match first {
            Some(line) => match line.trim().parse::<u32>() {
                Ok(pid) if pid > 1 => pid,
                _ => {
                    return Err(fail(
                        &mut child,
                        format!("`{command}`: expected its pid, got {line:?}"),
                    ))
                }
            },
            None if stdout.is_closed() => {
                let code = child.wait().ok().and_then(|s| s.code());
                let stderr = stderr.wait(Duration::from_secs(2));
                return Err(match code {
                    Some(255) | None => SshError::Ssh { host: name, stderr },
                    Some(code) => SshError::Remote {
                        host: name,
                        command: command.into(),
                        code,
                        stderr,
                    },
                });
            }
            None => {
                kill_child(&mut child);
                return Err(SshError::Timeout {
                    host: name,
                    what: format!("starting `{command}`"),
                    after: limit,
                });
            }
        };
        Ok(RemoteProcess {
            ssh: ssh.clone(),
            idx,
            pid,
            child,
            lifeline: Arc::new(Mutex::new(lifeline)),
            stdout,
            stderr,
            exit: None,
            _permit: permit,
        })
    }

    /// The remote program's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The host's name.
    pub fn host(&self) -> &str {
        self.ssh.inner.host_name(self.idx)
    }

    /// The pid of the local `ssh` carrying the session.
    pub fn local_pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes a line to the program's stdin (the lifeline).
    pub fn write_line(&mut self, line: &str) -> std::io::Result<()> {
        let mut lifeline = self.lifeline.lock().unwrap_or_else(|e| e.into_inner());
        let w = lifeline.as_mut().ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the lifeline is closed")
        })?;
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        w.write_all(&bytes)?;
        w.flush()
    }

    /// Writes a newline to the lifeline every `every` until it is closed: the heartbeat that
    /// `paxbench node --lifeline-timeout` waits for, so that a node whose link dropped (and
    /// whose sshd may not notice for hours) stops by itself. Only for programs that ignore
    /// what arrives on their stdin.
    pub fn keep_alive(&self, every: Duration) {
        let lifeline = Arc::downgrade(&self.lifeline);
        std::thread::spawn(move || loop {
            std::thread::sleep(every);
            let Some(lifeline) = lifeline.upgrade() else {
                return;
            };
            let mut g = lifeline.lock().unwrap_or_else(|e| e.into_inner());
            let beat = g
                .as_mut()
                .map(|w| w.write_all(b"\n").and_then(|()| w.flush()));
            if !matches!(beat, Some(Ok(()))) {
                return;
            }
        });
    }

    /// The next line the program wrote to stdout (after its pid), waiting at most `limit`;
    /// None on timeout or once its stdout ended. The last 10 000 unread lines are kept.
    pub fn read_line(&self, limit: Duration) -> Option<String> {
        self.stdout.read_line(limit)
    }

    /// The end (up to 64 KiB) of what the program and ssh wrote to stderr so far.
    pub fn stderr_tail(&self) -> String {
        self.stderr.snapshot()
    }

    /// Closes the program's stdin: a program that treats it as its lifeline (`paxbench node
    /// --exit-on-stdin-eof`) then exits.
    pub fn close_lifeline(&mut self) {
        *self.lifeline.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The session's exit status if it ended: the program's, or 255 if a signal ended it or
    /// ssh failed.
    pub fn try_wait(&mut self) -> Option<i32> {
        if self.exit.is_none() {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status.code().unwrap_or(255));
            }
        }
        self.exit
    }

    /// Waits at most `limit` for the session to end; its status as in [`Self::try_wait`].
    pub fn wait_timeout(&mut self, limit: Duration) -> Option<i32> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(code) = self.try_wait() {
                return Some(code);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `kill -<signal> <pid>` over the host's connection, unless the session already
    /// ended (then the pid may be someone else's by now).
    pub fn signal(&mut self, signal: &str) -> Result<(), SshError> {
        if self.try_wait().is_some() {
            return Ok(());
        }
        let cmd = format!("kill -{signal} {}", self.pid);
        // A non-zero status means the process was already gone.
        self.ssh
            .inner
            .exec(self.idx, &cmd, self.ssh.inner.opts.command_timeout)
            .map(|_| ())
    }

    /// Ends the program: SIGTERM to its pid, a wait of up to `stop_grace` for it to exit,
    /// then SIGKILL to its pid. Never by name. Errors if ssh cannot reach the host (the local
    /// ssh is then ended) or if the session outlives SIGKILL by 5 s.
    pub fn stop(&mut self) -> Result<Stopped, SshError> {
        if let Some(code) = self.try_wait() {
            return Ok(Stopped::Exited(code));
        }
        let grace = self.ssh.inner.opts.stop_grace;
        let result = self.signal("TERM").and_then(|()| {
            if let Some(code) = self.wait_timeout(grace) {
                return Ok(Stopped::Exited(code));
            }
            self.signal("KILL")?;
            let limit = Duration::from_secs(5);
            match self.wait_timeout(limit) {
                Some(_) => Ok(Stopped::Killed),
                None => Err(SshError::Timeout {
                    host: self.host().into(),
                    what: format!("ending pid {} (SIGKILL sent)", self.pid),
                    after: limit,
                }),
            }
        });
        if result.is_err() {
            self.close_lifeline();
            kill_child(&mut self.child);
        }
        result
    }
}

impl Drop for RemoteProcess {
    fn drop(&mut self) {
        self.close_lifeline();
        if self.try_wait().is_none() && self.wait_timeout(Duration::from_millis(200)).is_none() {
            // Our own ssh, by its pid: the master then closes the session, which closes the
            // program's stdin too.
            kill_child(&mut self.child);
        }
    }
}

/// Control directories are `/tmp/pxs-XXXXXX`; each names its owner in this file.
const CONTROL_PREFIX: &str = "pxs-";
const OWNER_FILE: &str = "owner";

/// `pid starttime` of a live process, from /proc (None where there is no /proc): unlike the
/// pid alone, it cannot match a later process that reused the pid.
fn process_identity(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let start = stat[stat.rfind(')')? + 2..].split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

/// Removes control directories left by engines whose process was killed before it could
/// remove them (their masters have exited by then, with their lifelines): only ours (same
/// uid), only those whose owner file names a process that no longer runs.
fn sweep_dead_control_dirs(tmp: &Path) {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let Ok(entries) = std::fs::read_dir(tmp) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let ours = e
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(CONTROL_PREFIX))
            && std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir() && m.uid() == uid);
        if !ours {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(path.join(OWNER_FILE)) else {
            continue;
        };
        let Some(pid) = owner.split_whitespace().next().and_then(|p| p.parse().ok()) else {
            continue;
        };
        if process_identity(pid).as_deref() != Some(owner.trim()) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// A path on the remote side for scp and the shell: `~/` stripped (relative paths are
/// relative to the home directory anyway), and only characters that need no quoting in
/// either scp protocol.
fn remote_path(host: &str, p: &str) -> Result<String, SshError> {
    let rel = p.strip_prefix("~/").unwrap_or(p);
    if rel.is_empty() || rel.starts_with('-') || !safe_path(rel) {
        return Err(SshError::Unexpected {
            host: host.into(),
            what: format!(
                "remote path {p:?} must be letters, digits and . _ - + / (and a leading ~/)"
            ),
        });
    }
    Ok(rel.to_string())
}

fn safe_path(p: &str) -> bool {
    !p.is_empty()
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+/".contains(c))
}

/// ssh's stderr for an error message: trimmed, at most its last 2000 bytes.
fn tidy(stderr: &[u8]) -> String {
    let s = String::from_utf8_lossy(stderr);
    let s = s.trim();
    if s.is_empty() {
        return "(nothing on stderr)".into();
    }
    let mut start = s.len().saturating_sub(2000);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].replace('\n', "; ")
}

/// Ends our own child (by its pid) and reaps it.
fn kill_child(child: &mut Child) {
    if matches!(child.try_wait(), Ok(None)) {
        let _ = child.kill();
    }
    let _ = child.wait();
}

/// A local process that exited, and what it wrote.
struct Finished {
    status: ExitStatus,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `cmd` with stdin from /dev/null, collecting stdout and stderr; None if it outlived
/// `limit` (it is then killed).
fn run_local(cmd: &mut Command, limit: Duration) -> std::io::Result<Option<Finished>> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let read_all = |r: Option<Box<dyn Read + Send>>| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut buf);
            }
            let _ = tx.send(buf);
        });
        rx
    };
    let out = read_all(child.stdout.take().map(|r| Box::new(r) as _));
    let err = read_all(child.stderr.take().map(|r| Box::new(r) as _));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let status = match rx.recv_timeout(limit) {
        Ok(status) => Some(status?),
        Err(_) => {
            // Still our unreaped child (the waiter holds it), so the pid is still its own.
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            let _ = rx.recv();
            None
        }
    };
    // The pipes close when ssh exits; a bounded wait in case something it started kept them.
    let grab =
        |rx: mpsc::Receiver<Vec<u8>>| rx.recv_timeout(Duration::from_secs(2)).unwrap_or_default();
    let (stdout, stderr) = (grab(out), grab(err));
    Ok(status.map(|status| Finished {
        status,
        stdout,
        stderr,
    }))
}

/// The last 64 KiB of a stream, collected by a thread.
#[derive(Clone)]
struct Tail {
    shared: Arc<TailShared>,
}

struct TailShared {
    buf: Mutex<TailBuf>,
    cv: Condvar,
}

#[derive(Default)]
struct TailBuf {
    bytes: Vec<u8>,
    ended: bool,
}

impl Tail {
    const LIMIT: usize = 64 << 10;

    fn collect(mut r: impl Read + Send + 'static) -> Tail {
        let tail = Tail {
            shared: Arc::new(TailShared {
                buf: Mutex::new(TailBuf::default()),
                cv: Condvar::new(),
            }),
        };
        let t = tail.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 4096];
            loop {
                let n = r.read(&mut chunk).unwrap_or(0);
                let mut g = t.shared.buf.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    g.ended = true;
                    t.shared.cv.notify_all();
                    return;
                }
                g.bytes.extend_from_slice(&chunk[..n]);
                if g.bytes.len() > 2 * Self::LIMIT {
                    let cut = g.bytes.len() - Self::LIMIT;
                    g.bytes.drain(..cut);
                }
            }
        });
        tail
    }

    fn snapshot(&self) -> String {
        let g = self.shared.buf.lock().unwrap_or_else(|e| e.into_inner());
        let start = g.bytes.len().saturating_sub(Self::LIMIT);
        String::from_utf8_lossy(&g.bytes[start..]).into_owned()
    }

    /// Waits at most `limit` for the end of the stream, then the tail, tidied.
    fn wait(&self, limit: Duration) -> String {
        let g = self.shared.buf.lock().unwrap_or_else(|e| e.into_inner());
        let g = self
            .shared
            .cv
            .wait_timeout_while(g, limit, |g| !g.ended)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        tidy(&g.bytes)
    }
}

/// Lines of a stream, queued by a thread (the oldest dropped beyond 10 000).
struct Lines {
    q: Mutex<(VecDeque<String>, bool)>,
    cv: Condvar,
}

impl Lines {
    const LIMIT: usize = 10_000;

    fn collect(r: impl Read + Send + 'static) -> Arc<Lines> {
        let lines = Arc::new(Lines {
            q: Mutex::new((VecDeque::new(), false)),
            cv: Condvar::new(),
        });
        let l = lines.clone();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(r);
            loop {
                let mut line = String::new();
                let n = reader.read_line(&mut line).unwrap_or(0);
                let mut g = l.q.lock().unwrap_or_else(|e| e.into_inner());
                if n == 0 {
                    g.1 = true;
                    l.cv.notify_all();
                    return;
                }
                if g.0.len() >= Self::LIMIT {
                    g.0.pop_front();
                }
                g.0.push_back(line.trim_end_matches(['\n', '\r']).to_string());
                l.cv.notify_all();
            }
        });
        lines
    }

    fn read_line(&self, limit: Duration) -> Option<String> {
        let g = self.q.lock().unwrap_or_else(|e| e.into_inner());
        let mut g = self
            .cv
            .wait_timeout_while(g, limit, |g| g.0.is_empty() && !g.1)
            .unwrap_or_else(|e| e.into_inner())
            .0;
        g.0.pop_front()
    }

    fn is_closed(&self) -> bool {
        let g = self.q.lock().unwrap_or_else(|e| e.into_inner());
        g.0.is_empty() && g.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(text: &str) -> Hosts {
        Hosts::parse(Path::new("/tmp/hosts.toml"), text).unwrap()
    }

    const TWO: &str = r#"
[ssh]
user = "bench"
port = 2222
jump = "bastion"
options = ["StrictHostKeyChecking=accept-new"]

[[host]]
name = "a"
ssh = "alias-a"
addr = "192.0.2.1"
roles = ["node"]

[[host]]
name = "b"
ssh = "root@2001:db8::2"
addr = "2001:db8::2"
roles = ["client"]
"#;

    fn strings(args: Vec<OsString>) -> Vec<String> {
        args.into_iter().map(|a| a.into_string().unwrap()).collect()
    }

    #[test]
    fn arguments_carry_the_hosts_file_and_the_fixed_options_first() {
        let ssh = Ssh::new(&hosts(TWO)).unwrap();
        let a = strings(ssh.inner.common_args(0, false));
        let pos = |s: &str| {
            a.iter()
                .position(|x| x == s)
                .unwrap_or_else(|| panic!("{s} in {a:?}"))
        };
        assert!(pos("ControlMaster=no") < pos("StrictHostKeyChecking=accept-new"));
        assert!(pos("BatchMode=yes") < pos("StrictHostKeyChecking=accept-new"));
        assert!(pos("StrictHostKeyChecking=accept-new") < pos("ConnectTimeout=10"));
        assert_eq!(a[pos("-J") + 1], "bastion");
        assert!(a.contains(&"Port=2222".to_string()));
        assert!(a.contains(&"User=bench".to_string()));
        let path = a
            .iter()
            .find_map(|x| x.strip_prefix("ControlPath="))
            .unwrap();
        assert!(path.len() < 100, "{path}");
        assert!(strings(ssh.inner.common_args(0, true)).contains(&"ControlMaster=yes".to_string()));
        // The target's own user@ wins over the file-wide user.
        let b = strings(ssh.inner.common_args(1, false));
        assert!(!b.iter().any(|x| x.starts_with("User=")), "{b:?}");
        let mode = std::fs::metadata(ssh.inner.control.path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn scp_targets_bracket_ipv6_literals() {
        let ssh = Ssh::new(&hosts(TWO)).unwrap();
        assert_eq!(ssh.inner.scp_target(0, "x/y"), "alias-a:x/y");
        assert_eq!(ssh.inner.scp_target(1, "x"), "root@[2001:db8::2]:x");
    }

    #[test]
    fn remote_paths_are_plain() {
        assert_eq!(
            remote_path("h", "~/.paxbench/bin/x").unwrap(),
            ".paxbench/bin/x"
        );
        assert_eq!(remote_path("h", "/tmp/a-b_c.d").unwrap(), "/tmp/a-b_c.d");
        for bad in ["", "~", "a b", "-rf", "a;b", "$HOME/x", "~user/x", "a'b"] {
            let e = remote_path("h1", bad).unwrap_err().to_string();
            assert!(e.starts_with("host h1: "), "{e}");
        }
    }

    #[test]
    fn the_control_directory_goes_with_the_last_handle() {
        let ssh = Ssh::new(&hosts(TWO)).unwrap();
        let dir = ssh.inner.control.path().to_path_buf();
        let clone = ssh.clone();
        drop(ssh);
        assert!(dir.exists());
        drop(clone);
        assert!(!dir.exists());
    }

    #[test]
    fn a_host_of_another_file_is_refused_by_name() {
        let ssh = Ssh::new(&hosts(TWO)).unwrap();
        let mut stranger = hosts(TWO).hosts[0].clone();
        stranger.name = "zz".into();
        let e = ssh.run(&stranger, "true").unwrap_err().to_string();
        assert!(e.starts_with("host zz: "), "{e}");
    }

    #[test]
    fn hashes_are_sha256_hex_and_cached() {
        let ssh = Ssh::new(&hosts(TWO)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("bin");
        std::fs::write(&f, b"abc").unwrap();
        let h = ssh.inner.sha256("a", &f).unwrap();
        assert_eq!(
            h,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(ssh.inner.sha256("a", &f).unwrap(), h);
    }

    #[test]
    fn control_directories_of_dead_processes_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let dead = tmp.path().join("pxs-dead");
        let live = tmp.path().join("pxs-live");
        let other = tmp.path().join("unrelated");
        for d in [&dead, &live, &other] {
            std::fs::create_dir(d).unwrap();
        }
        // A pid that ran and ended: our own child's, after it was reaped.
        let mut child = Command::new("true").spawn().unwrap();
        let gone = child.id();
        child.wait().unwrap();
        std::fs::write(dead.join(OWNER_FILE), format!("{gone} 1")).unwrap();
        let me = process_identity(std::process::id()).unwrap();
        std::fs::write(live.join(OWNER_FILE), me).unwrap();
        std::fs::write(other.join(OWNER_FILE), format!("{gone} 1")).unwrap();
        sweep_dead_control_dirs(tmp.path());
        assert!(!dead.exists());
        assert!(live.exists());
        assert!(other.exists());
        // A live engine's directory names it.
        let ssh = Ssh::new(&hosts(TWO)).unwrap();
        let owner = std::fs::read_to_string(ssh.inner.control.path().join(OWNER_FILE)).unwrap();
        assert_eq!(Some(owner), process_identity(std::process::id()));
    }

    #[test]
    fn handles_cross_threads() {
        fn send_sync<T: Send + Sync>() {}
        fn send<T: Send>() {}
        send_sync::<Ssh>();
        send_sync::<SshError>();
        send::<RemoteProcess>();
    }

    #[test]
    fn tidy_keeps_the_end_of_long_stderr() {
        assert_eq!(tidy(b"  \n"), "(nothing on stderr)");
        assert_eq!(tidy(b"a\nb\n"), "a; b");
        let long = "x".repeat(5000) + "END";
        assert!(tidy(long.as_bytes()).ends_with("END"));
        assert!(tidy(long.as_bytes()).len() <= 2000);
    }
}
