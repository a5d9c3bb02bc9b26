//! Will a Buildah build run in a step's container? SCC admission admitting
//! the pod is not the end: Buildah hands each `RUN` process its own default
//! capability list and fails when the container's bounding set lacks one,
//! and it needs `SYS_ADMIN` and `SYS_CHROOT` for any build. What follows is
//! what `docs/capabilities.md` measured on a real node (kubelet, CRI-O,
//! Debian's Buildah), as a rule over the container's capabilities and the
//! Buildah command's `--cap-drop` flags.

use std::collections::BTreeSet;

/// The capabilities every container starts with under CRI-O as OpenShift
/// configures it (`default_capabilities`), before the pod's `add` and
/// `drop`.
pub const RUNTIME_DEFAULT_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "KILL",
];

/// What Buildah gives a `RUN` process by default (containers.conf
/// `default_capabilities`, the same list in Debian's Buildah 1.28 and
/// upstream's images).
pub const BUILDAH_RUN_CAPABILITIES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// The kinds of Containerfile the advice speaks of (the rows of
/// `docs/capabilities.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Build {
    /// `FROM` + `COPY`.
    Copy,
    /// `FROM` + `COPY` + `RUN`.
    Run,
    /// `FROM` a base image carrying a file capability (UBI images do).
    FileCapabilityBase,
    /// `USER` (not root) and `RUN` as that user: it needs SETUID and SETGID
    /// to switch, but not Buildah's capability list.
    RunAsUser,
}

impl Build {
    pub const ALL: [Build; 4] = [
        Build::Copy,
        Build::Run,
        Build::FileCapabilityBase,
        Build::RunAsUser,
    ];
}

/// A container's capabilities: the runtime's defaults, plus `add`, minus
/// `drop` (and the SCC's required drops, which admission adds to `drop`).
pub fn bounding_set(add: &[String], drop: &[String]) -> BTreeSet<String> {
    let dropped: BTreeSet<String> = drop.iter().map(|c| normalise(c)).collect();
    if dropped.contains("ALL") {
        return add.iter().map(|c| normalise(c)).collect();
    }
    RUNTIME_DEFAULT_CAPABILITIES
        .iter()
        .map(|c| (*c).to_owned())
        .chain(add.iter().map(|c| normalise(c)))
        .filter(|c| !dropped.contains(c))
        .collect()
}

fn normalise(capability: &str) -> String {
    let upper = capability.trim().to_ascii_uppercase();
    upper.strip_prefix("CAP_").unwrap_or(&upper).to_owned()
}

/// The capabilities a `buildah bud` / `buildah build` command line drops
/// with `--cap-drop` (`--cap-drop=A,B`, `--cap-drop A`); `None` when the
/// text runs no Buildah build.
pub fn buildah_cap_drops(command: &str) -> Option<BTreeSet<String>> {
    let mut found = false;
    let mut drops = BTreeSet::new();
    for line in command.lines() {
        let words: Vec<&str> = line
            .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .filter(|w| !w.is_empty())
            .collect();
        let Some(at) = words.iter().position(|w| w.ends_with("buildah")) else {
            continue;
        };
        // The subcommand follows Buildah's global options.
        let mut next = at + 1;
        while let Some(word) = words.get(next).filter(|w| w.starts_with('-')) {
            let takes_value = word.starts_with("--") && !word.contains('=');
            next += 1;
            if takes_value
                && words
                    .get(next)
                    .is_some_and(|w| *w != "bud" && *w != "build")
            {
                next += 1;
            }
        }
        if !words
            .get(next)
            .is_some_and(|w| *w == "bud" || *w == "build")
        {
            continue;
        }
        let rest = &words[next + 1..];
        found = true;
        let mut i = 0;
        while i < rest.len() {
            let values = if let Some(v) = rest[i].strip_prefix("--cap-drop=") {
                Some(v)
            } else if rest[i] == "--cap-drop" {
                i += 1;
                rest.get(i).copied()
            } else {
                None
            };
            drops.extend(values.into_iter().flat_map(|v| v.split(',')).map(normalise));
            i += 1;
        }
    }
    found.then_some(drops)
}

/// Why a build fails, and what makes it run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub problem: String,
    pub fix: String,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.problem, self.fix)
    }
}

fn failure(problem: impl Into<String>, fix: impl Into<String>) -> Option<Failure> {
    Some(Failure {
        problem: problem.into(),
        fix: fix.into(),
    })
}

/// Why a build of kind `build` fails in a container with `bounding`
/// capabilities, Buildah dropping `dropped` for `RUN` and the pod in the
/// host's user namespace (`host_users`) or its own; and the fix. `None`:
/// it runs.
pub fn fails(
    build: Build,
    bounding: &BTreeSet<String>,
    dropped: &BTreeSet<String>,
    host_users: bool,
) -> Option<Failure> {
    let lacks = |c: &str| !bounding.contains(c);
    for needed in ["SYS_ADMIN", "SYS_CHROOT"] {
        if lacks(needed) {
            return failure(
                format!(
                    "cannot build at all without {needed} (Buildah's user namespace and chroot isolation need it)"
                ),
                format!(
                    "add {needed} to the policy's capabilities and the step's capabilities.add"
                ),
            );
        }
    }
    let runs = matches!(build, Build::Run | Build::RunAsUser);
    if runs && lacks("SETGID") {
        return failure(
            "fails a RUN instruction (`error setting supplemental groups list`): Buildah sets the RUN process's groups, which needs SETGID even when --cap-drop drops it",
            "add SETGID",
        );
    }
    if build == Build::RunAsUser && lacks("SETUID") {
        return failure(
            "fails a RUN instruction after USER (`error setting UID`): switching to a user needs SETUID",
            "add SETUID",
        );
    }
    // A RUN as root gets Buildah's whole list; one as another user gets
    // none in effect, so only root's RUN trips over a missing one.
    if build == Build::Run {
        let all_dropped = dropped.iter().any(|d| d == "ALL");
        let missing: Vec<&str> = BUILDAH_RUN_CAPABILITIES
            .iter()
            .copied()
            .filter(|c| lacks(c) && !dropped.contains(*c) && !all_dropped)
            .collect();
        if !missing.is_empty() {
            let flags: Vec<String> = missing.iter().map(|c| format!("--cap-drop={c}")).collect();
            return failure(
                format!(
                    "fails a RUN instruction (`error setting capabilities for process`): Buildah hands RUN processes {}, which the container lacks",
                    missing.join(", ")
                ),
                format!(
                    "add {} to the buildah command, or add {} to the policy",
                    flags.join(" "),
                    missing.join(", ")
                ),
            );
        }
    }
    if build == Build::FileCapabilityBase && host_users && lacks("SETFCAP") {
        return failure(
            "fails to unpack a base image whose files carry capabilities, as UBI images do (`lsetxattr ... operation not permitted`): as root in the host's user namespace, writing a security.capability attribute needs SETFCAP",
            "add SETFCAP",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(caps: &[&str]) -> Vec<String> {
        caps.iter().map(|c| (*c).to_owned()).collect()
    }

    const POLICY: &[&str] = &["SETUID", "SETGID", "SYS_ADMIN", "SYS_CHROOT"];
    const SCC_DROPS: &[&str] = &["KILL", "MKNOD"];

    fn bounding(extra: &[&str], without: &[&str]) -> BTreeSet<String> {
        let add: Vec<String> = POLICY
            .iter()
            .chain(extra)
            .filter(|c| !without.contains(c))
            .map(|c| (*c).to_owned())
            .collect();
        let mut drop = set(SCC_DROPS);
        // OpenShift's SCC admission drops SETUID/SETGID unless asked for.
        drop.extend(without.iter().map(|c| (*c).to_owned()));
        bounding_set(&add, &drop)
    }

    #[test]
    fn the_bounding_set_is_the_runtime_defaults_plus_add_minus_drop() {
        let b = bounding(&[], &[]);
        assert!(b.contains("SYS_ADMIN") && b.contains("CHOWN"));
        assert!(!b.contains("KILL") && !b.contains("SETFCAP"));
        assert_eq!(
            bounding_set(&set(&["cap_sys_admin"]), &set(&["all"])),
            BTreeSet::from(["SYS_ADMIN".to_owned()])
        );
    }

    #[test]
    fn cap_drop_flags_are_read_from_the_buildah_command_only() {
        let script = "set -e\nbuildah bud --storage-driver=vfs --cap-drop=KILL --cap-drop setfcap,CAP_MKNOD -f Containerfile .\nbuildah push x";
        assert_eq!(
            buildah_cap_drops(script),
            Some(BTreeSet::from([
                "KILL".to_owned(),
                "MKNOD".to_owned(),
                "SETFCAP".to_owned()
            ]))
        );
        assert_eq!(buildah_cap_drops("buildah push x oci:/out"), None);
        assert_eq!(buildah_cap_drops("echo buildah push is not a build"), None);
        assert_eq!(
            buildah_cap_drops("buildah --storage-driver vfs bud --cap-drop=KILL ."),
            Some(BTreeSet::from(["KILL".to_owned()]))
        );
        assert_eq!(
            buildah_cap_drops("/usr/bin/buildah --storage-driver=vfs build ."),
            Some(BTreeSet::new())
        );
    }

    // The rows of docs/capabilities.md, host user namespace, plain Buildah.
    #[test]
    fn the_policy_set_fails_run_and_a_file_capability_base_as_the_node_showed() {
        let none = BTreeSet::new();
        let b = bounding(&[], &[]);
        assert_eq!(fails(Build::Copy, &b, &none, true), None);
        let run = fails(Build::Run, &b, &none, true).unwrap().to_string();
        assert!(run.contains("KILL, SETFCAP"), "{run}");
        assert!(run.contains("--cap-drop=KILL --cap-drop=SETFCAP"), "{run}");
        assert!(
            fails(Build::FileCapabilityBase, &b, &none, true)
                .unwrap()
                .fix
                .contains("SETFCAP")
        );
        // In the pod's own user namespace the file capability base unpacks.
        assert_eq!(fails(Build::FileCapabilityBase, &b, &none, false), None);
    }

    #[test]
    fn setfcap_and_cap_drop_kill_pass_every_build_in_both_modes() {
        let b = bounding(&["SETFCAP"], &[]);
        let drops = BTreeSet::from(["KILL".to_owned()]);
        for build in Build::ALL {
            for host_users in [true, false] {
                assert_eq!(fails(build, &b, &drops, host_users), None, "{build:?}");
            }
        }
        // Without --cap-drop=KILL, RUN still fails.
        assert!(fails(Build::Run, &b, &BTreeSet::new(), true).is_some());
    }

    #[test]
    fn a_missing_setgid_fails_run_even_with_cap_drop_and_sys_admin_fails_everything() {
        let drops = BTreeSet::from(["KILL".to_owned(), "SETFCAP".to_owned(), "SETGID".to_owned()]);
        let b = bounding(&[], &["SETGID"]);
        assert!(
            fails(Build::Run, &b, &drops, false)
                .unwrap()
                .fix
                .contains("SETGID")
        );
        assert_eq!(fails(Build::Copy, &b, &drops, false), None);
        let b = bounding(&[], &["SYS_ADMIN"]);
        assert!(
            fails(Build::Copy, &b, &drops, true)
                .unwrap()
                .fix
                .contains("SYS_ADMIN")
        );
        let b = bounding(&[], &["SETUID"]);
        let drops = BTreeSet::from(["KILL".to_owned(), "SETFCAP".to_owned(), "SETUID".to_owned()]);
        assert_eq!(fails(Build::Run, &b, &drops, false), None);
        assert!(
            fails(Build::RunAsUser, &b, &drops, false)
                .unwrap()
                .fix
                .contains("SETUID")
        );
    }
}
