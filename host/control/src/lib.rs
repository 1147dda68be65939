//! weft's control endpoint and its client.
//!
//! `weft control` stores pushed bundles (content-addressed, on local disk,
//! crash-safe), promotes a version to the proxies a label selector picks —
//! at once or staged (canaries first, the rest once they all ACK) — rolls
//! back to any earlier version, keeps an append-only audit history, and
//! tracks every proxy: labels, last seen, what it runs, ACK/NACK and why.
//! Proxies long-poll it for what to run ([`Client::desired`]) and report
//! back ([`Client::report`]); the CLI pushes and promotes through the same
//! [`Client`].

pub mod api;
mod client;
pub mod config;
mod http;
pub mod oci;
mod openapi;
mod server;
pub mod store;

use std::time::SystemTime;

pub use client::{Client, ClientError};
pub use server::{Control, StartError};

/// `2026-11-25T14:27:45.123Z`.
pub fn rfc3339(time: SystemTime) -> String {
    let since = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = since.as_secs();
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    #[test]
    fn dates() {
        let t = |secs: u64| super::rfc3339(SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
        assert_eq!(t(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(t(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(t(1_795_617_465), "2026-11-25T14:37:45.000Z");
    }
}
