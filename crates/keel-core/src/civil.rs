//! Calendar dates of Unix times, in UTC, without a date library: the log's
//! day partitions and the CLI's timestamps share this one conversion.

/// `(year, month, day)` of the UTC day holding Unix time `ms` (milliseconds;
/// negative times are before 1970).
pub fn utc_date(ms: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let days = ms.div_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = (if mp < 10 { mp + 3 } else { mp - 9 }) as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD HH:MM:SSZ` (UTC) for Unix time `ms`: how the CLI and the web UI write times.
pub fn utc_text(ms: i64) -> String {
    let (year, month, day) = utc_date(ms);
    let rest = ms.div_euclid(1000).rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc_date(0), (1970, 1, 1));
        assert_eq!(utc_date(86_399_999), (1970, 1, 1));
        assert_eq!(utc_date(86_400_000), (1970, 1, 2));
        assert_eq!(utc_date(-1), (1969, 12, 31));
        assert_eq!(utc_date(1_709_164_800_000), (2024, 2, 29));
        assert_eq!(utc_date(1_765_000_000_000), (2025, 12, 6));
    }

    #[test]
    fn utc_texts() {
        assert_eq!(utc_text(0), "1970-01-01 00:00:00Z");
        assert_eq!(utc_text(1_798_761_599_999), "2026-12-31 23:59:59Z");
        assert_eq!(utc_text(-1000), "1969-12-31 23:59:59Z");
    }
}
