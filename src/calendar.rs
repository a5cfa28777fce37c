//! The UTC calendar, without a time-zone database: the dates that reports, run directories
//! and cached autotune choices carry.

/// Now, UTC: (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ`).
pub fn utc_now() -> (String, String) {
    let secs = web_time::SystemTime::now()
        .duration_since(web_time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    utc_stamp(secs)
}

/// Seconds since 1970-01-01 UTC → (`YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SSZ`).
pub fn utc_stamp(secs: u64) -> (String, String) {
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let time = format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    );
    (date, time)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_stamps() {
        assert_eq!(
            utc_stamp(0),
            ("1970-01-01".into(), "1970-01-01T00:00:00Z".into())
        );
        // 2000-02-29 12:34:56 UTC (a leap day).
        assert_eq!(utc_stamp(951_827_696).1, "2000-02-29T12:34:56Z");
        assert_eq!(utc_stamp(1_796_083_200).0, "2026-12-01");
    }
}
