//! Dates for people and for `<input type="date">`: Unix seconds to `YYYY-MM-DD` (UTC) and back,
//! with no calendar crate for three small functions (Howard Hinnant's civil-date algorithms).

/// A date and time in UTC, for people: `2026-11-25 16:07 UTC`.
pub fn when(t: u64) -> String {
    let (y, m, d) = civil(t / 86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        t % 86_400 / 3600,
        t % 3600 / 60
    )
}

/// The date (`YYYY-MM-DD`) of Unix second `t`, as `<input type=date>` wants it.
pub fn date(t: u64) -> String {
    let (y, m, d) = civil(t / 86_400);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses `YYYY-MM-DD` into the Unix second at the end of that day (the next midnight UTC).
pub fn parse_date(text: &str) -> Option<u64> {
    let mut parts = text.trim().splitn(3, '-');
    let y: i64 = parts.next()?.parse().ok()?;
    let m: u32 = parts.next()?.parse().ok()?;
    let d: u32 = parts.next()?.parse().ok()?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if civil(days) != (y, m, d) {
        return None; // 31 February and the like
    }
    Some((days + 1) * 86_400)
}

/// Days since 1970-01-01 → (year, month, day); Howard Hinnant's civil-from-days.
fn civil(days: u64) -> (i64, u32, u32) {
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn days_from_civil(y: i64, m: u32, d: u32) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe - 719_468) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(when(1_795_000_000), "2026-11-18 11:06 UTC");
        assert_eq!(
            parse_date("2026-11-25"),
            Some(days_from_civil(2026, 11, 26) * 86_400)
        );
        assert_eq!(date(parse_date("2024-02-29").unwrap() - 1), "2024-02-29");
        assert_eq!(parse_date("2023-02-29"), None);
        assert_eq!(parse_date("2026-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
        for t in [0u64, 951_782_400, 1_700_000_000, 4_102_444_800] {
            assert_eq!(parse_date(&date(t)).unwrap() - 86_400, t - t % 86_400);
        }
    }
}
