//! CPU time and memory of processes, and facts about the machine, from
//! `/proc`.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::OnceLock;

use crate::pyfmt::round_to;
use crate::pyjson::OrderedMap;
use crate::results::Machine;

/// CPU and memory of a live process.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ProcStats {
    /// utime + stime.
    pub cpu_seconds: Option<f64>,
    /// Peak RSS.
    pub vmhwm_kib: Option<i64>,
    pub vmrss_kib: Option<i64>,
    pub rssanon_kib: Option<i64>,
    pub rssfile_kib: Option<i64>,
}

/// The stats of process `pid`; all `None` once it is gone.
pub fn proc_stats(pid: u32) -> ProcStats {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mut stats = parse_status(&status);
    stats.cpu_seconds = stat_ticks(&stat, &[14, 15]).map(ticks_to_seconds);
    stats
}

/// CPU seconds of this process's children that it has waited for
/// (`cutime + cstime`): around the `wait` of a kubectl, the CPU that
/// kubectl used, as `wait4`'s rusage would say.
pub fn waited_children_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    stat_ticks(&stat, &[16, 17]).map_or(0.0, ticks_to_seconds)
}

/// The 1, 5 and 15 minute load averages.
pub fn loadavg() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

/// CPUs, their model, memory and kernel release.
pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let processors = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(String::new, |(_, v)| v.trim().to_owned());
    let mem_kib: f64 = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    Machine {
        nproc: i64::try_from(processors).unwrap_or(0),
        cpu,
        memory_gib: round_to(mem_kib / 1024.0 / 1024.0, 1),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .unwrap_or_default()
            .trim()
            .to_owned(),
        python: None,
    }
}

/// Fields (numbered from 1, as in proc(5)) of a `/proc/<pid>/stat` line,
/// added up. The command name (field 2) may hold spaces and parentheses,
/// so fields are counted from the last `)`.
fn stat_ticks(stat: &str, fields: &[usize]) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let rest: Vec<&str> = after_name.split_whitespace().collect();
    fields
        .iter()
        // Field 3 (the state) is rest[0].
        .map(|f| rest.get(f - 3)?.parse::<u64>().ok())
        .sum()
}

fn parse_status(status: &str) -> ProcStats {
    let mut stats = ProcStats::default();
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let kib = value.split_whitespace().next().and_then(|v| v.parse().ok());
        match key {
            "VmHWM" => stats.vmhwm_kib = kib,
            "VmRSS" => stats.vmrss_kib = kib,
            "RssAnon" => stats.rssanon_kib = kib,
            "RssFile" => stats.rssfile_kib = kib,
            _ => {}
        }
    }
    stats
}

// Clock ticks of a benchmark's processes, far below 2^53.
#[allow(clippy::cast_precision_loss)]
fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / clock_ticks_per_second()
}

/// `getconf CLK_TCK` (sysconf needs libc, and the workspace forbids
/// unsafe code); 100 where getconf is missing, as on every Linux.
fn clock_ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// CPU seconds of named processes, 0 for those that are gone.
pub fn cpu_of(pids: &BTreeMap<String, u32>) -> BTreeMap<String, f64> {
    pids.iter()
        .map(|(name, pid)| (name.clone(), proc_stats(*pid).cpu_seconds.unwrap_or(0.0)))
        .collect()
}

/// CPU seconds each process spent from `before` to `after`, rounded to
/// milliseconds.
pub fn cpu_delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> OrderedMap<f64> {
    after
        .iter()
        .map(|(name, spent)| {
            let was = before.get(name).copied().unwrap_or(0.0);
            (name.clone(), round_to(spent - was, 3))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ticks_after_an_odd_command_name() {
        let stat =
            "4242 (kube (api) server) S 1 4242 4242 0 -1 4194560 1 2 3 4 250 30 7 9 20 0 12 0";
        assert_eq!(stat_ticks(stat, &[14, 15]), Some(280));
        assert_eq!(stat_ticks(stat, &[16, 17]), Some(16));
        assert_eq!(stat_ticks("garbage", &[13]), None);
    }

    #[test]
    fn reads_memory_from_status() {
        let status = "Name:\tx\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\nRssAnon:\t 8000 kB\nRssFile:\t 2240 kB\n";
        assert_eq!(
            parse_status(status),
            ProcStats {
                cpu_seconds: None,
                vmhwm_kib: Some(20480),
                vmrss_kib: Some(10240),
                rssanon_kib: Some(8000),
                rssfile_kib: Some(2240),
            }
        );
    }

    #[test]
    fn this_process_has_stats() {
        let me = proc_stats(std::process::id());
        assert!(me.cpu_seconds.is_some() && me.vmhwm_kib.is_some());
        assert_eq!(proc_stats(u32::MAX), ProcStats::default());
        assert_eq!(loadavg().len(), 3);
    }
}
