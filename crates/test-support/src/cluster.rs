//! Which API server the tests talk to, and making sure it is up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use tokio::sync::OnceCell;

/// Names a kubeconfig to run the suite against another cluster. When set,
/// nothing is started: the suite must not silently bring up a different
/// cluster than the one asked for.
const KUBECONFIG_ENV: &str = "BUILDPOLICY_TEST_KUBECONFIG";

/// `hack/local-cluster.sh` keeps its state here when it is set.
const LOCAL_CLUSTER_DIR_ENV: &str = "LOCAL_CLUSTER_DIR";

/// How long the server gets to answer `/readyz`: a reachable server answers
/// in milliseconds, so waiting longer only delays the failure.
const READYZ_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the control plane is reachable, decided once per process so that
/// parallel tests neither repeat the check nor start the cluster twice, and
/// so that after a failure every test fails at once with the same message.
static CONTROL_PLANE: OnceCell<Result<(), String>> = OnceCell::const_new();

/// The workspace root: `crates/test-support/../..`.
pub fn repo_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .and_then(Path::parent)
        .expect("crates/test-support sits two levels below the workspace root")
        .to_path_buf()
}

/// State directory of `hack/local-cluster.sh`, which honours the same
/// variable, so tests and script agree on a cluster started elsewhere.
fn local_cluster_dir() -> PathBuf {
    std::env::var_os(LOCAL_CLUSTER_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/local-cluster"))
}

/// The kubeconfig the tests use: `$BUILDPOLICY_TEST_KUBECONFIG` if set,
/// otherwise the admin kubeconfig of the local control plane.
pub fn kubeconfig_path() -> PathBuf {
    std::env::var_os(KUBECONFIG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| local_cluster_dir().join("kubeconfig"))
}

/// `kubectl` with `KUBECONFIG` pointing at the tests' cluster: the one
/// `hack/local-cluster.sh` built (same version as the server), or the one on
/// `PATH` when the suite runs against another cluster without a local build.
pub fn kubectl() -> Command {
    let built = local_cluster_dir().join("bin/kubectl");
    let mut command = if built.is_file() {
        Command::new(built)
    } else {
        Command::new("kubectl")
    };
    command.env("KUBECONFIG", kubeconfig_path());
    command
}

/// What the server said to one `kubectl` command fed an object on stdin.
#[derive(Debug)]
pub struct Said {
    /// Whether kubectl succeeded (the object was admitted).
    pub admitted: bool,
    /// What it printed, e.g. the created object with `-o json`.
    pub stdout: String,
    /// Refusals and warnings.
    pub stderr: String,
}

impl Said {
    /// Everything it printed.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// The created object (`-o json`).
    ///
    /// # Panics
    ///
    /// When stdout is not JSON.
    pub fn created(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("the created object as JSON ({e}): {}", self.all()))
    }

    /// The created object's name (`-o json`).
    ///
    /// # Panics
    ///
    /// When stdout is not an object with a name.
    pub fn name(&self) -> String {
        self.created()["metadata"]["name"]
            .as_str()
            .expect("a created object has a name")
            .to_owned()
    }
}

/// Runs `command` (a `kubectl ... -f -`) with `object` as JSON on its stdin.
///
/// # Panics
///
/// When kubectl cannot be run.
pub fn feed(command: &mut Command, object: &serde_json::Value) -> Said {
    use std::io::Write as _;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(object.to_string().as_bytes())
        .expect("writing to kubectl");
    let out = child.wait_with_output().expect("kubectl finished");
    Said {
        admitted: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// A client for the tests' cluster, as its admin.
///
/// The first call in a process makes sure the control plane is up: it
/// reuses a running local cluster, or starts one with
/// `hack/local-cluster.sh up` under `flock`, so test binaries that start at
/// the same moment do not race. With `BUILDPOLICY_TEST_KUBECONFIG` set it
/// starts nothing. Every call builds a new client, because each
/// `#[tokio::test]` has its own runtime and a client's connections belong to
/// the runtime that opened them.
///
/// # Panics
///
/// When the server cannot be reached, with a message naming the command
/// that starts it: a test without a server fails, it does not skip.
pub async fn client() -> Client {
    let config = config().await;
    Client::try_from(config).unwrap_or_else(|e| {
        panic!(
            "cannot build a client from {}: {e}",
            kubeconfig_path().display()
        )
    })
}

/// A client that authenticates with a bearer `token` (a service account
/// token, say) against the same server and CA as [`client`], to check what
/// that identity may do.
///
/// # Panics
///
/// Like [`client`].
pub async fn client_with_token(token: &str) -> Client {
    let mut config = config().await;
    // Replacing the whole AuthInfo drops the admin's client certificate.
    config.auth_info = AuthInfo {
        token: Some(token.to_owned().into()),
        ..AuthInfo::default()
    };
    Client::try_from(config).unwrap_or_else(|e| panic!("cannot build a token client: {e}"))
}

/// The admin's client impersonating `user` (with no groups but
/// `system:authenticated`), to check what that identity may do.
///
/// # Panics
///
/// Like [`client`].
pub async fn client_as(user: &str) -> Client {
    let mut config = config().await;
    config.auth_info.impersonate = Some(user.to_owned());
    Client::try_from(config).unwrap_or_else(|e| panic!("cannot build an impersonating client: {e}"))
}

async fn config() -> Config {
    if let Err(message) = CONTROL_PLANE.get_or_init(ensure_control_plane).await {
        panic!("{message}");
    }
    let path = kubeconfig_path();
    load_config(&path)
        .await
        .unwrap_or_else(|e| panic!("{}", unreachable_message(&path, &e)))
}

async fn ensure_control_plane() -> Result<(), String> {
    let path = kubeconfig_path();
    if std::env::var_os(KUBECONFIG_ENV).is_some() {
        return readyz(&path)
            .await
            .map_err(|e| unreachable_message(&path, &e));
    }
    if path.is_file() && readyz(&path).await.is_ok() {
        return Ok(());
    }
    start_local_control_plane().await?;
    readyz(&path)
        .await
        .map_err(|e| unreachable_message(&path, &e))
}

/// Runs `flock -o <state>.lock hack/local-cluster.sh up`. `up` reuses a
/// cluster that another process started while this one waited for the lock.
/// `-o` keeps the lock out of the daemons `up` leaves running: they would
/// hold it for as long as the cluster runs, and every later caller would
/// wait on it forever.
async fn start_local_control_plane() -> Result<(), String> {
    let state = local_cluster_dir();
    let lock = state.with_extension("lock");
    if let Some(parent) = lock.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let script = repo_root().join("hack/local-cluster.sh");
    eprintln!(
        "[test-support] no reachable control plane at {}; running `flock -o {} {} up`",
        kubeconfig_path().display(),
        lock.display(),
        script.display()
    );
    let status = tokio::process::Command::new("flock")
        .arg("-o")
        .arg(&lock)
        .arg(&script)
        .arg("up")
        // The export line `up` prints is for people; keep stdout for tests.
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .await
        .map_err(|e| {
            format!(
                "cannot run `flock -o {} {} up` ({e}); flock comes with util-linux. \
                 Start the control plane by hand with: hack/local-cluster.sh up",
                lock.display(),
                script.display()
            )
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`hack/local-cluster.sh up` failed ({status}); its messages are above. \
             Fix that and run: hack/local-cluster.sh up"
        ))
    }
}

async fn load_config(path: &Path) -> Result<Config, String> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| e.to_string())
}

/// Asks `/readyz`: `/version` answers before the server can serve the APIs.
async fn readyz(path: &Path) -> Result<(), String> {
    let config = load_config(path).await?;
    let server = config.cluster_url.to_string();
    let server = server.trim_end_matches('/');
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(READYZ_TIMEOUT, client.request_text(request)).await {
        Ok(Ok(body)) if body.trim() == "ok" => Ok(()),
        Ok(Ok(body)) => Err(format!("{server}/readyz answered {body:?}")),
        Ok(Err(e)) => Err(format!("GET {server}/readyz failed: {}", with_causes(&e))),
        Err(_) => Err(format!(
            "{server}/readyz did not answer within {READYZ_TIMEOUT:?}"
        )),
    }
}

/// `error: cause: cause`, because kube's outermost error ("client error
/// (Connect)") hides the one that says what to do ("Connection refused").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause = cause.to_string();
        if !message.contains(&cause) {
            message = format!("{message}: {cause}");
        }
        source = source.and_then(std::error::Error::source);
    }
    message
}

fn unreachable_message(path: &Path, error: &str) -> String {
    let remedy = if std::env::var_os(KUBECONFIG_ENV).is_some() {
        format!(
            "{KUBECONFIG_ENV} names this kubeconfig, so nothing was started: start that cluster, \
             or unset {KUBECONFIG_ENV} to use the local control plane (hack/local-cluster.sh up)"
        )
    } else {
        "start the local control plane with: hack/local-cluster.sh up".to_owned()
    };
    format!(
        "the Kubernetes API server for the integration tests is not reachable\n  \
         kubeconfig: {}\n  error: {error}\n  {remedy}",
        path.display()
    )
}
