//! Text the contract carries: bounded, cleaned of control characters, errors on one line.

/// `text` cut to `max` characters (marked with `…`), control characters (newlines,
/// escapes, NULs) replaced by `?`: text that came from a registry, a trust server, a CRI
/// client or a signature, made fit for an answer, an event or a log line. A log line or
/// an NRI answer must not be forged or blown up by what an attacker wrote.
pub fn capped(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// An error with its causes, `outer: inner: innermost`, each said once (hyper's, tonic's
/// and std's errors often repeat their source's text in their own), for one-line
/// messages. Shared by the daemon, the verifier and the CLI.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod capped_tests {
    #[test]
    fn server_text_is_capped_and_cleaned() {
        assert_eq!(super::capped("ab\ncd\u{1b}[31m", 20), "ab?cd?[31m");
        assert_eq!(super::capped(&"é".repeat(20), 5), "ééééé…");
        assert_eq!(super::capped("short", 5), "short");
    }
}
