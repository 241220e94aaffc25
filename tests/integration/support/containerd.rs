//! The real containerd client as the oracle of differential tests (STYLE.md §0.8): run Debian's
//! `ctr` (containerd 1.6) against the same loopback fakes pullprobe probes, and compare ok/fail.
//!
//! - [`ctr_fetch`] runs `ctr content fetch-object <ref>`: resolve (the manifest `HEAD`, auth,
//!   retries, host fallback) and fetch of the manifest the tag names, in the ctr process alone —
//!   no daemon. That is the part of a pull pullprobe mirrors.
//! - [`Containerd`] starts a private daemon (root, state, socket and config in a temp dir; no
//!   CRI plugin, no network) and [`Containerd::pull`] runs `ctr images pull` against it: the
//!   whole pull, with platform selection, every blob and the unpack (`native` snapshotter,
//!   which works without overlayfs). The fake registry serves a pullable image through
//!   [`super::registry::OciImage`].
//! - [`HostsDir`] writes the `--hosts-dir` tree (`<root>/<host:port>/hosts.toml`, CA files).
//!
//! Each `ctr` runs with a cleared environment (no proxy variables; `HOME`, `XDG_*` and `TMPDIR`
//! in a temp dir of its own), stdin closed, in its own process group, under a hard timeout
//! ([`CtrOpts::timeout`], 20 s by default) after which the group is killed: ctr's own dial
//! timeout is 30 s. The functions block: from an async test, use the `_async` variants (they
//! run in `spawn_blocking`, so the fakes on the test's runtime keep serving). The binaries are
//! found on `PATH`; tests check them first with `crate::docker_registry::require_tool`. Set
//! `PULLPROBE_CTR_LOG=1` to print every ctr command line and its output.
//!
//! ctr in 1.6 builds its resolver with `commands.GetResolver` → `config.ConfigureHosts`, the
//! same function the CRI plugin uses when `config_path` is set; see
//! docs/containerd-differential.md for what differs.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How long a `ctr` run may take before it is killed.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Containerd::start`] waits for the daemon's socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// The snapshotter [`Containerd::pull`] unpacks with: plain directory copies, no overlay
/// mount, so it works in any container that lets root bind-mount.
pub const SNAPSHOTTER: &str = "native";
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The registry flags of a `ctr` run (`commands.RegistryFlags` in ctr 1.6).
#[derive(Clone, Debug)]
pub struct CtrOpts {
    /// `--hosts-dir`: the root of a `certs.d`-style tree (see [`HostsDir`]). `None` means
    /// ctr's built-in defaults (no host directory at all).
    pub hosts_dir: Option<PathBuf>,
    /// `--user user:password`.
    pub user: Option<(String, String)>,
    /// `--plain-http`: the default scheme becomes `http` for every host.
    pub plain_http: bool,
    /// `--skip-verify`: no certificate verification for every host.
    pub skip_verify: bool,
    /// `--tlscacert`: the *only* root CA of hosts without their own `ca` (replaces the
    /// system pool; a hosts.toml `ca` is then appended to this pool, not to the system's).
    pub tlscacert: Option<PathBuf>,
    /// The global `--debug` flag: ctr logs each request and response (never the
    /// `Authorization` value) on stderr.
    pub debug: bool,
    /// Kill ctr after this long; [`CtrOutcome::timed_out`] then says so.
    pub timeout: Duration,
    /// The node's `/etc/hosts` and `/etc/resolv.conf` as ctr's resolver should see them: ctr
    /// then runs in a private mount namespace (`unshare --mount`, root only) with these files
    /// bind-mounted over the real ones, which stay untouched.
    pub node_files: Option<(PathBuf, PathBuf)>,
}

impl Default for CtrOpts {
    fn default() -> Self {
        CtrOpts {
            hosts_dir: None,
            user: None,
            plain_http: false,
            skip_verify: false,
            tlscacert: None,
            debug: false,
            timeout: DEFAULT_TIMEOUT,
            node_files: None,
        }
    }
}

impl CtrOpts {
    pub fn node_files(mut self, hosts: &Path, resolv_conf: &Path) -> Self {
        self.node_files = Some((hosts.to_owned(), resolv_conf.to_owned()));
        self
    }

    pub fn hosts_dir(mut self, dir: &Path) -> Self {
        self.hosts_dir = Some(dir.to_owned());
        self
    }

    pub fn user(mut self, user: &str, password: &str) -> Self {
        self.user = Some((user.to_owned(), password.to_owned()));
        self
    }

    pub fn plain_http(mut self) -> Self {
        self.plain_http = true;
        self
    }

    pub fn skip_verify(mut self) -> Self {
        self.skip_verify = true;
        self
    }

    pub fn tlscacert(mut self, path: &Path) -> Self {
        self.tlscacert = Some(path.to_owned());
        self
    }

    pub fn debug(mut self) -> Self {
        self.debug = true;
        self
    }

    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The registry flags, in ctr's syntax (after the subcommand, before the reference).
    fn registry_args(&self) -> Vec<OsString> {
        let mut args: Vec<OsString> = Vec::new();
        if let Some(dir) = &self.hosts_dir {
            args.extend(["--hosts-dir".into(), dir.into()]);
        }
        if let Some((user, password)) = &self.user {
            // A user without ":password" would make ctr prompt on the console.
            args.extend(["--user".into(), format!("{user}:{password}").into()]);
        }
        if self.plain_http {
            args.push("--plain-http".into());
        }
        if self.skip_verify {
            args.push("--skip-verify".into());
        }
        if let Some(ca) = &self.tlscacert {
            args.extend(["--tlscacert".into(), ca.into()]);
        }
        args
    }

    fn global_args(&self) -> Vec<OsString> {
        if self.debug {
            vec!["--debug".into()]
        } else {
            Vec::new()
        }
    }
}

/// How one `ctr` run ended.
#[derive(Clone, Debug)]
pub struct CtrOutcome {
    /// Exited with status 0 (and was not killed).
    pub ok: bool,
    /// The exit code; `None` when a signal (our timeout) ended it.
    pub code: Option<i32>,
    /// Killed by [`CtrOpts::timeout`].
    pub timed_out: bool,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl CtrOutcome {
    /// ctr's final error, the text after `ctr: ` on its last such stderr line (empty if none).
    pub fn error(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("ctr: "))
            .unwrap_or_default()
    }

    /// Panics with ctr's output unless it succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert!(self.ok, "ctr failed: {self}");
        self
    }

    /// Panics unless ctr failed with an error containing `needle`.
    #[track_caller]
    pub fn assert_err(&self, needle: &str) -> &Self {
        assert!(
            !self.ok && !self.timed_out && self.error().contains(needle),
            "expected ctr to fail with {needle:?}: {self}"
        );
        self
    }
}

impl std::fmt::Display for CtrOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "code {:?}{} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code,
            if self.timed_out { " (timed out)" } else { "" },
            self.elapsed,
            self.stdout,
            self.stderr
        )
    }
}

/// `ctr content fetch-object <reference>`: resolves `reference` and fetches the manifest (or
/// index) it names, exactly as a pull starts, with no daemon. Blocks.
pub fn ctr_fetch(reference: &str, opts: &CtrOpts) -> CtrOutcome {
    let mut args = opts.global_args();
    args.extend(["content".into(), "fetch-object".into()]);
    args.extend(opts.registry_args());
    args.push(reference.into());
    match &opts.node_files {
        None => run_ctr(args, opts.timeout),
        Some((hosts, resolv_conf)) => {
            // sh -c 'mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf &&
            // shift 2 && exec ctr "$@"' in a private mount namespace.
            let mut wrapped: Vec<OsString> = vec![
                "--mount".into(),
                "--propagation".into(),
                "private".into(),
                "sh".into(),
                "-c".into(),
                r#"mount --bind "$1" /etc/hosts && mount --bind "$2" /etc/resolv.conf && shift 2 && exec ctr "$@""#.into(),
                "sh".into(),
                hosts.into(),
                resolv_conf.into(),
            ];
            wrapped.extend(args);
            run_program("unshare", wrapped, opts.timeout)
        }
    }
}

/// [`ctr_fetch`] on a blocking thread, for async tests.
pub async fn ctr_fetch_async(reference: &str, opts: &CtrOpts) -> CtrOutcome {
    let (reference, opts) = (reference.to_owned(), opts.clone());
    tokio::task::spawn_blocking(move || ctr_fetch(&reference, &opts))
        .await
        .unwrap()
}

/// Runs `ctr <args>` with a private environment under `timeout`. Blocks.
fn run_ctr(args: Vec<OsString>, timeout: Duration) -> CtrOutcome {
    run_program("ctr", args, timeout)
}

/// Runs `program <args>` (ctr, or a wrapper that ends in ctr) as [`run_ctr`] does.
fn run_program(program: &str, args: Vec<OsString>, timeout: Duration) -> CtrOutcome {
    let home = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (home.path().join("stdout"), home.path().join("stderr"));
    let mut cmd = Command::new(program);
    private_env(&mut cmd, home.path());
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .process_group(0);
    let started = Instant::now();
    let mut child = cmd.spawn().expect("ctr starts (is containerd installed?)");
    let status = wait_or_kill(&mut child, timeout);
    let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
    let outcome = CtrOutcome {
        ok: status.is_some_and(|s| s.success()),
        code: status.and_then(|s| s.code()),
        timed_out: status.is_none(),
        stdout: read(&out_path),
        stderr: read(&err_path),
        elapsed: started.elapsed(),
    };
    if std::env::var_os("PULLPROBE_CTR_LOG").is_some() {
        let args: Vec<_> = args.iter().map(|a| a.to_string_lossy()).collect();
        eprintln!("=== {program} {}\n{outcome}", args.join(" "));
    }
    outcome
}

/// A cleared environment: no `*_proxy`, no `CONTAINERD_*`, a private home.
fn private_env(cmd: &mut Command, home: &Path) {
    let xdg = |d: &str| {
        let path = home.join(d);
        std::fs::create_dir_all(&path).unwrap();
        path
    };
    cmd.env_clear()
        .env("PATH", PATH)
        .env("HOME", home)
        .env("TMPDIR", xdg("tmp"))
        .env("XDG_CONFIG_HOME", xdg("config"))
        .env("XDG_CACHE_HOME", xdg("cache"))
        .env("XDG_DATA_HOME", xdg("data"))
        .env("XDG_RUNTIME_DIR", xdg("run"));
}

/// Waits for `child`; after `timeout`, kills its process group and returns `None`.
fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            signal_group(child, "KILL");
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Sends `signal` to the process group `child` leads (it was spawned with `process_group(0)`,
/// so the group id is its pid and holds only what it started).
fn signal_group(child: &Child, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), "--", &format!("-{}", child.id())])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A `--hosts-dir` tree in a temp dir, removed on drop.
pub struct HostsDir {
    dir: tempfile::TempDir,
}

impl HostsDir {
    /// An empty tree: ctr then behaves as with no `--hosts-dir` (`HostDirFromRoot` finds no
    /// directory for the host and `ConfigureHosts` falls back to its defaults).
    pub fn new() -> HostsDir {
        HostsDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The directory for registry `host` (`name` or `name:port`, as in the image reference),
    /// created if needed. containerd 1.6 looks for `<root>/<name>_<port>_`, then
    /// `<root>/<name>:<port>`, then `<root>/_default`; this uses the `name:port` form of
    /// docs/hosts.md. Pass `_default` for the catch-all.
    pub fn host_dir(&self, host: &str) -> PathBuf {
        let dir = self.dir.path().join(host);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes `<root>/<host>/hosts.toml`; returns its path.
    pub fn hosts_toml(&self, host: &str, toml: &str) -> PathBuf {
        self.file(host, "hosts.toml", toml.as_bytes())
    }

    /// Writes `<root>/<host>/<name>` (a CA for `ca = "…"`, or Docker-style `*.crt` files);
    /// returns its path, which hosts.toml may name absolutely.
    pub fn file(&self, host: &str, name: &str, contents: &[u8]) -> PathBuf {
        let path = self.host_dir(host).join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }
}

impl Default for HostsDir {
    fn default() -> Self {
        Self::new()
    }
}

/// A private containerd daemon: everything under one temp dir, its own socket, the CRI
/// plugin disabled (so it neither reads nor writes the host's CNI, registry or image config),
/// no listener but its unix sockets. It starts in well under a second. Dropping it stops the
/// daemon (SIGTERM to its process group, SIGKILL after 5 s) and removes the directory.
pub struct Containerd {
    child: Child,
    dir: tempfile::TempDir,
    /// The gRPC socket (`ctr --address`).
    pub socket: PathBuf,
}

impl Containerd {
    /// Starts the daemon and waits until its gRPC socket accepts connections (containerd
    /// loads every plugin before it listens). Blocks; panics with the daemon log on failure.
    pub fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let socket = d.join("containerd.sock");
        // `io.containerd.internal.v1.opt` would otherwise create /opt/containerd.
        let config = format!(
            "version = 2\n\
             root = \"{root}\"\n\
             state = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n\
             [ttrpc]\n  address = \"{sock}.ttrpc\"\n\
             [debug]\n  level = \"info\"\n\
             [plugins.\"io.containerd.internal.v1.opt\"]\n  path = \"{opt}\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = socket.display(),
            opt = d.join("opt").display(),
        );
        let config_path = d.join("config.toml");
        std::fs::write(&config_path, config).unwrap();
        let home = d.join("home");
        std::fs::create_dir_all(&home).unwrap();
        let log = File::create(d.join("containerd.log")).unwrap();
        let mut cmd = Command::new("containerd");
        private_env(&mut cmd, &home);
        cmd.arg("--config")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0);
        let child = cmd.spawn().expect("containerd starts");
        let mut daemon = Containerd { child, dir, socket };
        let started = Instant::now();
        while std::os::unix::net::UnixStream::connect(&daemon.socket).is_err() {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                panic!("containerd exited with {status}:\n{}", daemon.log());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "containerd did not listen within {START_TIMEOUT:?}:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        daemon
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.dir.path().join("containerd.log")).unwrap())
            .into_owned()
    }

    /// `ctr --address <socket> images pull --snapshotter native [--platform P] <reference>`:
    /// fetches the index, the manifest for the platform (ctr's default: the host's, e.g.
    /// `linux/amd64`), config and layers, registers the image and unpacks it. Blocks.
    pub fn pull(&self, reference: &str, opts: &CtrOpts, platform: Option<&str>) -> CtrOutcome {
        run_ctr(self.pull_args(reference, opts, platform), opts.timeout)
    }

    /// [`Self::pull`] on a blocking thread, for async tests.
    pub async fn pull_async(
        &self,
        reference: &str,
        opts: &CtrOpts,
        platform: Option<&str>,
    ) -> CtrOutcome {
        let (args, timeout) = (self.pull_args(reference, opts, platform), opts.timeout);
        tokio::task::spawn_blocking(move || run_ctr(args, timeout))
            .await
            .unwrap()
    }

    /// `ctr --address <socket> <args>` (e.g. `images ls -q`). Blocks.
    pub fn ctr(&self, args: &[&str]) -> CtrOutcome {
        let mut all: Vec<OsString> = vec!["--address".into(), self.socket.clone().into()];
        all.extend(args.iter().map(OsString::from));
        run_ctr(all, DEFAULT_TIMEOUT)
    }

    fn pull_args(&self, reference: &str, opts: &CtrOpts, platform: Option<&str>) -> Vec<OsString> {
        let mut args: Vec<OsString> = vec!["--address".into(), self.socket.clone().into()];
        args.extend(opts.global_args());
        args.extend(["images".into(), "pull".into()]);
        args.extend(["--snapshotter".into(), SNAPSHOTTER.into()]);
        if let Some(platform) = platform {
            args.extend(["--platform".into(), platform.into()]);
        }
        args.extend(opts.registry_args());
        args.push(reference.into());
        args
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        signal_group(&self.child, "TERM");
        if wait_or_kill(&mut self.child, Duration::from_secs(5)).is_none() {
            eprintln!("containerd ignored SIGTERM for 5 s and was killed");
        }
    }
}
