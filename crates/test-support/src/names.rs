//! Names that do not collide between tests, runs or parallel processes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Characters of the random suffix: 36^6 ≈ 2·10^9 values, so a clash among
/// the objects of a few runs is negligible, and names stay short enough to
/// read in `kubectl get`.
const SUFFIX_LEN: usize = 6;

/// `<prefix>-<6 random lower-case letters and digits>`, a valid DNS label
/// when `prefix` is one of at most 56 characters.
///
/// Cluster-scoped objects (BuildPolicies, SCCs) outlive a test's namespace,
/// and a cluster may be reused across runs, so their names must differ every
/// time. The randomness comes from std's per-process random hash keys, mixed
/// with the pid, the clock and a counter; no extra dependency needed.
///
/// # Panics
///
/// When the result would be longer than a DNS label (63 characters).
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    std::process::id().hash(&mut hasher);
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
        .hash(&mut hasher);
    COUNTER.fetch_add(1, Ordering::Relaxed).hash(&mut hasher);
    let mut bits = hasher.finish();

    let mut name = String::with_capacity(prefix.len() + 1 + SUFFIX_LEN);
    name.push_str(prefix);
    name.push('-');
    for _ in 0..SUFFIX_LEN {
        let digit = u32::try_from(bits % 36).expect("a remainder of 36 fits in u32");
        name.push(char::from_digit(digit, 36).expect("below 36 is a base-36 digit"));
        bits /= 36;
    }
    assert!(
        name.len() <= 63,
        "unique_name({prefix:?}) gives {name:?}, longer than a DNS label (63): use a shorter prefix"
    );
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels_with_the_prefix() {
        let name = unique_name("bp-test");
        assert!(name.starts_with("bp-test-"), "{name}");
        assert_eq!(name.len(), "bp-test-".len() + SUFFIX_LEN, "{name}");
        assert!(
            name.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
            "{name}"
        );
    }

    #[test]
    fn names_do_not_repeat() {
        let names: std::collections::HashSet<_> = (0..10_000).map(|_| unique_name("x")).collect();
        assert_eq!(names.len(), 10_000);
    }

    #[test]
    #[should_panic(expected = "longer than a DNS label")]
    fn too_long_prefixes_are_refused() {
        unique_name(&"a".repeat(60));
    }
}
