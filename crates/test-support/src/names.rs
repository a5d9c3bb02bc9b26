//! Names that do not collide between tests, runs or parallel processes.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Characters of the random suffix: 36^6 ≈ 2·10^9 values, so a clash among
/// the objects of a few runs is negligible, and names stay short enough to
/// read in `kubectl get`.
const SUFFIX_LEN: usize = 6;

/// Number of distinct suffixes: 36^6 ≈ 2.2·10^9.
const SUFFIXES: u64 = 36u64.pow(SUFFIX_LEN as u32);

/// A step coprime to [`SUFFIXES`] (neither even nor a multiple of 3), so
/// `start + n * STEP (mod SUFFIXES)` visits every suffix once before it
/// repeats: the names one process makes never collide.
const STEP: u64 = 1_299_709;
const _: () = assert!(
    !STEP.is_multiple_of(2) && !STEP.is_multiple_of(3) && STEP < SUFFIXES && SUFFIXES < 1 << 32
);

/// `<prefix>-<6 lower-case letters and digits>`, a valid DNS label when
/// `prefix` is one of at most 56 characters.
///
/// Cluster-scoped objects (BuildPolicies, SCCs) outlive a test's namespace,
/// and a cluster may be reused across runs and shared by parallel test
/// processes, so their names must differ every time:
/// - within a process, names are distinct by construction (a counter walked
///   through every suffix by a step coprime to their number);
/// - between processes, each starts at its own random point (std's
///   per-process random hash keys, mixed with the pid and the clock), so two
///   processes that make a few dozen names each collide with a probability
///   of about 10^-6; no extra dependency needed.
///
/// # Panics
///
/// When the result would be longer than a DNS label (63 characters).
pub fn unique_name(prefix: &str) -> String {
    static START: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let start = *START.get_or_init(|| {
        let mut hasher = RandomState::new().build_hasher();
        std::process::id().hash(&mut hasher);
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            .hash(&mut hasher);
        hasher.finish() % SUFFIXES
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed) % SUFFIXES;
    // Both factors are below 2^32, so the product fits in a u64.
    let mut bits = (start + n * STEP % SUFFIXES) % SUFFIXES;

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
        // 100 000 random suffixes out of 2.2·10^9 would collide with a
        // probability of about 90%; the walk never does.
        let names: std::collections::HashSet<_> = (0..100_000).map(|_| unique_name("x")).collect();
        assert_eq!(names.len(), 100_000);
    }

    #[test]
    #[should_panic(expected = "longer than a DNS label")]
    fn too_long_prefixes_are_refused() {
        unique_name(&"a".repeat(60));
    }
}
