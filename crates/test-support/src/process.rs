//! The real `buildpolicy-operator` binary as a child process of a test: what
//! a Deployment runs, with its command line, its admin listener (`/metrics`,
//! `/healthz`, `/readyz`), its leader election and its exit codes, which the
//! in-process [`Operator`](crate::operator::Operator) does not exercise.
//!
//! ```no_run
//! use buildpolicy_test_support::process::OperatorProcess;
//!
//! # async fn test(ns: &str) {
//! let operator = OperatorProcess::builder(ns).start().await;
//! let metrics = operator.scrape().await;
//! # }
//! ```
//!
//! The binary is built once per test process (`cargo build -p
//! buildpolicy-operator`); it authenticates as the operator's
//! ServiceAccount, bound to the shipped `config/rbac`, through a kubeconfig
//! written for it; it only reconciles the policies labelled
//! `buildpolicy.dev/test-scope=<scope>`; its output goes to a file under
//! `target/test-logs/`; and it is killed (SIGKILL) when the handle drops.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use kube::config::{AuthInfo, Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};
use tokio::time::Instant;

use crate::cluster::{kubeconfig_path, repo_root};
use crate::http::{HttpResponse, http_get};
use crate::names::unique_name;
use crate::operator::{
    OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT, SCOPE_LABEL, operator_client,
    service_account_token,
};

/// The package and binary this module runs.
const PACKAGE: &str = "buildpolicy-operator";

/// How long a started binary gets to answer `/readyz` (with any status): it
/// binds its listener before it even connects to the API server, so this
/// only runs out when it cannot start at all.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long [`OperatorProcess::terminate`] waits after SIGTERM.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pause between two looks at a starting or exiting process.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Environment variables the binary reads (clap `env = ...`): a test's
/// command line says everything, so none leaks in from the environment
/// the tests run in.
const OPERATOR_ENV: &[&str] = &[
    "BUILDPOLICY_CEILING_FILE",
    "BUILDPOLICY_ALLOWED_CAPABILITIES",
    "BUILDPOLICY_PROTECTED_NAMESPACES",
    "BUILDPOLICY_METRICS_ADDR",
    "BUILDPOLICY_POLICY_SELECTOR",
    "BUILDPOLICY_LEADER_ELECT",
    "BUILDPOLICY_LOG_JSON",
    "POD_NAMESPACE",
    "POD_NAME",
];

static BINARY: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The path of a freshly built `buildpolicy-operator`: the first call in a
/// process runs `cargo build --workspace --bins` (a no-op when it is up to
/// date; the same command as `hack/cargo-bins.sh`, so the same features and
/// the same binary) and later calls reuse its answer. It blocks:
/// from async code, call it through `spawn_blocking`, as
/// [`OperatorBuilder::start`] does.
///
/// # Panics
///
/// When the build fails, with cargo's messages above (on stderr).
pub fn operator_binary() -> PathBuf {
    BINARY
        .get_or_init(build_operator)
        .clone()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// `cargo build` with JSON messages, which name the executable wherever the
/// target directory is (`CARGO_TARGET_DIR`, `build.target-dir`).
fn build_operator() -> Result<PathBuf, String> {
    // Cargo sets CARGO for the processes it runs (cargo test, nextest).
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let root = repo_root();
    let command = "cargo build --workspace --bins";
    let mut build = Command::new(&cargo);
    build
        .current_dir(&root)
        .args(["build", "--workspace", "--bins"])
        .arg("--message-format=json-render-diagnostics")
        .stdin(Stdio::null())
        .stderr(Stdio::inherit());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_tests) {
            build.env_remove(name);
        }
    }
    let output = build
        .output()
        .map_err(|e| format!("cannot run `{command}` ({}): {e}", cargo.to_string_lossy()))?;
    if !output.status.success() {
        return Err(format!(
            "`{command}` in {} failed ({}); cargo's messages are above",
            root.display(),
            output.status
        ));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == PACKAGE)
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| format!("`{command}` named no executable in its messages"))
}

/// Whether cargo (or nextest) sets the environment variable `name` for the
/// test it runs, as opposed to the user setting it to configure cargo.
///
/// They must not reach the nested `cargo build`: build scripts declare
/// `rerun-if-env-changed` on some of them (ring on `CARGO_MANIFEST_DIR` and
/// `CARGO_PKG_*`), so a build with the test's values would redo those
/// crates, and everything above them, and the next `cargo` run in a shell
/// would redo them again.
fn set_by_cargo_for_tests(name: &str) -> bool {
    const NAMES: &[&str] = &[
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
        "CARGO_MANIFEST_LINKS",
        "CARGO_CRATE_NAME",
        "CARGO_BIN_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    const PREFIXES: &[&str] = &["CARGO_PKG_", "CARGO_BIN_EXE_", "CARGO_CFG_", "NEXTEST_"];
    NAMES.contains(&name) || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// A loopback port that nothing listens on right now. The listener is
/// closed before the port is handed out, so another process could take it
/// in between; the child then fails to bind, says so in its log, and
/// [`OperatorBuilder::start`] reports that.
pub fn free_loopback_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("binding 127.0.0.1:0")
}

/// The directory for the logs of the processes tests start:
/// `target/test-logs`, where `hack/test.sh` keeps its logs too.
pub fn test_log_dir() -> PathBuf {
    let dir = repo_root().join("target/test-logs");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A fresh directory under `target/tmp` for one process's files.
pub(crate) fn scratch_dir(prefix: &str) -> PathBuf {
    let dir = repo_root().join("target/tmp").join(unique_name(prefix));
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The last `lines` lines of a log file, for a panic message.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    format!(
        "last {} lines of {}:\n{tail}",
        lines.min(all.len()),
        path.display()
    )
}

/// Writes a kubeconfig for the operator's ServiceAccount: the server and CA
/// of [`kubeconfig_path`], and a token from the TokenRequest API. It calls
/// [`operator_client`] first, which applies `config/rbac`, so the binary
/// holds exactly the rights an installation gives it.
///
/// With `BUILDPOLICY_TEST_OPERATOR_AS=admin` (see [`operator_client`]) it
/// returns the admin kubeconfig instead.
async fn write_operator_kubeconfig(dir: &Path) -> PathBuf {
    operator_client().await;
    let admin = kubeconfig_path();
    if std::env::var("BUILDPOLICY_TEST_OPERATOR_AS").as_deref() == Ok("admin") {
        return admin;
    }
    let token = service_account_token(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await;
    let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
    write_token_kubeconfig(&admin, &user, &token, &dir.join("kubeconfig"))
}

/// Writes, at `path`, a kubeconfig for the server and CA of the kubeconfig
/// `admin` that authenticates as `user` with the bearer `token`; readable by
/// its owner only, since it holds the token.
pub(crate) fn write_token_kubeconfig(
    admin: &Path,
    user: &str,
    token: &str,
    path: &Path,
) -> PathBuf {
    // read_from makes the CA path absolute, so it works from another directory.
    let config =
        Kubeconfig::read_from(admin).unwrap_or_else(|e| panic!("reading {}: {e}", admin.display()));
    let context = config
        .current_context
        .as_deref()
        .and_then(|name| config.contexts.iter().find(|c| c.name == name))
        .and_then(|c| c.context.clone())
        .unwrap_or_else(|| panic!("{} has no current context", admin.display()));
    let cluster = config
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .unwrap_or_else(|| panic!("{} has no cluster {}", admin.display(), context.cluster));
    let kubeconfig = Kubeconfig {
        api_version: Some("v1".into()),
        kind: Some("Config".into()),
        clusters: vec![NamedCluster {
            name: "test-cluster".into(),
            cluster: Some(cluster),
            ..NamedCluster::default()
        }],
        auth_infos: vec![NamedAuthInfo {
            name: user.to_owned(),
            auth_info: Some(AuthInfo {
                token: Some(token.to_owned().into()),
                ..AuthInfo::default()
            }),
            ..NamedAuthInfo::default()
        }],
        contexts: vec![NamedContext {
            name: "operator".into(),
            context: Some(Context {
                cluster: "test-cluster".into(),
                user: Some(user.to_owned()),
                ..Context::default()
            }),
            other: Default::default(),
        }],
        current_context: Some("operator".into()),
        ..Kubeconfig::default()
    };
    let yaml = serde_yaml_ng::to_string(&kubeconfig).expect("a kubeconfig serialises");
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
    file.write_all(yaml.as_bytes())
        .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.to_path_buf()
}

/// What to run: `buildpolicy-operator run --metrics-addr 127.0.0.1:<free>
/// --policy-selector buildpolicy.dev/test-scope=<scope>` plus [`arg`]s.
///
/// [`arg`]: OperatorBuilder::arg
#[derive(Clone, Debug)]
#[must_use = "nothing runs until start()"]
pub struct OperatorBuilder {
    scope: String,
    name: String,
    args: Vec<String>,
    kubeconfig: Option<PathBuf>,
}

impl OperatorBuilder {
    /// Names the process in its log file (`operator-<name>.log`) and in
    /// messages; default `<scope>`.
    pub fn name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// Adds a command-line argument after `run`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds command-line arguments after `run`.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Runs it with this kubeconfig, as it is, instead of one for the
    /// operator's ServiceAccount on the tests' cluster: for an operator of
    /// another cluster, such as a
    /// [`PrivateCluster`](crate::private_cluster::PrivateCluster)'s.
    pub fn kubeconfig(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig = Some(path.into());
        self
    }

    /// Leader election as the Deployment runs it: `--leader-elect` with the
    /// Lease `lease` in the operator's namespace, held as `identity`.
    pub fn leader_election(self, lease: &str, identity: &str, duration_seconds: u64) -> Self {
        self.args([
            "--leader-elect".to_owned(),
            format!("--namespace={OPERATOR_NAMESPACE}"),
            format!("--lease-name={lease}"),
            format!("--identity={identity}"),
            format!("--lease-duration-seconds={duration_seconds}"),
        ])
    }

    /// Builds the binary (once per test process), starts it, and waits until
    /// its admin listener answers `/readyz`, whatever it answers: a standby
    /// or a leader with unsynced caches is started too. Wait for the answer
    /// a test needs with [`eventually`](crate::eventually) and
    /// [`OperatorProcess::readyz`].
    ///
    /// # Panics
    ///
    /// When the binary cannot be built or started, exits, or does not answer
    /// within 30 s; with the end of its log.
    pub async fn start(self) -> OperatorProcess {
        let binary = tokio::task::spawn_blocking(operator_binary)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let dir = scratch_dir("operator");
        let kubeconfig = match self.kubeconfig {
            Some(path) => path,
            None => write_operator_kubeconfig(&dir).await,
        };
        let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
        let log_path = test_log_dir().join(format!("operator-{}.log", self.name));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let log_err = log
            .try_clone()
            .unwrap_or_else(|e| panic!("duplicating {}: {e}", log_path.display()));

        let mut command = Command::new(&binary);
        command
            .arg("run")
            .arg(format!("--metrics-addr={metrics_addr}"))
            .arg(format!("--policy-selector={SCOPE_LABEL}={}", self.scope));
        // The tests' ceiling (the test client may create and change listed
        // Tasks), unless the test brings a ceiling of its own. JSON is YAML.
        if !self.args.iter().any(|a| a.starts_with("--ceiling-file")) {
            let path = dir.join("ceiling.yaml");
            let ceiling = serde_json::to_string(&crate::operator::test_ceiling())
                .expect("a ceiling serialises");
            std::fs::write(&path, ceiling)
                .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
            command.arg(format!("--ceiling-file={}", path.display()));
        }
        command
            .args(&self.args)
            .env("KUBECONFIG", &kubeconfig)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        for variable in OPERATOR_ENV {
            command.env_remove(variable);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        eprintln!(
            "[test-support] operator {} (pid {}): http://{metrics_addr}, log {}",
            self.name,
            child.id(),
            log_path.display()
        );
        let mut process = OperatorProcess {
            name: self.name,
            child,
            exit: None,
            metrics_addr,
            log_path,
            dir,
        };
        process.wait_until_listening().await;
        process
    }
}

/// A running `buildpolicy-operator`, killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct OperatorProcess {
    name: String,
    child: Child,
    exit: Option<ExitStatus>,
    metrics_addr: SocketAddr,
    log_path: PathBuf,
    /// Holds the kubeconfig; removed on drop.
    dir: PathBuf,
}

impl OperatorProcess {
    /// The command for an operator reconciling only the policies labelled
    /// `buildpolicy.dev/test-scope=<scope>`.
    pub fn builder(scope: &str) -> OperatorBuilder {
        OperatorBuilder {
            scope: scope.to_owned(),
            name: scope.to_owned(),
            args: Vec::new(),
            kubeconfig: None,
        }
    }

    /// Starts an operator for `scope` with no further arguments.
    pub async fn start(scope: &str) -> Self {
        Self::builder(scope).start().await
    }

    /// Its name in messages and in its log file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The address of its admin listener (`--metrics-addr`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// `http://127.0.0.1:<port>/metrics`.
    pub fn metrics_url(&self) -> String {
        self.url("/metrics")
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics_addr)
    }

    /// Where its stdout and stderr go.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The end of its log, for assertion messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_path, 40)
    }

    /// GET `path` from its admin listener.
    ///
    /// # Errors
    ///
    /// When there is no HTTP answer (the process is gone, say).
    pub async fn get(&self, path: &str) -> Result<HttpResponse, String> {
        http_get(&self.url(path)).await
    }

    /// `/readyz`: 200 "leader" or "standby", 503 "starting", "leader,
    /// caches not synced" or "leader, not ready: <what>".
    ///
    /// # Errors
    ///
    /// When there is no HTTP answer.
    pub async fn readyz(&self) -> Result<HttpResponse, String> {
        self.get("/readyz").await
    }

    /// `/healthz`.
    ///
    /// # Errors
    ///
    /// When there is no HTTP answer.
    pub async fn healthz(&self) -> Result<HttpResponse, String> {
        self.get("/healthz").await
    }

    /// Waits until it leads with synced caches: `/readyz` answers 200
    /// "leader".
    ///
    /// # Panics
    ///
    /// When it does not within `timeout`.
    pub async fn wait_leading(&self, timeout: Duration) {
        crate::eventually(
            &format!("operator {} to answer /readyz 200 \"leader\"", self.name),
            timeout,
            || async {
                matches!(
                    self.readyz().await,
                    Ok(HttpResponse { status: 200, ref body }) if body == "leader"
                )
                .then_some(())
            },
        )
        .await;
    }

    /// The text of `/metrics`.
    ///
    /// # Panics
    ///
    /// When it does not answer 200, with the end of its log.
    pub async fn scrape(&self) -> String {
        match self.get("/metrics").await {
            Ok(HttpResponse { status: 200, body }) => body,
            Ok(other) => panic!(
                "operator {}: /metrics answered {other:?}\n{}",
                self.name,
                self.log_tail()
            ),
            Err(e) => panic!("operator {}: {e}\n{}", self.name, self.log_tail()),
        }
    }

    /// The sum of counter `name`'s series whose labels include `labels`
    /// (0 when it has none yet).
    ///
    /// # Panics
    ///
    /// As [`OperatorProcess::scrape`].
    // Counters are whole numbers far below 2^53.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    pub async fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        crate::exposition::metric_sum(&self.scrape().await, name, labels).unwrap_or(0.0) as u64
    }

    /// `buildpolicy_reconciliations_total`, every result added up.
    ///
    /// # Panics
    ///
    /// As [`OperatorProcess::scrape`].
    pub async fn reconciles(&self) -> u64 {
        self.counter("buildpolicy_reconciliations_total", &[]).await
    }

    /// Its exit status, if it has exited.
    pub fn try_exit_status(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self
                .child
                .try_wait()
                .unwrap_or_else(|e| panic!("waiting for operator {}: {e}", self.name));
        }
        self.exit
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exit_status().is_none()
    }

    /// SIGKILL, as a node failure or an OOM kill would end it: no chance to
    /// release its Lease or finish a write. Waits for the exit (immediate).
    pub fn kill(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit_status() {
            return status;
        }
        // Fails only if it has exited in the meantime; wait() tells.
        let _ = self.child.kill();
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for operator {}: {e}", self.name));
        self.exit = Some(status);
        status
    }

    /// SIGTERM, as the kubelet stops a pod, and waits up to 10 s for the
    /// exit; SIGKILL after that.
    ///
    /// # Panics
    ///
    /// When the `kill` command (procps / util-linux) cannot be run.
    pub async fn terminate(&mut self) -> ExitStatus {
        if let Some(status) = self.try_exit_status() {
            return status;
        }
        // `kill` instead of libc: the workspace forbids unsafe code.
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap_or_else(|e| panic!("running `kill -TERM {}`: {e}", self.pid()));
        if sent.success() {
            if let Some(status) = self.wait_for_exit(TERMINATE_TIMEOUT).await {
                return status;
            }
            eprintln!(
                "[test-support] operator {} did not exit within {TERMINATE_TIMEOUT:?} of SIGTERM; killing it",
                self.name
            );
        }
        self.kill()
    }

    /// Waits up to `timeout` for it to exit by itself (a replica that lost
    /// its Lease exits, say); `None` if it is still running.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.try_exit_status() {
                panic!(
                    "operator {} exited before its admin listener answered ({status})\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            let last = match self.readyz().await {
                Ok(_) => return,
                Err(e) => e,
            };
            if Instant::now() >= deadline {
                let status = self.kill();
                panic!(
                    "operator {} did not answer /readyz within {STARTUP_TIMEOUT:?} (last: {last}); killed it ({status})\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for OperatorProcess {
    /// SIGKILL, without panicking: a panic here, while a failed test
    /// unwinds, would abort the test binary.
    fn drop(&mut self) {
        if self.exit.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
