//! The order in which SCC admission tries SCCs, as openshift/apiserver-library-go
//! computes it (`pkg/securitycontextconstraints/util/sort/bypriority.go` and
//! `byrestrictions.go`): higher `priority` first (unset counts as 0), then the
//! lower restriction score first, then the name.
//!
//! The score is a sum of bands whose ranges never overlap, so a higher band
//! (privileged, host ports, ...) always outweighs everything below it.

use std::cmp::Ordering;
use std::fmt;

use buildpolicy_api::SecurityContextConstraints;

pub const PRIVILEGED_POINTS: u32 = 1_600_000;
pub const HOST_PORTS_POINTS: u32 = 800_000;
pub const HOST_NETWORK_POINTS: u32 = 400_000;
/// `hostPath` or `*` in `volumes`.
pub const HOST_VOLUME_POINTS: u32 = 200_000;
/// Any volume type other than the trivial ones ([`TRIVIAL_VOLUMES`]).
pub const NON_TRIVIAL_VOLUME_POINTS: u32 = 100_000;
/// Strategy points, counted once for `seLinuxContext.type` and once for
/// `runAsUser.type` (the Go code looks both up in one table).
pub const RUN_AS_ANY_POINTS: u32 = 40_000;
pub const MUST_RUN_AS_NON_ROOT_POINTS: u32 = 30_000;
pub const MUST_RUN_AS_RANGE_POINTS: u32 = 20_000;
pub const MUST_RUN_AS_POINTS: u32 = 10_000;
pub const CAP_BASE_POINTS: i64 = 5_000;
pub const CAP_DEFAULT_ADD_POINTS: i64 = 300;
pub const CAP_ALLOW_ALL_POINTS: i64 = 4_000;
pub const CAP_ALLOW_ONE_POINTS: i64 = 10;
pub const CAP_DROP_ALL_POINTS: i64 = -3_000;
pub const CAP_DROP_ONE_POINTS: i64 = -50;
pub const CAP_MAX_POINTS: i64 = 9_999;

/// Volume types that add no points.
pub const TRIVIAL_VOLUMES: &[&str] = &[
    "secret",
    "configMap",
    "emptyDir",
    "downwardAPI",
    "projected",
    "none",
];

/// How restrictive an SCC is: lower is more restrictive and is tried first
/// among SCCs of equal priority.
///
/// `allowHostPID`, `allowHostIPC` and `allowHostDirVolumePlugin` add nothing
/// (only the `volumes` list counts), and an empty or unknown strategy type
/// adds nothing either: this is what OpenShift does, not what one would guess.
pub fn restriction_score(scc: &SecurityContextConstraints) -> u32 {
    let mut points = 0;
    if scc.allow_privileged_container {
        points += PRIVILEGED_POINTS;
    }
    points += volume_points(scc);
    if scc.allow_host_network {
        points += HOST_NETWORK_POINTS;
    }
    if scc.allow_host_ports {
        points += HOST_PORTS_POINTS;
    }
    points += capability_points(scc);
    points += strategy_points(
        scc.se_linux_context
            .as_ref()
            .and_then(|s| s.type_.as_deref()),
    );
    points += strategy_points(scc.run_as_user.as_ref().and_then(|s| s.type_.as_deref()));
    points
}

fn volume_points(scc: &SecurityContextConstraints) -> u32 {
    let volumes = scc.volumes.as_deref().unwrap_or_default();
    if volumes.iter().any(|v| v == "hostPath" || v == "*") {
        HOST_VOLUME_POINTS
    } else if volumes
        .iter()
        .any(|v| !TRIVIAL_VOLUMES.contains(&v.as_str()))
    {
        NON_TRIVIAL_VOLUME_POINTS
    } else {
        0
    }
}

/// The capability band, clamped to 0..=9,999 so it never reaches the
/// strategy band above it.
fn capability_points(scc: &SecurityContextConstraints) -> u32 {
    let count = |caps: &Option<Vec<String>>| caps.as_ref().map_or(0, Vec::len) as i64;
    // The Go code upper-cases the SCC's entries before comparing.
    let has = |caps: &Option<Vec<String>>, wanted: &str| {
        caps.iter().flatten().any(|c| c.to_uppercase() == wanted)
    };
    let mut points = CAP_BASE_POINTS;
    points += CAP_DEFAULT_ADD_POINTS * count(&scc.default_add_capabilities);
    if has(&scc.allowed_capabilities, "*") || has(&scc.allowed_capabilities, "ALL") {
        points += CAP_ALLOW_ALL_POINTS;
    } else {
        points += CAP_ALLOW_ONE_POINTS * count(&scc.allowed_capabilities);
    }
    if has(&scc.required_drop_capabilities, "ALL") {
        points += CAP_DROP_ALL_POINTS;
    } else {
        points += CAP_DROP_ONE_POINTS * count(&scc.required_drop_capabilities);
    }
    points.clamp(0, CAP_MAX_POINTS) as u32
}

fn strategy_points(strategy: Option<&str>) -> u32 {
    match strategy {
        Some("RunAsAny") => RUN_AS_ANY_POINTS,
        Some("MustRunAsNonRoot") => MUST_RUN_AS_NON_ROOT_POINTS,
        Some("MustRunAsRange") => MUST_RUN_AS_RANGE_POINTS,
        Some("MustRunAs") => MUST_RUN_AS_POINTS,
        _ => 0,
    }
}

/// An SCC's priority as admission reads it: unset is 0.
pub fn priority(scc: &SecurityContextConstraints) -> i32 {
    scc.priority.unwrap_or(0)
}

/// Admission's order of two SCCs: `Less` means `a` is tried before `b`.
pub fn compare(a: &SecurityContextConstraints, b: &SecurityContextConstraints) -> Ordering {
    priority(b)
        .cmp(&priority(a))
        .then_with(|| restriction_score(a).cmp(&restriction_score(b)))
        .then_with(|| a.name().cmp(b.name()))
}

/// Sorts SCCs into the order admission tries them. Admission sorts stored
/// SCCs: pass an SCC that is only rendered through [`super::as_stored`] first.
pub fn sort_sccs(sccs: &mut [&SecurityContextConstraints]) {
    sccs.sort_by(|a, b| compare(a, b));
}

/// Why one SCC is tried before another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrderReason {
    /// The first has the higher priority.
    Priority { first: i32, second: i32 },
    /// Equal priority; the first has the lower restriction score.
    Score {
        first: u32,
        second: u32,
        /// The highest band in which the first SCC gives less, in the words
        /// admission uses in its `reason` audit annotation.
        because: &'static str,
    },
    /// Equal priority and score; the first name sorts first.
    Name,
}

impl OrderReason {
    /// Why `first` is tried before `second`; `None` if it is not.
    pub fn of(
        first: &SecurityContextConstraints,
        second: &SecurityContextConstraints,
    ) -> Option<Self> {
        if compare(first, second) != Ordering::Less {
            return None;
        }
        let (p, q) = (priority(first), priority(second));
        if p != q {
            return Some(Self::Priority {
                first: p,
                second: q,
            });
        }
        let (p, q) = (restriction_score(first), restriction_score(second));
        if p != q {
            return Some(Self::Score {
                first: p,
                second: q,
                because: more_restrictive_because(p, q),
            });
        }
        Some(Self::Name)
    }
}

/// The highest band in which score `p` gives less than score `q` (`p < q`).
fn more_restrictive_because(mut p: u32, mut q: u32) -> &'static str {
    let bands = [
        (PRIVILEGED_POINTS, "forbids privileged"),
        (HOST_PORTS_POINTS, "forbids host ports"),
        (HOST_NETWORK_POINTS, "forbids host networking"),
        (HOST_VOLUME_POINTS, "forbids host volume mounts"),
        (
            NON_TRIVIAL_VOLUME_POINTS,
            "forbids non-trivial volume mounts",
        ),
    ];
    for (band, what) in bands {
        match (p >= band, q >= band) {
            (true, true) => {
                p -= band;
                q -= band;
            }
            (false, true) => return what,
            _ => {}
        }
    }
    if p / 10_000 < q / 10_000 {
        "permits less runAs strategies"
    } else {
        "permits less capabilities"
    }
}

impl fmt::Display for OrderReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Priority { first, second } => write!(f, "priority {first} > {second}"),
            Self::Score {
                first,
                second,
                because,
            } => write!(
                f,
                "equal priority, restriction score {} < {}: it {because}",
                thousands(*first),
                thousands(*second)
            ),
            Self::Name => f.write_str("equal priority and restriction score, name sorts first"),
        }
    }
}

/// `132010` as `132,010`, as the scores are written in OpenShift's source.
pub(crate) fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use buildpolicy_api::scc::{RunAsUserStrategyOptions, SELinuxContextStrategyOptions};

    use super::*;
    use crate::admission::test_sccs::default_scc;

    fn strategies(se_linux: &str, run_as_user: &str) -> SecurityContextConstraints {
        SecurityContextConstraints {
            se_linux_context: Some(SELinuxContextStrategyOptions {
                type_: Some(se_linux.into()),
                se_linux_options: None,
            }),
            run_as_user: Some(RunAsUserStrategyOptions {
                type_: Some(run_as_user.into()),
                ..RunAsUserStrategyOptions::default()
            }),
            ..SecurityContextConstraints::named("t")
        }
    }

    /// An SCC that scores nothing but the capability base, so each case adds
    /// exactly one setting's points.
    fn bare() -> SecurityContextConstraints {
        SecurityContextConstraints::named("bare")
    }

    /// An SCC string list, as the YAML writes it.
    type List = Option<Vec<String>>;

    fn caps(list: &[&str]) -> List {
        Some(list.iter().map(|c| c.to_string()).collect())
    }

    #[test]
    fn each_setting_adds_its_points() {
        let cases: Vec<(&str, SecurityContextConstraints, u32)> = vec![
            ("nothing but the capability base", bare(), 5_000),
            (
                "privileged",
                SecurityContextConstraints {
                    allow_privileged_container: true,
                    ..bare()
                },
                1_605_000,
            ),
            (
                "host ports",
                SecurityContextConstraints {
                    allow_host_ports: true,
                    ..bare()
                },
                805_000,
            ),
            (
                "host network",
                SecurityContextConstraints {
                    allow_host_network: true,
                    ..bare()
                },
                405_000,
            ),
            (
                "hostPath volumes",
                SecurityContextConstraints {
                    volumes: caps(&["hostPath"]),
                    ..bare()
                },
                205_000,
            ),
            (
                "all volumes",
                SecurityContextConstraints {
                    volumes: caps(&["*"]),
                    ..bare()
                },
                205_000,
            ),
            (
                "hostPath outranks a non-trivial volume",
                SecurityContextConstraints {
                    volumes: caps(&["nfs", "hostPath", "secret"]),
                    ..bare()
                },
                205_000,
            ),
            (
                "persistentVolumeClaim is non-trivial",
                SecurityContextConstraints {
                    volumes: caps(&["secret", "persistentVolumeClaim"]),
                    ..bare()
                },
                105_000,
            ),
            (
                "the trivial volume types add nothing",
                SecurityContextConstraints {
                    volumes: caps(TRIVIAL_VOLUMES),
                    ..bare()
                },
                5_000,
            ),
            (
                "host PID adds nothing",
                SecurityContextConstraints {
                    allow_host_pid: true,
                    ..bare()
                },
                5_000,
            ),
            (
                "host IPC adds nothing",
                SecurityContextConstraints {
                    allow_host_ipc: true,
                    ..bare()
                },
                5_000,
            ),
            (
                "the host dir volume plugin flag adds nothing by itself",
                SecurityContextConstraints {
                    allow_host_dir_volume_plugin: true,
                    ..bare()
                },
                5_000,
            ),
        ];
        for (case, scc, want) in cases {
            assert_eq!(restriction_score(&scc), want, "{case}");
        }
    }

    #[test]
    fn strategies_score_from_run_as_any_down_to_must_run_as() {
        let cases = [
            ("RunAsAny", "RunAsAny", 80_000),
            ("MustRunAs", "RunAsAny", 50_000),
            ("MustRunAs", "MustRunAsNonRoot", 40_000),
            ("MustRunAs", "MustRunAsRange", 30_000),
            ("MustRunAs", "MustRunAs", 20_000),
            ("RunAsAny", "MustRunAsRange", 60_000),
            // One table serves both fields, so a range type on SELinux counts.
            ("MustRunAsRange", "MustRunAs", 30_000),
            // Unknown or empty types count nothing (OpenShift logs a warning).
            ("", "RunAsAny", 40_000),
            ("MustRunAs", "runasany", 10_000),
        ];
        for (se_linux, user, want) in cases {
            assert_eq!(
                restriction_score(&strategies(se_linux, user)) - 5_000,
                want,
                "seLinux {se_linux:?}, runAsUser {user:?}"
            );
        }
        assert_eq!(
            restriction_score(&bare()),
            5_000,
            "no strategies count nothing"
        );
    }

    #[test]
    fn capabilities_score_and_clamp() {
        // (case, defaultAddCapabilities, allowedCapabilities,
        // requiredDropCapabilities, score)
        let cases: Vec<(&str, List, List, List, u32)> = vec![
            ("none", None, None, None, 5_000),
            ("one default add", caps(&["CHOWN"]), None, None, 5_300),
            (
                "allowed one each",
                None,
                caps(&["A", "B", "C"]),
                None,
                5_030,
            ),
            ("allowed star", None, caps(&["*"]), None, 9_000),
            ("allowed ALL", None, caps(&["ALL"]), None, 9_000),
            (
                "allowed all in lower case",
                None,
                caps(&["all"]),
                None,
                9_000,
            ),
            (
                "allowed star with others counts once",
                None,
                caps(&["*", "A", "B"]),
                None,
                9_000,
            ),
            ("drop one each", None, None, caps(&["KILL", "MKNOD"]), 4_900),
            ("drop ALL", None, None, caps(&["ALL"]), 2_000),
            (
                "drop ALL with others counts once",
                None,
                None,
                caps(&["ALL", "KILL"]),
                2_000,
            ),
            ("drop all in lower case", None, None, caps(&["all"]), 2_000),
            (
                "clamped at 9,999",
                caps(&["A", "B", "C", "D", "E", "F"]),
                caps(&["*"]),
                None,
                9_999,
            ),
            (
                "clamped at 0",
                None,
                None,
                caps(&(0..101).map(|_| "X").collect::<Vec<_>>()),
                0,
            ),
            (
                "sum just under the clamp",
                caps(&["A"]),
                caps(&["*"]),
                caps(&["K"]),
                9_250,
            ),
        ];
        for (case, default_add, allowed, drop, want) in cases {
            let scc = SecurityContextConstraints {
                default_add_capabilities: default_add,
                allowed_capabilities: allowed,
                required_drop_capabilities: drop,
                ..bare()
            };
            assert_eq!(restriction_score(&scc), want, "{case}");
        }
    }

    /// The scores of OpenShift 4.20's default SCCs, added up by hand from
    /// their YAML. All of them allow csi, ephemeral, image and
    /// persistentVolumeClaim volumes (non-trivial, 100,000).
    #[test]
    fn default_sccs_score_as_computed_by_hand() {
        let cases = [
            // volumes 100,000 + SELinux MustRunAs 10,000 + MustRunAsRange
            // 20,000 + caps 5,000 + 10 (NET_BIND_SERVICE) - 3,000 (drop ALL)
            (
                "restricted-v2",
                100_000 + 10_000 + 20_000 + 5_000 + 10 - 3_000,
            ),
            (
                "restricted-v3",
                100_000 + 10_000 + 20_000 + 5_000 + 10 - 3_000,
            ),
            // MustRunAsNonRoot instead of MustRunAsRange
            ("nonroot-v2", 100_000 + 10_000 + 30_000 + 5_000 + 10 - 3_000),
            // runAsUser RunAsAny, no allowed caps, drop MKNOD
            ("anyuid", 100_000 + 10_000 + 40_000 + 5_000 - 50),
            // host network + host ports on top of restricted-v2
            (
                "hostnetwork-v2",
                800_000 + 400_000 + 100_000 + 10_000 + 20_000 + 5_000 + 10 - 3_000,
            ),
            // privileged, host ports, host network, `*` volumes, RunAsAny
            // twice, allowed `*`
            (
                "privileged",
                1_600_000 + 800_000 + 400_000 + 200_000 + 40_000 + 40_000 + 5_000 + 4_000,
            ),
            // SETUID and SETGID allowed, nothing dropped
            ("nested-container", 100_000 + 10_000 + 20_000 + 5_000 + 20),
        ];
        for (name, want) in cases {
            assert_eq!(restriction_score(&default_scc(name)), want, "{name}");
        }
    }

    #[test]
    fn default_sccs_sort_as_openshift_lists_them() {
        let sccs = crate::admission::test_sccs::all_default_sccs();
        let mut order: Vec<&SecurityContextConstraints> = sccs.iter().collect();
        order.reverse();
        sort_sccs(&mut order);
        let names: Vec<&str> = order.iter().map(|s| s.name()).collect();
        assert_eq!(
            names,
            [
                // priority 10
                "anyuid",
                // priority 0, by score (written after each), then by name
                "restricted-v2",                   // 132,010
                "restricted-v3",                   // 132,010
                "restricted",                      // 134,800
                "nested-container",                // 135,020
                "nonroot-v2",                      // 142,010
                "nonroot",                         // 144,800
                "hostmount-anyuid",                // 254,950
                "hostmount-anyuid-v2",             // 284,950
                "machine-api-termination-handler", // 654,800
                "hostnetwork-v2",                  // 1,332,010
                "hostnetwork",                     // 1,334,800
                "hostaccess",                      // 1,434,800
                "insights-runtime-extractor-scc",  // 1,885,010
                "node-exporter",                   // 3,085,000
                "privileged",                      // 3,089,000
            ]
        );
    }

    #[test]
    fn priority_wins_over_score_and_unset_priority_is_zero() {
        let mut lax = default_scc("privileged");
        lax.priority = Some(1);
        let strict = default_scc("restricted-v2");
        assert_eq!(compare(&lax, &strict), Ordering::Less);
        lax.priority = Some(0);
        assert_eq!(compare(&lax, &strict), Ordering::Greater, "0 equals unset");
        lax.priority = Some(-1);
        let mut unset_strict = strict.clone();
        unset_strict.priority = None;
        assert_eq!(compare(&unset_strict, &lax), Ordering::Less);
    }

    #[test]
    fn equal_priority_and_score_order_by_name() {
        let a = SecurityContextConstraints::named("a");
        let b = SecurityContextConstraints::named("b");
        let mut sccs = vec![&b, &a];
        sort_sccs(&mut sccs);
        assert_eq!(sccs[0].name(), "a");
        assert_eq!(OrderReason::of(&a, &b), Some(OrderReason::Name));
        assert_eq!(OrderReason::of(&b, &a), None);
    }

    #[test]
    fn reasons_name_the_band_that_decides() {
        let restricted = default_scc("restricted-v2");
        let cases = [
            ("anyuid", "restricted-v2", "priority 10 > 0"),
            (
                "restricted-v2",
                "nonroot-v2",
                "equal priority, restriction score 132,010 < 142,010: it permits less runAs strategies",
            ),
            (
                "restricted-v2",
                "hostnetwork-v2",
                "equal priority, restriction score 132,010 < 1,332,010: it forbids host ports",
            ),
            (
                "restricted-v2",
                "privileged",
                "equal priority, restriction score 132,010 < 3,089,000: it forbids privileged",
            ),
            (
                "restricted-v2",
                "restricted-v3",
                "equal priority and restriction score, name sorts first",
            ),
        ];
        for (first, second, want) in cases {
            let reason = OrderReason::of(&default_scc(first), &default_scc(second))
                .unwrap_or_else(|| panic!("{first} should sort before {second}"));
            assert_eq!(reason.to_string(), want);
        }
        let fewer_caps = SecurityContextConstraints {
            allowed_capabilities: None,
            ..restricted.clone()
        };
        assert_eq!(
            OrderReason::of(&fewer_caps, &restricted)
                .unwrap()
                .to_string(),
            "equal priority, restriction score 132,000 < 132,010: it permits less capabilities"
        );
        let trivial_volumes = SecurityContextConstraints {
            volumes: caps(&["secret"]),
            ..restricted.clone()
        };
        assert!(
            OrderReason::of(&trivial_volumes, &restricted)
                .unwrap()
                .to_string()
                .ends_with("forbids non-trivial volume mounts")
        );
    }

    #[test]
    fn thousands_separates_groups_of_three() {
        for (n, want) in [
            (0, "0"),
            (999, "999"),
            (1_000, "1,000"),
            (3_189_999, "3,189,999"),
        ] {
            assert_eq!(thousands(n), want);
        }
    }
}
