//! The benchmark's own control plane: `hack/local-cluster.sh` with
//! `LOCAL_CLUSTER_DIR` set to a directory of its own (`--cluster-dir`,
//! target/bench-cluster), never the tests' cluster.
//!
//! Not test-support's `PrivateCluster`: that one lives in a fresh scratch
//! directory that it removes when dropped, where this one is a fixed
//! directory that `--keep` leaves running, and the benchmark reads the CPU
//! time of its processes. Both run the binaries of the same build
//! ([`binaries_dir`]).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context as _, bail};
use buildpolicy_test_support::private_cluster::binaries_dir;
use buildpolicy_test_support::repo_root;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::procfs::cpu_of;

/// The processes whose CPU time each run reports.
const PROCESSES: [&str; 3] = ["etcd", "kube-apiserver", "kube-controller-manager"];

pub struct Cluster {
    /// `LOCAL_CLUSTER_DIR`.
    dir: PathBuf,
    /// The script's output, appended.
    log_path: PathBuf,
}

impl Cluster {
    pub fn new(dir: &Path, log_dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            log_path: log_dir.join("local-cluster.log"),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A fresh control plane: `down`, then `up` without OpenShift's SCC
    /// admission webhook (no pod is created here; it would only add a
    /// writer, of namespace annotations) and without Tekton's controller
    /// (no PipelineRun runs). Returns the seconds it took.
    ///
    /// # Errors
    ///
    /// When the script fails.
    pub async fn up(&self) -> anyhow::Result<f64> {
        let started = Instant::now();
        self.script(&["down"]).await?;
        self.script(&["up", "--no-scc-admission", "--no-tekton"])
            .await?;
        Ok(started.elapsed().as_secs_f64())
    }

    /// Stops everything `up` started and removes its state.
    ///
    /// # Errors
    ///
    /// When the script fails.
    pub async fn down(&self) -> anyhow::Result<()> {
        self.script(&["down"]).await
    }

    async fn script(&self, args: &[&str]) -> anyhow::Result<()> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .with_context(|| format!("opening {}", self.log_path.display()))?;
        let status = tokio::process::Command::new(repo_root().join("hack/local-cluster.sh"))
            .args(args)
            .env("LOCAL_CLUSTER_DIR", &self.dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .await
            .context("running hack/local-cluster.sh")?;
        if !status.success() {
            bail!(
                "`LOCAL_CLUSTER_DIR={} hack/local-cluster.sh {}` failed ({status}); see {}",
                self.dir.display(),
                args.join(" "),
                self.log_path.display()
            );
        }
        Ok(())
    }

    /// Its admin kubeconfig (a client certificate in `system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    /// The kubectl of the same build as the API server.
    pub fn kubectl() -> PathBuf {
        binaries_dir().join("kubectl")
    }

    /// `kubectl apply --server-side -f <file>` as its admin, kubectl's
    /// output in `log` (at `log_path`, named when it fails).
    ///
    /// # Errors
    ///
    /// When kubectl cannot run or exits unsuccessfully.
    pub async fn kubectl_apply(
        &self,
        file: &Path,
        log: File,
        log_path: &Path,
    ) -> anyhow::Result<()> {
        let status = tokio::process::Command::new(Self::kubectl())
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(["apply", "--server-side", "-f"])
            .arg(file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .status()
            .await
            .context("running kubectl")?;
        if !status.success() {
            bail!(
                "kubectl apply --server-side -f {} failed ({status}); see {}",
                file.display(),
                log_path.display()
            );
        }
        Ok(())
    }

    /// A client, as its admin.
    ///
    /// # Errors
    ///
    /// When the kubeconfig cannot be read.
    pub async fn client(&self) -> anyhow::Result<Client> {
        let path = self.kubeconfig();
        let kubeconfig =
            Kubeconfig::read_from(&path).with_context(|| format!("reading {}", path.display()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .with_context(|| format!("loading {}", path.display()))?;
        Client::try_from(config).with_context(|| format!("a client for {}", path.display()))
    }

    /// The process ids of etcd, kube-apiserver and kube-controller-manager,
    /// as the script recorded them.
    pub fn pids(&self) -> BTreeMap<String, u32> {
        PROCESSES
            .iter()
            .filter_map(|name| {
                let path = self.dir.join("run").join(format!("{name}.pid"));
                let pid = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
                Some(((*name).to_owned(), pid))
            })
            .collect()
    }

    /// Their CPU seconds so far.
    pub fn cpu(&self) -> BTreeMap<String, f64> {
        cpu_of(&self.pids())
    }
}

/// The API server's version (`v1.37.2`), or `unknown`: informational only.
pub async fn server_version(client: &Client) -> String {
    client
        .apiserver_version()
        .await
        .map_or_else(|_| "unknown".to_owned(), |v| v.git_version)
}

/// The API server's `/metrics` (Prometheus text), read as the admin:
/// `apiserver_request_total` counts every request by verb and resource,
/// whoever sent it.
///
/// # Errors
///
/// When the server does not answer.
pub async fn api_server_metrics(client: &Client) -> anyhow::Result<String> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("a GET request");
    client
        .request_text(request)
        .await
        .context("GET /metrics of the API server")
}
