//! The operator under test: the binary (`--operator`) as a child process,
//! with the admin kubeconfig of the benchmark's control plane, without
//! leader election, its admin listener on a free loopback port.
//!
//! Not test-support's `OperatorProcess`, which builds the binary itself,
//! scopes it to one test's policies with `--policy-selector` and writes its
//! log under target/test-logs; the listener's port and its HTTP come from
//! there.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use buildpolicy_test_support::exposition::{Sample, samples};
use buildpolicy_test_support::process::free_loopback_port;
use buildpolicy_test_support::{HttpResponse, http_get};
use tokio::process::{Child, Command};
use tokio::time::Instant;

use crate::procfs::{ProcStats, proc_stats};

/// How long the operator gets to exit after SIGTERM.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(15);

pub struct OperatorProcess {
    child: Child,
    pid: u32,
    port: u16,
    log_path: PathBuf,
}

impl OperatorProcess {
    /// `<binary> run --metrics-addr 127.0.0.1:<port> --resync-seconds
    /// <resync>` with `KUBECONFIG=<kubeconfig>` and `env` added to this
    /// process's environment (`POD_NAME` removed: no leader election); its
    /// output appended to `log_path`.
    ///
    /// # Errors
    ///
    /// When it cannot be started.
    pub fn start(
        binary: &Path,
        kubeconfig: &Path,
        resync_seconds: i64,
        log_path: &Path,
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let port = free_loopback_port();
        let log = File::options()
            .create(true)
            .append(true)
            .open(log_path)
            .with_context(|| format!("opening {}", log_path.display()))?;
        let child = Command::new(binary)
            .arg("run")
            .args(["--metrics-addr", &format!("127.0.0.1:{port}")])
            .args(["--resync-seconds", &resync_seconds.to_string()])
            .env("KUBECONFIG", kubeconfig)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env_remove("POD_NAME")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the operator has no pid")?;
        Ok(Self {
            child,
            pid,
            port,
            log_path: log_path.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    async fn get(&self, path: &str) -> Option<HttpResponse> {
        http_get(&format!("http://127.0.0.1:{}{path}", self.port))
            .await
            .ok()
    }

    /// Waits until `/readyz` answers `leader` (its caches synced); returns
    /// the seconds since this call.
    ///
    /// # Errors
    ///
    /// When it exits, or is not ready within `timeout`.
    pub async fn wait_leader(&mut self, timeout: Duration) -> anyhow::Result<f64> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the operator exited ({status}); see {}",
                    self.log_path.display()
                );
            }
            if let Some(HttpResponse { status: 200, body }) = self.get("/readyz").await
                && body.trim() == "leader"
            {
                return Ok(started.elapsed().as_secs_f64());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "the operator was not ready within {}s; see {}",
            timeout.as_secs(),
            self.log_path.display()
        )
    }

    /// Its `/metrics`, nothing when it does not answer 200.
    pub async fn metrics(&self) -> Vec<Sample> {
        match self.get("/metrics").await {
            Some(HttpResponse { status: 200, body }) => samples(&body),
            _ => Vec::new(),
        }
    }

    /// Its CPU time and memory so far.
    pub fn stats(&self) -> ProcStats {
        proc_stats(self.pid)
    }

    /// SIGTERM, as the kubelet stops a pod; SIGKILL if it has not exited
    /// 15 s later.
    pub async fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // `kill` instead of libc: the workspace forbids unsafe code.
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(TERMINATE_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
