//! Sizes and times as people read them (`1.20 MiB`, `2026-12-05 09:41`). `--json`
//! output keeps the exact numbers; only text output goes through here.

/// Bytes in binary units: `512 B`, `1.20 MiB`.
pub fn size(bytes: u64) -> String {
    indicatif::HumanBytes(bytes).to_string()
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
pub fn utc_minutes(ms: u64) -> String {
    let mut s = utc_seconds(ms);
    s.truncate("YYYY-MM-DD HH:MM".len());
    s
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM:SS` (UTC).
pub fn utc_seconds(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// A duration in the unit that suits it: `850ms`, `12.3s`, `4m 05s`, `2h 10m`.
pub fn age(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m {:02}s", ms / 60_000, ms % 60_000 / 1000),
        _ => format!("{}h {:02}m", ms / 3_600_000, ms % 3_600_000 / 60_000),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_times() {
        assert_eq!(super::utc_seconds(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc_seconds(1_795_298_125_294), "2026-11-21 21:55:25");
        assert_eq!(super::utc_seconds(951_782_400_000), "2000-02-29 00:00:00");
        assert_eq!(super::utc_minutes(1_795_298_125_294), "2026-11-21 21:55");
    }

    #[test]
    fn formats_sizes_in_binary_units() {
        assert_eq!(super::size(0), "0 B");
        assert_eq!(super::size(512), "512 B");
        assert_eq!(super::size(1_258_291), "1.20 MiB");
        assert_eq!(super::size(5 * 1024 * 1024 * 1024), "5.00 GiB");
    }

    #[test]
    fn formats_ages() {
        assert_eq!(super::age(850), "850ms");
        assert_eq!(super::age(12_345), "12.3s");
        assert_eq!(super::age(245_000), "4m 05s");
        assert_eq!(super::age(7_800_000), "2h 10m");
    }
}
