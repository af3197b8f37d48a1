//! A second look when the typed parse fails. serde stops at the first problem; an operator
//! fixing a policy by hand wants all of them, so each table is checked on its own: every
//! unknown key (with the nearest known one), every value of the wrong type and every
//! missing key, each at its own line.

use serde::de::DeserializeOwned;
use toml_edit::{ImDocument, Item, TableLike};

use super::parse::{RawDaemon, RawPolicy, RawServer};
use super::rule::RawRule;
use super::CosignIdentity;

/// `(byte offset, message)` for every problem found; empty when the text is not valid
/// TOML (serde's own error is then the only one worth reporting) or when nothing could
/// be pinned down (the caller keeps serde's error).
pub(crate) fn problems(text: &str) -> Vec<(usize, String)> {
    let (Ok(doc), Ok(values)) = (ImDocument::parse(text), toml::from_str::<toml::Table>(text))
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let top = Place {
        name: "the top level".to_owned(),
        offset: 0,
    };
    let root: &dyn TableLike = doc.as_table();
    // Tables of the right shape are judged key by key below; the top level judges only
    // the other keys (an unknown one, or `daemon = 1`).
    let mut walked = Vec::new();
    for (key, item) in root.iter() {
        let at = offset(root, key, top.offset);
        match (key, values.get(key), item.as_table_like()) {
            ("daemon", Some(toml::Value::Table(v)), Some(t)) => {
                check::<RawDaemon>(&mut out, &Place::new("[daemon]", item, at), t, v, false);
                walked.push("daemon");
            }
            ("defaults", Some(toml::Value::Table(v)), Some(t)) => {
                rule(&mut out, &Place::new("[defaults]", item, at), t, v);
                walked.push("defaults");
            }
            ("trust_server", Some(toml::Value::Table(v)), Some(servers)) => {
                for (name, server) in servers.iter() {
                    let at = offset(servers, name, at);
                    let place = Place::new(&format!("[trust_server.{name}]"), server, at);
                    match (server.as_table_like(), v.get(name)) {
                        (Some(t), Some(toml::Value::Table(sv))) => {
                            check::<RawServer>(&mut out, &place, t, sv, false);
                        }
                        _ => out.push((place.offset, format!("{} must be a table", place.name))),
                    }
                }
                walked.push("trust_server");
            }
            ("rule", Some(toml::Value::Array(v)), _) => {
                let entries = tables(item);
                if entries.len() == v.len() {
                    for (i, ((r, start), rv)) in entries.into_iter().zip(v).enumerate() {
                        let toml::Value::Table(rv) = rv else {
                            continue;
                        };
                        let place = Place {
                            name: format!("rule {}", i + 1),
                            offset: start.unwrap_or(at),
                        };
                        rule(&mut out, &place, r, rv);
                    }
                    walked.push("rule");
                }
            }
            _ => {}
        }
    }
    let inside = !out.is_empty();
    check_skipping::<RawPolicy>(&mut out, &top, root, &values, &walked, inside);
    out.sort();
    out.dedup();
    out
}

/// The tables of an array of tables, `[[x]]` or `x = [{…}, …]`, with where each starts.
fn tables(item: &Item) -> Vec<(&dyn TableLike, Option<usize>)> {
    match item {
        Item::ArrayOfTables(a) => a
            .iter()
            .map(|e| (e as &dyn TableLike, e.span().map(|s| s.start)))
            .collect(),
        Item::Value(toml_edit::Value::Array(a)) => a
            .iter()
            .map_while(|e| e.as_inline_table())
            .map(|e| (e as &dyn TableLike, e.span().map(|s| s.start)))
            .collect(),
        _ => Vec::new(),
    }
}

/// Where a table is, for messages and for problems that belong to the table as a whole.
struct Place {
    name: String,
    offset: usize,
}

impl Place {
    fn new(name: &str, item: &Item, fallback: usize) -> Place {
        Place {
            name: name.to_owned(),
            offset: item.span().map_or(fallback, |s| s.start),
        }
    }
}

/// A rule or `[defaults]`, and the identities inside it (an array of inline tables or of
/// `[[rule.cosign_identities]]`), whose unknown keys serde would name without a place.
fn rule(out: &mut Vec<(usize, String)>, place: &Place, t: &dyn TableLike, v: &toml::Table) {
    let mut unknown_inside = Vec::new();
    if let (Some(item), Some(toml::Value::Array(ids))) =
        (t.get("cosign_identities"), v.get("cosign_identities"))
    {
        let at = offset(t, "cosign_identities", place.offset);
        let entries = tables(item);
        for (i, ((e, start), ev)) in entries.into_iter().zip(ids).enumerate() {
            let toml::Value::Table(ev) = ev else {
                continue;
            };
            let before = out.len();
            let inner = Place {
                name: format!("{}, cosign_identities entry {}", place.name, i + 1),
                offset: start.unwrap_or(at),
            };
            check::<CosignIdentity>(out, &inner, e, ev, false);
            if out.len() > before {
                unknown_inside.push("cosign_identities");
            }
        }
    }
    let inside = !unknown_inside.is_empty();
    check_skipping::<RawRule>(out, place, t, v, &unknown_inside, inside);
}

/// Every key of one table against the struct `T` it must deserialize into.
/// `reported_inside`: a problem inside the table was already named (so serde's error
/// for the whole table adds nothing).
fn check<T: DeserializeOwned>(
    out: &mut Vec<(usize, String)>,
    place: &Place,
    t: &dyn TableLike,
    v: &toml::Table,
    reported_inside: bool,
) {
    check_skipping::<T>(out, place, t, v, &[], reported_inside);
}

/// [`check`], leaving the values of `skip` (judged on their own) alone.
fn check_skipping<T: DeserializeOwned>(
    out: &mut Vec<(usize, String)>,
    place: &Place,
    t: &dyn TableLike,
    v: &toml::Table,
    skip: &[&str],
    reported_inside: bool,
) {
    let whole = match judge::<T>(v.clone()) {
        Ok(()) => return,
        Err(e) => e,
    };
    let known = fields::<T>();
    let before = out.len();
    for (key, item) in t.iter() {
        let at = offset(t, key, place.offset);
        if !known.iter().any(|k| k == key) {
            out.push((at, unknown(key, &place.name, &known)));
            continue;
        }
        if skip.contains(&key) {
            continue;
        }
        let Some(value) = v.get(key) else {
            continue;
        };
        let one: toml::Table = std::iter::once((key.to_owned(), value.clone())).collect();
        if let Err(message) = judge::<T>(one) {
            // A lone key is "missing" the others; that is not this key's problem.
            if !message.starts_with("missing field") {
                // At the value, where the fix goes.
                let at = item.span().map_or(at, |s| s.start);
                out.push((at, format!("{}: {key}: {message}", place.name)));
            }
        }
    }
    // serde names an unknown key before a missing one: without the unknown keys, is one
    // missing too (`ur = …` for `url`)?
    let known_only: toml::Table = v
        .iter()
        .filter(|(k, _)| known.contains(k))
        .map(|(k, x)| (k.clone(), x.clone()))
        .collect();
    let whole = match judge::<T>(known_only) {
        Err(e) if e.starts_with("missing field") => e,
        _ => whole,
    };
    if !reported_inside && (whole.starts_with("missing field") || out.len() == before) {
        out.push((place.offset, format!("{}: {whole}", place.name)));
    }
}

/// Deserializes `t` as `T` through its text, as the policy itself is read (so `Spanned`
/// fields work); serde's message when it fails.
fn judge<T: DeserializeOwned>(t: toml::Table) -> Result<(), String> {
    let Ok(text) = toml::to_string(&t) else {
        return Ok(());
    };
    toml::from_str::<T>(&text)
        .map(drop)
        .map_err(|e| e.message().to_owned())
}

fn offset(t: &dyn TableLike, key: &str, fallback: usize) -> usize {
    t.get_key_value(key)
        .and_then(|(k, _)| k.span())
        .map_or(fallback, |s| s.start)
}

fn unknown(key: &str, place: &str, known: &[String]) -> String {
    let shown = if key.chars().count() > 64 {
        format!("{}…", key.chars().take(64).collect::<String>())
    } else {
        key.to_owned()
    };
    match nearest(key, known.iter().map(String::as_str)) {
        Some(near) => format!("unknown key {shown:?} in {place}; did you mean {near:?}?"),
        None => format!(
            "unknown key {shown:?} in {place}; the keys there are: {}",
            known.join(", ")
        ),
    }
}

/// The field names of `T`, from serde's own refusal of a key no struct has (so the list
/// cannot drift from the struct).
fn fields<T: DeserializeOwned>() -> Vec<String> {
    let one: toml::Table =
        std::iter::once(("zz_probe".to_owned(), toml::Value::Integer(0))).collect();
    let Err(message) = judge::<T>(one) else {
        return Vec::new();
    };
    let Some((_, list)) = message.split_once("expected ") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// The candidate closest to `s` when it is close enough to be a typo: at most a third of
/// its length (and at least 2) edits away. Bounded: long inputs get no suggestion.
pub fn nearest<'a>(s: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if s.len() > 128 {
        return None;
    }
    let limit = (s.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (edit_distance(s, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, one row at a time.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}
