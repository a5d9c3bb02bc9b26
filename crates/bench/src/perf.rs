//! `--perf`: a CPU profile of the operator while it converges, `perf
//! record` at 99 Hz with call graphs unwound from DWARF CFI (`.eh_frame`;
//! the release build has neither frame pointers nor debug info). Reported
//! twice: self time per function, and time including callees for the
//! operator's own functions (and kube-rs').

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::pyfmt::round_to;
use crate::results::{Profile, ProfileParts, ProfileRow};

/// How long perf gets to write its data after SIGINT.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// Rows of each list in results.json.
const TOP: usize = 25;

/// Whether `perf` runs here (installed, and allowed by
/// `perf_event_paranoid`).
pub async fn usable() -> bool {
    Command::new("perf")
        .args(["stat", "-e", "task-clock", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

pub struct Perf {
    child: Child,
    /// The data file; `None` when perf did not finish writing it.
    path: Option<PathBuf>,
}

impl Perf {
    /// Starts recording process `pid` into `path`.
    ///
    /// # Errors
    ///
    /// When perf cannot be started.
    pub fn start(pid: u32, path: &Path) -> anyhow::Result<Self> {
        let child = Command::new("perf")
            .args(["record", "-F", "99", "--call-graph", "dwarf,16384", "-p"])
            .arg(pid.to_string())
            .arg("-o")
            .arg(path)
            .arg("-q")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Self {
            child,
            path: Some(path.to_path_buf()),
        })
    }

    /// SIGINT, which makes perf write its data and exit.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(STOP_TIMEOUT, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
            self.path = None;
        }
    }

    /// The two lists; unwinding takes a while, so this is called once the
    /// measurements are over. Empty (`{}`) when perf failed.
    pub async fn report(&self) -> Profile {
        let Some(path) = &self.path else {
            return Profile::Split(ProfileParts::default());
        };
        let self_time = rows(&perf_report(path, false).await, false);
        let inclusive = rows(&perf_report(path, true).await, true)
            .into_iter()
            .filter(|r| is_own(&r.symbol))
            .take(TOP)
            .collect();
        Profile::Split(ProfileParts {
            self_time: Some(self_time.into_iter().take(TOP).collect()),
            inclusive: Some(inclusive),
        })
    }
}

async fn perf_report(path: &Path, children: bool) -> String {
    let output = Command::new("perf")
        .arg("report")
        .arg("-i")
        .arg(path)
        .args(["--stdio", "-g", "none"])
        .arg(if children {
            "--children"
        } else {
            "--no-children"
        })
        .args(["--sort", "dso,symbol", "--percent-limit", "0.5"])
        .stderr(Stdio::null())
        .output()
        .await;
    output.map_or_else(
        |_| String::new(),
        |o| String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// The rows of a `perf report --stdio` listing, largest first.
/// Monomorphised copies of one function share a name: their self times
/// are added up; including callees they may nest, so the largest is kept.
fn rows(report: &str, children: bool) -> Vec<ProfileRow> {
    let mut totals: Vec<(String, String, f64)> = Vec::new();
    for (percent, dso, symbol) in report.lines().filter_map(parse_line) {
        match totals
            .iter_mut()
            .find(|(d, s, _)| *d == dso && *s == symbol)
        {
            Some((_, _, total)) if children => *total = total.max(percent),
            Some((_, _, total)) => *total += percent,
            None => totals.push((dso, symbol, percent)),
        }
    }
    let mut rows: Vec<ProfileRow> = totals
        .into_iter()
        .map(|(dso, symbol, percent)| ProfileRow {
            percent: round_to(percent, 2),
            dso,
            symbol,
        })
        .collect();
    rows.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    rows
}

/// `  12.34%  [ 5.67%]  dso  [.] symbol  ...`: the first percentage, the
/// object and the symbol (up to two spaces in a row, 160 characters).
fn parse_line(line: &str) -> Option<(f64, String, String)> {
    if !line.starts_with(char::is_whitespace) {
        return None;
    }
    let (percent, rest) = percentage(line.trim_start())?;
    let rest = match percentage(rest) {
        Some((_, after)) => after,
        None => rest,
    };
    let (dso, rest) = rest.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let rest = rest
        .strip_prefix("[.]")
        .or_else(|| rest.strip_prefix("[k]"))?;
    if !rest.starts_with(char::is_whitespace) {
        return None;
    }
    let text = rest.trim();
    let end = text
        .char_indices()
        .zip(text.chars().skip(1))
        .find(|((_, a), b)| a.is_whitespace() && b.is_whitespace())
        .map_or(text.len(), |((i, _), _)| i);
    Some((
        percent,
        dso.to_owned(),
        text[..end].chars().take(160).collect(),
    ))
}

/// `12.34%` followed by whitespace: the number and what follows the
/// whitespace.
fn percentage(text: &str) -> Option<(f64, &str)> {
    let digits = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .filter(|end| *end > 0)?;
    let after = text[digits..].strip_prefix('%')?;
    if !after.starts_with(char::is_whitespace) {
        return None;
    }
    Some((text[..digits].parse().ok()?, after.trim_start()))
}

/// The operator's own functions and kube-rs'.
fn is_own(symbol: &str) -> bool {
    ["buildpolicy_", "kube_", "<kube_"]
        .iter()
        .any(|prefix| symbol.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SELF: &str = "\
# Overhead  Shared Object         Symbol
# ........  ....................  ......
#
    12.50%  buildpolicy-operator  [.] serde_json::de::Deserializer<R>::parse_any
     7.25%  [kernel.kallsyms]     [k] clear_page_erms
     2.50%  buildpolicy-operator  [.] serde_json::de::Deserializer<R>::parse_any
     1.00%  libc.so.6             [.] __memmove_avx_unaligned_erms  (inlined)
";

    const CHILDREN: &str = "\
# Children      Self  Shared Object         Symbol
    40.00%     0.10%  buildpolicy-operator  [.] buildpolicy_controller::reconcile::apply
    30.00%     0.00%  buildpolicy-operator  [.] kube_runtime::controller::applier
    25.00%     0.00%  buildpolicy-operator  [.] tokio::runtime::task::raw::poll
    20.00%     0.00%  buildpolicy-operator  [.] buildpolicy_controller::reconcile::apply
";

    #[test]
    fn self_time_adds_up_copies_of_a_function() {
        let rows = rows(SELF, false);
        let summary: Vec<(f64, &str, &str)> = rows
            .iter()
            .map(|r| (r.percent, r.dso.as_str(), r.symbol.as_str()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    15.0,
                    "buildpolicy-operator",
                    "serde_json::de::Deserializer<R>::parse_any"
                ),
                (7.25, "[kernel.kallsyms]", "clear_page_erms"),
                (1.0, "libc.so.6", "__memmove_avx_unaligned_erms"),
            ]
        );
    }

    #[test]
    fn inclusive_time_keeps_the_largest_copy() {
        let rows = rows(CHILDREN, true);
        assert_eq!(rows[0].percent, 40.0);
        let own: Vec<&str> = rows
            .iter()
            .filter(|r| is_own(&r.symbol))
            .map(|r| r.symbol.as_str())
            .collect();
        assert_eq!(
            own,
            [
                "buildpolicy_controller::reconcile::apply",
                "kube_runtime::controller::applier"
            ]
        );
    }

    #[test]
    fn other_lines_are_skipped() {
        assert_eq!(parse_line("# Samples: 12K of event 'task-clock'"), None);
        assert_eq!(parse_line(""), None);
        assert_eq!(parse_line("    12.5%  dso  [x] symbol"), None);
    }
}
