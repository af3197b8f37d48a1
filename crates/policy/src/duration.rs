//! Durations as operators write them: `90s`, `30m`, `12h`, `14d`, `2w`, `1h30m`.

use time::Duration;

/// Parses a duration; the message says what is wrong.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; write e.g. 90s, 30m, 12h, 14d or 1h30m");
    let mut total = Duration::ZERO;
    let mut digits = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit = match c {
            's' => Duration::seconds(n),
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            'w' => Duration::weeks(n),
            _ => return Err(bad()),
        };
        total = total.checked_add(unit).ok_or_else(bad)?;
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(bad());
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse("90s"), Ok(Duration::seconds(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::minutes(90)));
        assert_eq!(parse("14d"), Ok(Duration::days(14)));
        assert_eq!(parse("2w"), Ok(Duration::days(14)));
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for s in ["", "10", "h", "1x", "1.5h", "-1h"] {
            assert!(parse(s).is_err(), "{s}");
        }
    }
}
