//! What a namespace gives the SCCs that leave values to it.
//!
//! OpenShift allocates each namespace a block of uids, a block of groups and
//! an MCS level, and records them as annotations
//! (`openshift.io/sa.scc.uid-range`, `openshift.io/sa.scc.supplemental-groups`,
//! `openshift.io/sa.scc.mcs`). An SCC whose `MustRunAsRange` user strategy has
//! no bounds, whose SELinux `MustRunAs` has no level, or whose group
//! strategies are `MustRunAs` without ranges takes them from the pod's
//! namespace (`CreateProviderFromConstraint` in openshift/apiserver-library-go
//! `pkg/securitycontextconstraints/sccmatching/matcher.go`): the uid block is
//! the range, the MCS level the level, the group blocks the supplemental
//! groups' ranges, and the first group alone the fsGroup range.

use std::collections::BTreeMap;

use buildpolicy_api::scc::IdRange;

/// `openshift.io/sa.scc.uid-range`: `<start>/<size>` or `<start>-<end>`.
pub const UID_RANGE_ANNOTATION: &str = "openshift.io/sa.scc.uid-range";
/// `openshift.io/sa.scc.supplemental-groups`: blocks as above, comma-separated.
pub const SUPPLEMENTAL_GROUPS_ANNOTATION: &str = "openshift.io/sa.scc.supplemental-groups";
/// `openshift.io/sa.scc.mcs`: the SELinux level, e.g. `s0:c26,c5`.
pub const MCS_ANNOTATION: &str = "openshift.io/sa.scc.mcs";

/// The annotations [`NamespaceAllocation::from_annotations`] reads.
pub const ALLOCATION_ANNOTATIONS: [&str; 3] = [
    UID_RANGE_ANNOTATION,
    SUPPLEMENTAL_GROUPS_ANNOTATION,
    MCS_ANNOTATION,
];

/// A namespace's allocation, as its annotations record it.
#[derive(Clone, Debug, PartialEq)]
pub struct NamespaceAllocation {
    /// The uid block: the range of `MustRunAsRange` without bounds.
    pub uids: IdRange,
    /// The group blocks: the ranges of `MustRunAs` supplemental groups
    /// without ranges; the first block's first group is the only fsGroup
    /// `MustRunAs` without ranges allows.
    pub groups: Vec<IdRange>,
    /// The MCS level of SELinux `MustRunAs` without a level.
    pub mcs_level: String,
}

impl NamespaceAllocation {
    /// The allocation recorded in a namespace's annotations. Supplemental
    /// groups fall back to the uid range when their annotation is missing,
    /// as OpenShift's does.
    ///
    /// # Errors
    ///
    /// When the uid range or the MCS level is missing or empty, or a block
    /// does not parse: OpenShift then refuses the namespace's pods under
    /// every SCC that needs the value.
    pub fn from_annotations(annotations: &BTreeMap<String, String>) -> Result<Self, String> {
        let get = |key: &str| {
            annotations
                .get(key)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("the namespace has no {key} annotation"))
        };
        let uids = parse_block(get(UID_RANGE_ANNOTATION)?)?;
        let groups = annotations
            .get(SUPPLEMENTAL_GROUPS_ANNOTATION)
            .filter(|v| !v.is_empty())
            .map_or_else(
                || Ok(vec![uids.clone()]),
                |v| v.split(',').map(parse_block).collect::<Result<_, _>>(),
            )?;
        Ok(Self {
            uids,
            groups,
            mcs_level: get(MCS_ANNOTATION)?.clone(),
        })
    }

    /// The only fsGroup `MustRunAs` without ranges allows: the first group.
    pub fn fs_group(&self) -> IdRange {
        let first = self.groups.first().map_or(self.uids.min, |g| g.min);
        IdRange {
            min: first,
            max: first,
        }
    }
}

/// A block as `uid.ParseBlock` reads it: `<start>/<size>` or `<start>-<end>`.
fn parse_block(text: &str) -> Result<IdRange, String> {
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map(i64::from)
            .map_err(|e| format!("{text:?} is not a uid block: {e}"))
    };
    if let Some((start, size)) = text.split_once('/') {
        let (start, size) = (number(start)?, number(size)?);
        if size == 0 {
            return Err(format!("{text:?} is an empty uid block"));
        }
        return Ok(IdRange {
            min: start,
            max: start + size - 1,
        });
    }
    let (start, end) = text
        .split_once('-')
        .ok_or_else(|| format!("{text:?} is not a uid block (<start>/<size> or <start>-<end>)"))?;
    Ok(IdRange {
        min: number(start)?,
        max: number(end)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn blocks_parse_in_both_forms_and_groups_fall_back_to_the_uid_range() {
        let got = NamespaceAllocation::from_annotations(&annotations(&[
            (UID_RANGE_ANNOTATION, "1000070000/10000"),
            (MCS_ANNOTATION, "s0:c4,c1"),
        ]))
        .unwrap();
        assert_eq!(
            got,
            NamespaceAllocation {
                uids: IdRange {
                    min: 1_000_070_000,
                    max: 1_000_079_999
                },
                groups: vec![IdRange {
                    min: 1_000_070_000,
                    max: 1_000_079_999
                }],
                mcs_level: "s0:c4,c1".into(),
            }
        );
        assert_eq!(
            got.fs_group(),
            IdRange {
                min: 1_000_070_000,
                max: 1_000_070_000
            }
        );

        let got = NamespaceAllocation::from_annotations(&annotations(&[
            (UID_RANGE_ANNOTATION, "1000-1999"),
            (SUPPLEMENTAL_GROUPS_ANNOTATION, "5000/10,7000-7004"),
            (MCS_ANNOTATION, "s0:c1,c2"),
        ]))
        .unwrap();
        assert_eq!(
            got.uids,
            IdRange {
                min: 1000,
                max: 1999
            }
        );
        assert_eq!(
            got.groups,
            [
                IdRange {
                    min: 5000,
                    max: 5009
                },
                IdRange {
                    min: 7000,
                    max: 7004
                }
            ]
        );
        assert_eq!(
            got.fs_group(),
            IdRange {
                min: 5000,
                max: 5000
            }
        );
    }

    #[test]
    fn missing_or_malformed_annotations_are_errors() {
        for pairs in [
            vec![(MCS_ANNOTATION, "s0:c1,c2")],
            vec![(UID_RANGE_ANNOTATION, "1000/10")],
            vec![(UID_RANGE_ANNOTATION, ""), (MCS_ANNOTATION, "s0:c1,c2")],
            vec![(UID_RANGE_ANNOTATION, "1000"), (MCS_ANNOTATION, "s0:c1,c2")],
            vec![
                (UID_RANGE_ANNOTATION, "1000/0"),
                (MCS_ANNOTATION, "s0:c1,c2"),
            ],
            vec![
                (UID_RANGE_ANNOTATION, "-5/10"),
                (MCS_ANNOTATION, "s0:c1,c2"),
            ],
        ] {
            assert!(
                NamespaceAllocation::from_annotations(&annotations(&pairs)).is_err(),
                "{pairs:?}"
            );
        }
    }
}
