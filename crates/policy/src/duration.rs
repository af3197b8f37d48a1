//! Durations as operators write them: `90s`, `30m`, `12h`, `14d`, `2w`, `1h30m`.

use time::Duration;

/// Longest duration accepted: beyond it a setting is a mistake, and times computed from
/// it (now minus a maximum age) would leave the representable range.
const MAX_SECONDS: i64 = 100 * 366 * 86_400;

/// Parses a duration; the message says what is wrong.
pub fn parse(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; write e.g. 90s, 30m, 12h, 14d or 1h30m");
    let too_long = || format!("{s:?} is longer than 100 years");
    let mut total: i64 = 0;
    let mut digits = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        let unit: i64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        // Checked: a fuzzer found that huge values overflowed here (a panic on reload).
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .filter(|t| *t <= MAX_SECONDS)
            .ok_or_else(too_long)?;
        any = true;
    }
    if !digits.is_empty() || !any {
        return Err(bad());
    }
    Ok(Duration::seconds(total))
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

    /// fuzz/policy_toml found `timeout = "000…0m000…5000…0h…2s"` panicking.
    #[test]
    fn fuzz_policy_huge_durations_are_errors_not_panics() {
        for s in [
            "99999999999999999m",
            "9223372036854775807w",
            "5000000000000000000h",
            "101y",
            "36700d",
        ] {
            assert!(parse(s).is_err(), "{s}");
        }
        assert_eq!(parse("36500d"), Ok(Duration::days(36500)));
        let text = "[trust_server.x]\nurl = \"https://n.example.com\"\ntimeout = \"0000000000000000000000000m000000000000000000000000005000000000000000000000h2s\"\n";
        let e = crate::Policy::parse(std::path::Path::new("p.toml"), text).unwrap_err();
        assert!(e.to_string().contains("3:"), "{e}");
    }

    #[test]
    fn rejects_what_it_cannot_read() {
        for s in ["", "10", "h", "1x", "1.5h", "-1h"] {
            assert!(parse(s).is_err(), "{s}");
        }
    }
}
