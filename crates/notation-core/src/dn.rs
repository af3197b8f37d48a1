//! Distinguished names as Notation reads them (notation-go v1.3.2 `internal/pkix`): a
//! trusted identity `x509.subject: DN` is RFC 4514 text with escapes, one attribute per
//! RDN, each attribute once, `S` read as `ST`, and C, ST and O present; the leaf's
//! subject is read through Go's names (C, O, OU, CN, SERIALNUMBER, L, ST, STREET,
//! POSTALCODE) and must satisfy the same rules; an identity matches when each of its
//! attributes is in the subject with exactly its value.

use sigstore_core::certs::Cert;
use x509_cert::der::asn1::ObjectIdentifier;

/// An attribute: its type as written (`C`, `ST`, `CN`, …) and its value.
pub type Attribute = (String, String);

/// Attributes a subject has, as Go names them; any other makes Notation's parse fail.
const GO_NAMES: [(&str, &str); 9] = [
    ("2.5.4.6", "C"),
    ("2.5.4.10", "O"),
    ("2.5.4.11", "OU"),
    ("2.5.4.3", "CN"),
    ("2.5.4.5", "SERIALNUMBER"),
    ("2.5.4.7", "L"),
    ("2.5.4.8", "ST"),
    ("2.5.4.9", "STREET"),
    ("2.5.4.17", "POSTALCODE"),
];

const MANDATORY: [&str; 3] = ["C", "ST", "O"];

/// Parses an `x509.subject` identity's DN, refusing what Notation refuses.
pub fn parse_identity(dn: &str) -> Result<Vec<Attribute>, String> {
    if dn.contains("=#") {
        return Err(format!(
            "{dn:?}: values written as =#hex are not supported (Notation refuses them)"
        ));
    }
    let mut out: Vec<Attribute> = Vec::new();
    for rdn in split_unescaped(dn, &[',', ';'])? {
        let parts = split_unescaped(&rdn, &['+'])?;
        if parts.len() > 1 {
            return Err(format!(
                "{dn:?} has a multi-valued RDN ({rdn:?}); Notation does not support them"
            ));
        }
        let (k, v) = split_attribute(&rdn)
            .ok_or_else(|| format!("{dn:?}: {rdn:?} is not TYPE=VALUE (RFC 4514)"))?;
        let k = if k == "S" { "ST".to_owned() } else { k };
        if out.iter().any(|(seen, _)| *seen == k) {
            return Err(format!(
                "{dn:?} names {k} twice; each attribute may appear once"
            ));
        }
        out.push((k, unescape(&v).map_err(|e| format!("{dn:?}: {e}"))?));
    }
    mandatory(&out).map_err(|m| format!("{dn:?} {m}"))?;
    Ok(out)
}

fn mandatory(attrs: &[Attribute]) -> Result<(), String> {
    for m in MANDATORY {
        if !attrs.iter().any(|(k, v)| k == m && !v.is_empty()) {
            return Err(format!(
                "has no {m}; Notation requires C, ST (or S) and O in an x509.subject identity"
            ));
        }
    }
    Ok(())
}

/// Splits at unescaped separators (a `\` escapes the next character).
fn split_unescaped(s: &str, seps: &[char]) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                cur.push(chars.next().ok_or("a DN ends with a lone backslash")?);
            }
            '"' => return Err("quoted DN values are not supported".to_owned()),
            c if seps.contains(&c) => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    Ok(out)
}

/// `TYPE=VALUE` with spaces around both trimmed (spaces only, as go-ldap trims: a tab
/// stays, and then matches nothing); the value still escaped.
fn split_attribute(rdn: &str) -> Option<(String, String)> {
    let (k, v) = rdn.split_once('=')?;
    let k = k.trim_matches(' ');
    if k.is_empty()
        || !k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return None;
    }
    // Trailing spaces are part of the value only when escaped.
    let v = v.trim_start_matches(' ');
    let v = if v.ends_with("\\ ") {
        v
    } else {
        v.trim_end_matches(' ')
    };
    Some((k.to_owned(), v.to_owned()))
}

/// RFC 4514 escapes: `\` and a special character, or `\` and two hex digits (a byte of
/// the UTF-8 value); any other escape is refused, as go-ldap (Notation's DN reader)
/// refuses it.
fn unescape(v: &str) -> Result<String, String> {
    let mut bytes = Vec::with_capacity(v.len());
    let b = v.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'\\' {
            bytes.push(b[i]);
            i += 1;
            continue;
        }
        let hex = |x: u8| (x as char).to_digit(16);
        match (b.get(i + 1), b.get(i + 2)) {
            (Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                bytes.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (Some(&c), _) if b" \"#+,;<=>\\".contains(&c) => {
                bytes.push(c);
                i += 2;
            }
            (Some(_), _) => {
                return Err(
                    "an escape that is neither a special character nor two hex digits".to_owned(),
                )
            }
            (None, _) => return Err("a value ends with a lone backslash".to_owned()),
        }
    }
    String::from_utf8(bytes).map_err(|_| "an escaped value that is not UTF-8".to_owned())
}

/// The leaf's subject as Notation sees it, or why no identity can match it (an
/// attribute Go cannot name, an attribute twice, or C, ST or O missing: Notation's
/// parse of the subject fails). Stricter than Notation for a repeated CN or
/// SERIALNUMBER, where Go keeps the last.
pub fn subject(c: &Cert) -> Result<Vec<Attribute>, String> {
    use x509_cert::der::asn1::{Ia5StringRef, PrintableStringRef, Utf8StringRef};
    let mut out: Vec<Attribute> = Vec::new();
    for rdn in c.certificate().tbs_certificate.subject.0.iter() {
        for atv in rdn.0.iter() {
            let name = GO_NAMES
                .iter()
                .find(|(oid, _)| ObjectIdentifier::new(oid).is_ok_and(|o| o == atv.oid))
                .map(|(_, n)| *n)
                .ok_or_else(|| {
                    format!(
                        "the signer's subject has attribute {} which Notation cannot match",
                        atv.oid
                    )
                })?;
            let v = &atv.value;
            let value = v
                .decode_as::<Utf8StringRef<'_>>()
                .map(|s| s.to_string())
                .or_else(|_| {
                    v.decode_as::<PrintableStringRef<'_>>()
                        .map(|s| s.to_string())
                })
                .or_else(|_| v.decode_as::<Ia5StringRef<'_>>().map(|s| s.to_string()))
                .map_err(|_| format!("the signer's {name} is not a string Notation reads"))?;
            if out.iter().any(|(k, _)| k == name) {
                return Err(format!(
                    "the signer's subject has {name} twice, which Notation cannot match"
                ));
            }
            out.push((name.to_owned(), value));
        }
    }
    mandatory(&out).map_err(|m| format!("the signer's subject {m}"))?;
    Ok(out)
}

/// `C=US, ST=WA, …` for messages.
pub fn show(attrs: &[Attribute]) -> String {
    attrs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Does a trusted identity match the subject? `*` matches any; `x509.subject: DN`
/// matches when every attribute it names is in the subject with exactly its value
/// (types and values compared as written, as Notation does). An identity that does not
/// parse matches nothing.
pub fn identity_matches(identity: &str, subject: &[Attribute]) -> bool {
    let identity = identity.trim();
    if identity == "*" {
        return true;
    }
    let Some(dn) = identity.strip_prefix("x509.subject:") else {
        return false;
    };
    let Ok(wanted) = parse_identity(dn.trim()) else {
        return false;
    };
    wanted
        .iter()
        .all(|w| subject.iter().any(|s| s.0 == w.0 && s.1 == w.1))
}

/// Checks a rule's identities as Notation checks a trust policy statement's: each
/// parses, `*` stands alone, and no identity is a subset of another (Notation refuses
/// overlapping identities).
pub fn check_identities(identities: &[String]) -> Result<(), String> {
    let mut parsed = Vec::new();
    for i in identities {
        let i = i.trim();
        if i == "*" {
            continue;
        }
        let dn = i
            .strip_prefix("x509.subject:")
            .ok_or_else(|| format!("identity {i:?} is not \"*\" or \"x509.subject: DN\""))?;
        parsed.push((i, parse_identity(dn.trim())?));
    }
    for (n, (a, da)) in parsed.iter().enumerate() {
        for (b, db) in parsed.iter().skip(n + 1) {
            let subset = |x: &[Attribute], y: &[Attribute]| x.iter().all(|p| y.contains(p));
            if subset(da, db) || subset(db, da) {
                return Err(format!(
                    "identities {a:?} and {b:?} overlap (one's attributes are all in the other); Notation refuses overlapping identities"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<Attribute> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn identities_are_read_as_rfc_4514_with_notations_requirements() {
        // Every special character escaped, and spaces (only spaces) trimmed.
        assert_eq!(
            parse_identity("C=US, ST=WA, O=\\ a\\\"\\#\\+\\,\\;\\<\\=\\>\\\\b\\ ,CN=\tx").unwrap()
                [2..],
            attrs(&[("O", " a\"#+,;<=>\\b "), ("CN", "\tx")])[..]
        );
        assert_eq!(
            parse_identity("C=US, S=WA, O=A\\2C Inc.\\, Ltd, CN=s\\+t").unwrap(),
            attrs(&[
                ("C", "US"),
                ("ST", "WA"),
                ("O", "A, Inc., Ltd"),
                ("CN", "s+t")
            ])
        );
        for bad in [
            "C=US, ST=WA, O=Acme, CN=acme, CN=evil",
            "C=US, ST=WA, O=Acme+O=Evil",
            "C=US, ST=WA, CN=acme",
            "C=US, O=Acme",
            "C=US, ST=WA, O=#04024869",
            "C=US, ST=WA, O=\"Acme\"",
            "C=US, ST=WA, O=Acme, junk",
            // Escapes go-ldap refuses: not special, not two hex digits.
            "C=US, ST=WA, O=Ac\\me",
            "C=US, ST=WA, O=Acme\\4",
            "C=US, ST=WA, O=Acme\\é",
        ] {
            assert!(parse_identity(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn dn_with_two_values_an_identity_matches_by_the_subset_rule_only() {
        let subject = attrs(&[("C", "US"), ("ST", "WA"), ("O", "Acme"), ("CN", "acme")]);
        assert!(identity_matches(
            "x509.subject: C=US, ST=WA, O=Acme",
            &subject
        ));
        assert!(identity_matches(
            "x509.subject: CN=acme, O=Acme, ST=WA, C=US",
            &subject
        ));
        assert!(
            !identity_matches("x509.subject: C=US, ST=WA, O=acme", &subject),
            "case"
        );
        assert!(!identity_matches(
            "x509.subject: C=US, ST=WA, O=Acme, CN=evil",
            &subject
        ));
        // An identity that Notation would refuse to load matches nothing.
        assert!(!identity_matches("x509.subject: CN=acme", &subject));
        assert!(!identity_matches("CN=acme, C=US, ST=WA, O=Acme", &subject));
        assert!(identity_matches("*", &subject));
    }

    #[test]
    fn overlapping_identities_are_refused_as_notation_refuses_them() {
        let id = |s: &str| format!("x509.subject: {s}");
        assert!(check_identities(&[id("C=US, ST=WA, O=A"), id("C=US, ST=WA, O=A, CN=x")]).is_err());
        assert!(check_identities(&[id("C=US, ST=WA, O=A"), id("C=US, ST=WA, O=A")]).is_err());
        check_identities(&[id("C=US, ST=WA, O=A, CN=x"), id("C=US, ST=WA, O=A, CN=y")]).unwrap();
        assert!(check_identities(&[id("C=US, O=A")]).is_err());
    }
}
