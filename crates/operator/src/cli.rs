//! Command-line interface.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Grants Tekton image builds on OpenShift exactly the Linux capabilities they
/// need: each BuildPolicy becomes a least-privilege SCC, RBAC that lets one
/// service account use it, and a pin on the Tasks that run the build.
#[derive(Parser, Debug)]
#[command(name = "buildpolicy-operator", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the controller (in-cluster config, else KUBECONFIG / ~/.kube/config).
    Run(RunArgs),
    /// Print the BuildPolicy CustomResourceDefinition as YAML.
    Crdgen,
    /// Print the SCC, Role, RoleBinding and Task pins a policy produces, as YAML.
    Render(OfflineArgs),
    /// Validate policies offline, with the controller's messages; exits 1 if any is refused.
    Check(OfflineArgs),
}

/// The admin ceiling: what any policy may ask for at most.
#[derive(Args, Debug, Clone)]
pub struct CeilingArgs {
    /// YAML file with `allowedCapabilities`, `protectedNamespaces` and
    /// `userNamespaceRequiredFor` (e.g. a mounted ConfigMap). Flags below
    /// override its fields.
    #[arg(long, env = "BUILDPOLICY_CEILING_FILE")]
    pub ceiling_file: Option<PathBuf>,
    /// Capabilities any policy may request [default: SETFCAP,SETGID,SETUID,SYS_ADMIN,SYS_CHROOT].
    #[arg(long, value_delimiter = ',', env = "BUILDPOLICY_ALLOWED_CAPABILITIES")]
    pub allowed_capabilities: Option<Vec<String>>,
    /// Namespaces no policy may target; a trailing * matches a prefix
    /// [default: default,kube-*,openshift-*].
    #[arg(long, value_delimiter = ',', env = "BUILDPOLICY_PROTECTED_NAMESPACES")]
    pub protected_namespaces: Option<Vec<String>>,
    /// Capabilities granted only to policies whose spec.isolation is a user
    /// namespace (PodUserNamespace or CRIOUserNamespace), e.g. SYS_ADMIN [default: none].
    #[arg(
        long,
        value_delimiter = ',',
        env = "BUILDPOLICY_USER_NAMESPACE_REQUIRED_FOR"
    )]
    pub user_namespace_required_for: Option<Vec<String>>,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub ceiling: CeilingArgs,
    /// Address of the HTTP listener serving /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:8080", env = "BUILDPOLICY_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Only reconcile BuildPolicies matching this label selector.
    #[arg(long, env = "BUILDPOLICY_POLICY_SELECTOR")]
    pub policy_selector: Option<String>,
    /// The operator's own namespace; always protected from policies.
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: Option<String>,
    /// Seconds between looks at a converged policy (no API request unless it drifted).
    #[arg(long, default_value_t = 300)]
    pub resync_seconds: u64,
    /// Hold a coordination.k8s.io Lease in --namespace before reconciling,
    /// so that of several replicas only one writes.
    #[arg(long, env = "BUILDPOLICY_LEADER_ELECT", requires = "namespace")]
    pub leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "buildpolicy-operator")]
    pub lease_name: String,
    /// Seconds a leader's Lease stays valid without renewal; a standby takes
    /// over within this time after the leader dies.
    #[arg(long, default_value_t = 15)]
    pub lease_duration_seconds: u64,
    /// /healthz fails while a reconcile has been running longer than this:
    /// it waits on something that will not answer, and a restart is what
    /// unsticks the controller.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_reconcile_seconds: u64,
    /// /readyz fails once a watch has been failing (every retry, no event in
    /// between) for longer than this.
    #[arg(long, default_value_t = 10)]
    pub watch_failure_grace_seconds: u64,
    /// This replica's identity in the Lease (default: POD_NAME, else random).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "BUILDPOLICY_LOG_JSON")]
    pub log_json: bool,
}

#[derive(Args, Debug)]
pub struct OfflineArgs {
    /// File with one or more BuildPolicy documents ("-" for standard input).
    #[arg(short = 'f', long = "filename", required_unless_present = "tasks")]
    pub file: Option<PathBuf>,
    /// A Tekton Task file (one or more Task documents) whose spec digest to
    /// print, for the policy's `spec.taskDigests`; a policy that lists the
    /// Task with another digest is refused. Repeatable.
    #[arg(short = 't', long = "task", value_name = "FILE")]
    pub tasks: Vec<PathBuf>,
    #[command(flatten)]
    pub ceiling: CeilingArgs,
}
