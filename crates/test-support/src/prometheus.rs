//! Prometheus itself, from Debian's `prometheus` package (`prometheus` and
//! `promtool`): the operator's metrics are checked by the tools that consume
//! them, not only by our own parser.
//!
//! A missing tool fails the test that needs it, naming the install command;
//! `hack/test.sh` installs the package before the tests run.

use std::fs::File;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

use crate::http::{HttpResponse, http_get};
use crate::process::{free_loopback_port, log_tail, scratch_dir, test_log_dir};

/// How to get the tools, for the message of a test that misses them.
const INSTALL_HINT: &str = "hack/test.sh installs it before the tests run \
     (hack/tools/install.sh: `apt-get install prometheus`, Debian's package with \
     the prometheus server and promtool); by hand, as root: \
     apt-get update && apt-get install -y --no-install-recommends prometheus";

/// How long a started Prometheus gets to answer `/-/ready`: it opens an
/// empty TSDB in a temporary directory, which takes about a second.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The path of `tool` on `PATH`.
///
/// # Panics
///
/// When it is not there, saying how to install it: a test that needs it
/// fails rather than skips.
pub fn prometheus_tool(tool: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(tool))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("`{tool}` is not on PATH: {INSTALL_HINT}"))
}

/// Runs `promtool check metrics` on an exposition (on its standard input,
/// as `curl .../metrics | promtool check metrics` does), and returns its
/// output when it found nothing to complain about.
///
/// # Errors
///
/// promtool's complaints (it exits non-zero on lint problems).
///
/// # Panics
///
/// When promtool is not installed or cannot be run.
pub fn promtool_check_metrics(exposition: &str) -> Result<String, String> {
    let promtool = prometheus_tool("promtool");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", promtool.display()));
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(exposition.as_bytes())
        .unwrap_or_else(|e| panic!("writing to promtool: {e}"));
    let output = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for promtool: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() && text.trim().is_empty() {
        Ok(text)
    } else {
        Err(format!(
            "promtool check metrics ({}):\n{text}",
            output.status
        ))
    }
}

/// A Prometheus server on a free loopback port, scraping `targets` every
/// second, with its TSDB in a temporary directory; killed when dropped.
#[derive(Debug)]
pub struct PrometheusServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
    log_path: PathBuf,
}

impl PrometheusServer {
    /// Starts it and waits until `/-/ready` answers 200.
    ///
    /// # Panics
    ///
    /// When `prometheus` is not installed, exits, or is not ready in 30 s.
    pub async fn start(name: &str, job: &str, targets: &[SocketAddr]) -> Self {
        let binary = prometheus_tool("prometheus");
        let dir = scratch_dir("prometheus");
        let targets: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config)
            .unwrap_or_else(|e| panic!("writing {}: {e}", config_path.display()));
        let addr = SocketAddr::from(([127, 0, 0, 1], free_loopback_port()));
        let log_path = test_log_dir().join(format!("prometheus-{name}.log"));
        let log = File::create(&log_path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("duplicating a file handle");
        let child = Command::new(&binary)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        eprintln!(
            "[test-support] prometheus {name} (pid {}): http://{addr}, log {}",
            child.id(),
            log_path.display()
        );
        let mut server = Self {
            child,
            addr,
            dir,
            log_path,
        };
        server.wait_until_ready().await;
        server
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The result of an instant query (`/api/v1/query`): for a vector, its
    /// samples, each `{"metric": {...}, "value": [time, "value"]}`.
    ///
    /// # Panics
    ///
    /// When Prometheus does not answer with `"status": "success"`.
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let data = self
            .api(&format!("/api/v1/query?query={}", percent_encode(promql)))
            .await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The scrape targets and their health (`/api/v1/targets`).
    pub async fn active_targets(&self) -> Vec<Value> {
        let data = self.api("/api/v1/targets?state=active").await;
        data["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// GETs an API path and returns its `data`.
    async fn api(&self, path: &str) -> Value {
        let url = self.url(path);
        let response = http_get(&url)
            .await
            .unwrap_or_else(|e| panic!("{e}\n{}", log_tail(&self.log_path, 20)));
        let json: Value = serde_json::from_str(&response.body)
            .unwrap_or_else(|e| panic!("GET {url}: not JSON ({e}): {:?}", response.body));
        assert_eq!(
            json["status"], "success",
            "GET {url} answered {}: {json}",
            response.status
        );
        json["data"].clone()
    }

    /// SIGKILL and wait.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
        }
        self.child.wait().ok()
    }

    async fn wait_until_ready(&mut self) {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "prometheus exited at start ({status})\n{}",
                    log_tail(&self.log_path, 30)
                );
            }
            let last = http_get(&self.url("/-/ready")).await;
            if matches!(last, Ok(HttpResponse { status: 200, .. })) {
                return;
            }
            if Instant::now() >= deadline {
                self.kill();
                panic!(
                    "prometheus was not ready within {STARTUP_TIMEOUT:?} (last: {last:?})\n{}",
                    log_tail(&self.log_path, 30)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

impl Drop for PrometheusServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Percent-encodes a query parameter: everything but RFC 3986's unreserved
/// characters.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(
            percent_encode("sum(rate(x_total{a=\"b c\"}[1m]))"),
            "sum%28rate%28x_total%7Ba%3D%22b%20c%22%7D%5B1m%5D%29%29"
        );
        assert_eq!(
            percent_encode("buildpolicy_reconciliations_total"),
            "buildpolicy_reconciliations_total"
        );
    }
}
