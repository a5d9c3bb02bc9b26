//! A control plane of one test's own, for faults that must not touch the
//! cluster every other test shares: restarting its API server, say.
//!
//! `hack/local-cluster.sh` runs it with `LOCAL_CLUSTER_DIR` set to a fresh
//! directory under `target/tmp`: its own etcd, kube-apiserver and
//! kube-controller-manager on free loopback ports, with the same CRDs and
//! default SCCs, from the binaries the shared cluster was built from.
//! Starting one takes about 13 s; it is stopped (`down`) and its directory
//! removed when the handle drops, also when the test panics.
//! [`PrivateCluster::builder`] passes options to `up`, such as the SCC CRD
//! of an older OpenShift release.
//!
//! ```no_run
//! use buildpolicy_test_support::private_cluster::PrivateCluster;
//! use buildpolicy_test_support::process::OperatorProcess;
//!
//! # async fn test() {
//! let cluster = PrivateCluster::start("restart").await;
//! let client = cluster.client().await;
//! let operator = OperatorProcess::builder("restart")
//!     .kubeconfig(cluster.operator_kubeconfig().await)
//!     .start()
//!     .await;
//! let took = cluster.restart().await;
//! # }
//! ```

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::PostParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};

use crate::cluster::repo_root;
use crate::operator::{OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};
use crate::process::{scratch_dir, test_log_dir, write_token_kubeconfig};

/// A running control plane of its own, stopped when dropped.
#[derive(Debug)]
pub struct PrivateCluster {
    name: String,
    /// `LOCAL_CLUSTER_DIR` of the script: its state, certificates, data.
    dir: PathBuf,
    log_path: PathBuf,
}

/// What to start: `hack/local-cluster.sh up` plus options.
#[derive(Clone, Debug)]
#[must_use = "nothing runs until start()"]
pub struct PrivateClusterBuilder {
    name: String,
    up_args: Vec<String>,
}

impl PrivateClusterBuilder {
    /// `--scc-crd <release>`: serve the SCC CRD of that OpenShift release
    /// (`default`, `4.18`, `4.16`; see `hack/local-cluster.sh`).
    pub fn scc_crd(self, release: &str) -> Self {
        self.up_arg("--scc-crd").up_arg(release)
    }

    /// `--kube <minor>`: run that older Kubernetes' API server (`1.27`,
    /// `1.30`; see `hack/local-cluster.sh`).
    pub fn kube(self, minor: &str) -> Self {
        self.up_arg("--kube").up_arg(minor)
    }

    /// Any other option of `up`.
    pub fn up_arg(mut self, arg: impl Into<String>) -> Self {
        self.up_args.push(arg.into());
        self
    }

    /// Starts it with `LOCAL_CLUSTER_DIR=<fresh dir> hack/local-cluster.sh
    /// up [options]`, whose output goes to
    /// `target/test-logs/private-cluster-<name>.log`.
    ///
    /// # Panics
    ///
    /// When `up` fails, with the end of its log.
    pub async fn start(self) -> PrivateCluster {
        let name = self.name;
        let dir = scratch_dir("cluster");
        let log_path = test_log_dir().join(format!("private-cluster-{name}.log"));
        File::create(&log_path).unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let cluster = PrivateCluster {
            name: name.clone(),
            dir,
            log_path,
        };
        let started = Instant::now();
        let mut args = vec!["up"];
        args.extend(self.up_args.iter().map(String::as_str));
        cluster.script(&args).await;
        eprintln!(
            "[test-support] private cluster {name} ({}) up in {:.1}s: {}, log {}",
            args.join(" "),
            started.elapsed().as_secs_f64(),
            cluster.kubeconfig_path().display(),
            cluster.log_path.display()
        );
        cluster
    }
}

impl PrivateCluster {
    /// Starts one with `LOCAL_CLUSTER_DIR=<fresh dir> hack/local-cluster.sh
    /// up`, whose output goes to `target/test-logs/private-cluster-<name>.log`.
    ///
    /// # Panics
    ///
    /// When `up` fails, with the end of its log.
    pub async fn start(name: &str) -> Self {
        Self::builder(name).start().await
    }

    /// One with options for `up`; [`PrivateClusterBuilder::start`] starts it.
    pub fn builder(name: &str) -> PrivateClusterBuilder {
        PrivateClusterBuilder {
            name: name.to_owned(),
            // Without Tekton's controller and resolvers by default: no
            // private-cluster test runs a pipeline, and they cost seconds
            // to start (each cluster's Tekton binds only free ports of its
            // own, so a test that needs them can ask).
            up_args: vec!["--no-tekton".to_owned()],
        }
    }

    /// Its name in messages and in its log file's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its admin kubeconfig (a client certificate in `system:masters`).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// Where the script's output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// A client for it, as its admin. Build a new one after
    /// [`restart`](Self::restart) if in doubt: a client's pooled connections
    /// to the killed server are gone (kube opens new ones by itself).
    ///
    /// # Panics
    ///
    /// When its kubeconfig cannot be read.
    pub async fn client(&self) -> Client {
        let path = self.kubeconfig_path();
        let kubeconfig = Kubeconfig::read_from(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
        Client::try_from(config)
            .unwrap_or_else(|e| panic!("cannot build a client from {}: {e}", path.display()))
    }

    /// `kubectl` (the one the script built) with `KUBECONFIG` pointing at it.
    pub fn kubectl(&self) -> Command {
        let built = binaries_dir().join("kubectl");
        let mut command = if built.is_file() {
            Command::new(built)
        } else {
            Command::new("kubectl")
        };
        command.env("KUBECONFIG", self.kubeconfig_path());
        command
    }

    /// A kubeconfig for the operator's ServiceAccount on this cluster, bound
    /// to the shipped `config/rbac` (applied here first), with a token from
    /// the TokenRequest API: what
    /// [`OperatorBuilder::kubeconfig`](crate::process::OperatorBuilder::kubeconfig)
    /// takes.
    ///
    /// # Panics
    ///
    /// When applying the RBAC or requesting the token fails.
    pub async fn operator_kubeconfig(&self) -> PathBuf {
        self.apply("-f", "config/manager/namespace.yaml");
        self.apply("-k", "config/rbac");
        let accounts: Api<ServiceAccount> =
            Api::namespaced(self.client().await, OPERATOR_NAMESPACE);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                expiration_seconds: Some(7200),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token = accounts
            .create_token_request(OPERATOR_SERVICE_ACCOUNT, &PostParams::default(), &request)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "requesting a token for {OPERATOR_NAMESPACE}/{OPERATOR_SERVICE_ACCOUNT} on private cluster {}: {e}",
                    self.name
                )
            })
            .status
            .and_then(|s| s.token)
            .expect("TokenRequest returned a token");
        let user = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}");
        let path = self
            .dir
            .join(format!("operator-{}.kubeconfig", crate::unique_name("sa")));
        write_token_kubeconfig(&self.kubeconfig_path(), &user, &token, &path)
    }

    /// `kubectl apply --server-side -f|-k <repository path>` on it, as
    /// the field manager `integration-tests`.
    ///
    /// # Panics
    ///
    /// When kubectl fails, with what it said.
    pub fn apply(&self, flag: &str, path: &str) {
        let out = self
            .kubectl()
            .args([
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=integration-tests",
                flag,
            ])
            .arg(repo_root().join(path))
            .output()
            .expect("running kubectl");
        assert!(
            out.status.success(),
            "kubectl apply {flag} {path} on private cluster {}: {}",
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `hack/local-cluster.sh restart`: SIGKILLs its kube-apiserver and etcd
    /// and starts them again on the same ports with the same data, as a
    /// crash of the control plane's node would; returns once `/readyz`
    /// answers again, with how long that took. kube-controller-manager keeps
    /// running and has to reconnect, like every other client.
    ///
    /// # Panics
    ///
    /// When the script fails, with the end of its log.
    pub async fn restart(&self) -> Duration {
        let started = Instant::now();
        self.script(&["restart"]).await;
        started.elapsed()
    }

    /// The API server's own `/metrics` (Prometheus text), read as the admin:
    /// `apiserver_request_total` counts every request by verb and resource,
    /// whoever sent it.
    ///
    /// # Panics
    ///
    /// When the server does not answer.
    pub async fn api_server_metrics(&self) -> String {
        let request = http::Request::get("/metrics")
            .body(Vec::new())
            .expect("a GET request");
        self.client()
            .await
            .request_text(request)
            .await
            .unwrap_or_else(|e| panic!("GET /metrics of private cluster {}: {e}", self.name))
    }

    /// `hack/local-cluster.sh stop-apiserver`: SIGKILLs its kube-apiserver
    /// and etcd, until [`PrivateCluster::start_api_server`]. Every client's
    /// connections drop and new ones are refused.
    ///
    /// # Panics
    ///
    /// When the script fails, with the end of its log.
    pub async fn stop_api_server(&self) {
        self.script(&["stop-apiserver"]).await;
    }

    /// `hack/local-cluster.sh start-apiserver`: starts them again on the same
    /// ports with the same data; returns once `/readyz` answers.
    ///
    /// # Panics
    ///
    /// When the script fails, with the end of its log.
    pub async fn start_api_server(&self) {
        self.script(&["start-apiserver"]).await;
    }

    /// `hack/local-cluster.sh pause-apiserver`: SIGSTOPs kube-apiserver, a
    /// hung server: connections stay open and no request is answered until
    /// [`PrivateCluster::resume_api_server`].
    ///
    /// # Panics
    ///
    /// When the script fails, with the end of its log.
    pub async fn pause_api_server(&self) {
        self.script(&["pause-apiserver"]).await;
    }

    /// `hack/local-cluster.sh resume-apiserver`: SIGCONT.
    ///
    /// # Panics
    ///
    /// When the script fails, with the end of its log.
    pub async fn resume_api_server(&self) {
        self.script(&["resume-apiserver"]).await;
    }

    /// `hack/local-cluster.sh scc-crd <release>`: replaces its SCC CRD with
    /// that OpenShift release's, as an upgrade of the cluster would, and
    /// returns once the API server applies SCCs with the new schema.
    ///
    /// # Panics
    ///
    /// When the script fails, with the end of its log.
    pub async fn switch_scc_crd(&self, release: &str) -> Duration {
        let started = Instant::now();
        self.script(&["scc-crd", release]).await;
        started.elapsed()
    }

    /// Runs `hack/local-cluster.sh <args>` for this cluster, its output
    /// appended to the log.
    async fn script(&self, args: &[&str]) {
        let command = args.join(" ");
        let status = self
            .script_command(args)
            .map(tokio::process::Command::from)
            .and_then(|mut script| script.kill_on_drop(true).spawn())
            .unwrap_or_else(|e| panic!("running hack/local-cluster.sh {command}: {e}"))
            .wait()
            .await
            .unwrap_or_else(|e| panic!("waiting for hack/local-cluster.sh {command}: {e}"));
        assert!(
            status.success(),
            "`LOCAL_CLUSTER_DIR={} hack/local-cluster.sh {command}` failed ({status}) for private cluster {}\n{}",
            self.dir.display(),
            self.name,
            crate::process::log_tail(&self.log_path, 30)
        );
    }

    fn script_command(&self, args: &[&str]) -> std::io::Result<Command> {
        let log = File::options().append(true).open(&self.log_path)?;
        let log_err = log.try_clone()?;
        let mut script = Command::new(repo_root().join("hack/local-cluster.sh"));
        script
            .args(args)
            .env("LOCAL_CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        Ok(script)
    }
}

impl Drop for PrivateCluster {
    /// `hack/local-cluster.sh down` (it stops every process it started),
    /// then removes the directory; without panicking, since a panic here,
    /// while a failed test unwinds, would abort the test binary.
    fn drop(&mut self) {
        match self.script_command(&["down"]).and_then(|mut c| c.status()) {
            Ok(status) if status.success() => {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            outcome => eprintln!(
                "[test-support] stopping private cluster {} failed ({outcome:?}); \
                 stop it with: LOCAL_CLUSTER_DIR={} hack/local-cluster.sh down",
                self.name,
                self.dir.display()
            ),
        }
    }
}

/// Where the script's binaries are: `LOCAL_CLUSTER_BIN`, as the script reads
/// it (a worktree sharing another checkout's build), or this checkout's.
pub fn binaries_dir() -> PathBuf {
    std::env::var_os("LOCAL_CLUSTER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/local-cluster/bin"))
}
