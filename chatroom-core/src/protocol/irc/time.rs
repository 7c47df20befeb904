//! The IRCv3 `server-time` tag's value: an ISO 8601 UTC timestamp with
//! milliseconds, from the Unix milliseconds every message carries.

/// `2026-12-04T10:50:00.123Z` for `ms` milliseconds after the Unix epoch.
pub(crate) fn server_time(ms: u64) -> String {
    let secs = ms / 1000;
    let days = secs / 86_400;
    let of_day = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        ms % 1000
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (the days-to-civil
/// conversion over 400-year eras; no dependency for one date format).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(server_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(server_time(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(server_time(1_796_381_400_123), "2026-12-04T10:50:00.123Z");
    }
}
