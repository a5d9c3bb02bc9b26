//! Progress lines on stdout: `[bench 14:02:11] N=100: ...`.

use std::sync::OnceLock;

use jiff::Timestamp;
use jiff::tz::TimeZone;

/// `println!` with the benchmark's prefix and the local time.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::logging::line(&format!($($arg)*))
    };
}
pub(crate) use log;

pub fn line(message: &str) {
    let now = Timestamp::now().to_zoned(local_time_zone().clone());
    println!("[bench {}] {message}", now.strftime("%H:%M:%S"));
}

/// The UTC time now, as results.json names its start: `2026-11-23T18:21:27Z`.
pub fn utc_now() -> String {
    Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `/etc/localtime`, or UTC. (jiff finds the system's zone itself only
/// with a feature the workspace's build does not enable.)
fn local_time_zone() -> &'static TimeZone {
    static ZONE: OnceLock<TimeZone> = OnceLock::new();
    ZONE.get_or_init(|| {
        std::fs::read("/etc/localtime")
            .ok()
            .and_then(|data| TimeZone::tzif("localtime", &data).ok())
            .unwrap_or(TimeZone::UTC)
    })
}
