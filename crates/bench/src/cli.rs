//! The command line: `run` (what `hack/bench.sh` calls, with the options
//! of the Python harness it replaces) and `report`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::pyfmt::repr_float;

/// The operator benchmark, driven by hack/bench.sh (BENCHMARKS.md explains
/// the method).
#[derive(Parser, Debug)]
#[command(name = "buildpolicy-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Measure: for each N, a fresh control plane of its own with N
    /// namespaces (a service account and 5 Tasks each); then three runs on
    /// the same objects: what `buildpolicy-operator render` prints for the
    /// N policies applied with one `kubectl apply --server-side`
    /// (baseline-serial) and with P at once (baseline-parallel), and the
    /// operator with the N policies applied. After the operator converged:
    /// two resync periods of steady state (API server write requests),
    /// out-of-band edits and how long until each is reverted, and the
    /// operator's peak RSS and CPU time.
    Run(Box<RunArgs>),
    /// The Markdown tables of a results.json (on stdout without options).
    Report(ReportArgs),
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Numbers of policies, comma-separated.
    #[arg(long, default_value = "100,500,1000,2000")]
    pub sizes: String,
    /// Directory for results.json and results.md.
    #[arg(long)]
    pub out: PathBuf,
    /// Scratch directory (generated YAML, perf data).
    #[arg(long)]
    pub work_dir: PathBuf,
    #[arg(long)]
    pub log_dir: PathBuf,
    /// LOCAL_CLUSTER_DIR of the benchmark's control plane.
    #[arg(long)]
    pub cluster_dir: PathBuf,
    /// The operator binary.
    #[arg(long)]
    pub operator: PathBuf,
    #[arg(long, default_value_t = 30)]
    pub resync_seconds: i64,
    /// Default: 2 x --resync-seconds.
    #[arg(long)]
    pub steady_seconds: Option<i64>,
    /// A further window after the steady one (0: none).
    #[arg(long, default_value_t = 0)]
    pub long_steady_seconds: i64,
    #[arg(long, default_value_t = 5.0)]
    pub settle_seconds: f64,
    /// kubectl processes of the parallel baseline.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Requests at once for setup and cleanup.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    #[arg(long, default_value_t = 100)]
    pub drift_edits: usize,
    /// Dry-run pod creations in a namespace no policy names, with no policy
    /// and with all N (what each policy's admission policy costs every
    /// other pod); 0: none.
    #[arg(long, default_value_t = 1000)]
    pub admission_probes: usize,
    /// Convergence timeout in seconds (default 300 + 3 s x N).
    #[arg(long, default_value_t = 0.0)]
    pub timeout: f64,
    /// Profile the operator while it converges (perf record).
    #[arg(long)]
    pub perf: bool,
    /// Leave the control plane running at the end.
    #[arg(long)]
    pub keep: bool,
    /// Exit 1 if the operator writes in steady state.
    #[arg(long)]
    pub gate: bool,
    /// With --gate: also exit 1 if converging took more write requests per
    /// policy (the API server's counts do not say who read:
    /// kube-controller-manager's garbage collector sometimes GETs the
    /// operator's objects).
    #[arg(long)]
    pub max_requests_per_policy: Option<f64>,
    /// The command line to name in the results.
    #[arg(long, default_value = "hack/bench.sh")]
    pub command: String,
    /// Environment for the operator (an experiment, e.g.
    /// MALLOC_ARENA_MAX=2); repeatable.
    #[arg(long, value_name = "KEY=VALUE", value_parser = key_value)]
    pub operator_env: Vec<(String, String)>,
    /// The commit the operator was built from (git archive).
    #[arg(long)]
    pub source_commit: Option<String>,
}

impl RunArgs {
    /// `--sizes` as numbers.
    pub fn size_list(&self) -> anyhow::Result<Vec<usize>> {
        let sizes = self
            .sizes
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("--sizes {}: {e}", self.sizes))?;
        if sizes.contains(&0) {
            bail!("--sizes {}: every size must be at least 1", self.sizes);
        }
        Ok(sizes)
    }

    pub fn steady_seconds(&self) -> i64 {
        self.steady_seconds.unwrap_or(2 * self.resync_seconds)
    }

    /// How long converging may take at `n` policies.
    // Sizes of a benchmark, far below 2^53.
    #[allow(clippy::cast_precision_loss)]
    pub fn convergence_timeout(&self, n: usize) -> Duration {
        if self.timeout > 0.0 {
            Duration::from_secs_f64(self.timeout)
        } else {
            Duration::from_secs(300 + 3 * n as u64)
        }
    }

    /// The timeout as the log line names it.
    pub fn timeout_shown(&self, n: usize) -> String {
        if self.timeout > 0.0 {
            repr_float(self.timeout)
        } else {
            self.convergence_timeout(n).as_secs().to_string()
        }
    }
}

fn key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// A results.json of `run`.
    pub results: PathBuf,
    /// Write the tables there (results.md).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    /// Rewrite the generated block of this file (BENCHMARKS.md).
    #[arg(long)]
    pub update_doc: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> RunArgs {
        let mut argv = vec!["buildpolicy-bench", "run", "--out", "o", "--work-dir", "w"];
        argv.extend(["--log-dir", "l", "--cluster-dir", "c", "--operator", "op"]);
        argv.extend(args);
        match Cli::parse_from(argv).command {
            Command::Run(args) => *args,
            Command::Report(_) => unreachable!(),
        }
    }

    #[test]
    fn takes_what_bench_sh_passes() {
        let args = parse(&[
            "--sizes=100",
            "--resync-seconds",
            "20",
            "--gate",
            "--max-requests-per-policy",
            "9.5",
            "--operator-env",
            "MALLOC_ARENA_MAX=2",
            "--operator-env",
            "A=b=c",
            "--timeout",
            "90",
        ]);
        assert_eq!(args.size_list().unwrap(), [100]);
        assert_eq!(args.steady_seconds(), 40);
        assert!(args.gate && !args.keep && !args.perf);
        assert_eq!(args.max_requests_per_policy, Some(9.5));
        assert_eq!(
            args.operator_env,
            [
                ("MALLOC_ARENA_MAX".into(), "2".into()),
                ("A".into(), "b=c".into())
            ]
        );
        assert_eq!(args.convergence_timeout(100), Duration::from_secs(90));
        assert_eq!(args.timeout_shown(100), "90.0");
    }

    #[test]
    fn defaults() {
        let args = parse(&[]);
        assert_eq!(args.size_list().unwrap(), [100, 500, 1000, 2000]);
        assert_eq!(args.steady_seconds(), 60);
        assert_eq!((args.parallel, args.workers, args.drift_edits), (8, 8, 100));
        assert_eq!(args.settle_seconds, 5.0);
        assert_eq!(args.convergence_timeout(100), Duration::from_secs(600));
        assert_eq!(args.timeout_shown(100), "600");
        assert_eq!(args.command, "hack/bench.sh");
    }

    #[test]
    fn refuses_bad_sizes() {
        assert!(parse(&["--sizes", "100,x"]).size_list().is_err());
        assert!(parse(&["--sizes", "0"]).size_list().is_err());
    }
}
