//! TUF 5.3: which root to trust, from the anchor through every rotation.

use super::*;

/// How far in the future a root or CA certificate's notBefore may be, as Notary allows
/// (`tuf/utils/x509.go`: `now.AddDate(0, 0, 1)`).
pub(super) const CERT_NOT_BEFORE_LEEWAY: Duration = Duration::DAY;

/// TUF 5.3 (update the root role), as Notary does it: the root served must be signed by
/// its own root keys; when a trusted root is known, every version after it must be
/// present as `N.root.json` and signed by the threshold of both the previous root and
/// itself. The final root's certificates must be valid now and name the repository, and
/// pins, if any, must cover the threshold.
pub(super) struct EstablishedRoot<'f> {
    pub(super) root: Signed<Root>,
    pub(super) bytes: &'f [u8],
    pub(super) trust: RootTrust,
    pub(super) signers: Vec<String>,
}

pub(super) fn establish_root<'f>(
    files: &'f RepoFiles,
    opts: &VerifyOptions<'_>,
) -> Result<EstablishedRoot<'f>, Error> {
    let latest_bytes = files.get("root").ok_or_else(|| Error::NoTrustData {
        gun: opts.gun.to_owned(),
        what: "no root.json".to_owned(),
    })?;
    cap("root", latest_bytes, opts.limits.root)?;
    let latest = parse_root("root", latest_bytes)?;

    let from_state = opts.state.map(|s| (s.root.as_bytes(), RootTrust::State));
    let from_anchor = match opts.anchor {
        RootAnchor::TrustedRoot(bytes) => Some((bytes, RootTrust::TrustedRoot)),
        _ => None,
    };
    let mut start = None;
    for (bytes, how) in from_state.into_iter().chain(from_anchor) {
        cap("trusted root", bytes, opts.limits.root)?;
        let parsed = parse_root("trusted root", bytes)?;
        // Of a stored state and a given root, start from the newer.
        if start
            .as_ref()
            .is_none_or(|(s, _): &(Signed<Root>, RootTrust)| {
                parsed.body.common.version > s.body.common.version
            })
        {
            start = Some((parsed, how));
        }
    }
    let trust = match (&start, opts.anchor) {
        (Some((_, how)), _) => *how,
        (None, RootAnchor::Pinned(_)) => RootTrust::Pinned,
        (None, _) => RootTrust::FirstUse,
    };
    if let Some((trusted, _)) = start {
        walk_roots(files, trusted, &latest, opts)?;
    }
    let signers = check_final_root(&latest, opts)?;
    not_expired("root", latest.body.common.expires, opts.now)?;
    Ok(EstablishedRoot {
        root: latest,
        bytes: latest_bytes,
        trust,
        signers,
    })
}

pub(super) fn walk_roots(
    files: &RepoFiles,
    trusted: Signed<Root>,
    latest: &Signed<Root>,
    opts: &VerifyOptions<'_>,
) -> Result<(), Error> {
    let from = trusted.body.common.version;
    let to = latest.body.common.version;
    if to < from {
        return Err(Error::Rollback {
            role: "root".to_owned(),
            offered: to,
            trusted: from,
        });
    }
    if to == from {
        if latest.canonical != trusted.canonical {
            return Err(Error::RootRotationBroken {
                detail: format!(
                    "root.json version {to} differs from the trusted root of the same version"
                ),
            });
        }
        return Ok(());
    }
    if to - from > opts.limits.root_rotations {
        return Err(Error::RootRotationBroken {
            detail: format!(
                "root.json says it is version {to}, {} versions after the trusted version {from}: more than the {} rotations a client walks",
                to - from,
                opts.limits.root_rotations
            ),
        });
    }
    let mut current = trusted;
    for v in from + 1..=to {
        let next = if v == to {
            latest.clone()
        } else {
            let name = format!("{v}.root");
            let bytes = files.get(&name).ok_or_else(|| Error::RootRotationBroken {
                detail: format!(
                    "{v}.root.json is missing: cannot walk from trusted version {from} to {to}"
                ),
            })?;
            cap(&name, bytes, opts.limits.root)?;
            parse_root(&name, bytes)?
        };
        if next.body.common.version != v {
            return Err(Error::RootRotationBroken {
                detail: format!(
                    "{v}.root.json says it is version {}",
                    next.body.common.version
                ),
            });
        }
        let prev_keys = root_role(&current.body, "root")?;
        signed_by("root", &next, &current.body.keys, &prev_keys).map_err(|e| {
            Error::RootRotationBroken {
                detail: format!(
                    "version {v} is not signed by the root keys of version {}: {e}",
                    v - 1
                ),
            }
        })?;
        let own_keys = root_role(&next.body, "root")?;
        signed_by("root", &next, &next.body.keys, &own_keys).map_err(|e| {
            Error::RootRotationBroken {
                detail: format!("version {v} is not signed by its own root keys: {e}"),
            }
        })?;
        current = next;
    }
    Ok(())
}

pub(super) fn check_final_root(
    root: &Signed<Root>,
    opts: &VerifyOptions<'_>,
) -> Result<Vec<String>, Error> {
    let role = root_role(&root.body, "root")?;
    let t = tally(&root.canonical, &root.signatures, &root.body.keys, &role);
    threshold_met("root", &t, role.threshold, |_| true)?;

    // Notary checks root certificates apart from the TUF expiry: a key whose certificate
    // is out of its validity period or names another repository does not count.
    let now = opts.now;
    let cert_problem = |id: &str| -> Option<Error> {
        let cert = root.body.keys.get(id)?.cert()?;
        if cert.common_name.as_deref() != Some(opts.gun) {
            return Some(Error::RootNotPinned {
                detail: format!(
                    "certificate for key {} is issued to {:?}, not to this repository {:?}",
                    short_id(id),
                    cert.common_name.as_deref().unwrap_or(""),
                    opts.gun
                ),
            });
        }
        // Notary gives a certificate's start one day of leeway (clock skew between the
        // signer's machine and the node) and none to its end.
        if now + CERT_NOT_BEFORE_LEEWAY < cert.not_before || now > cert.not_after {
            return Some(Error::CertificateExpired {
                key_id: id.to_owned(),
                not_before: cert.not_before,
                not_after: cert.not_after,
                now,
            });
        }
        None
    };
    let signers = match threshold_met("root", &t, role.threshold, |id| cert_problem(id).is_none()) {
        Ok(s) => s,
        Err(e) => return Err(t.valid.iter().find_map(|id| cert_problem(id)).unwrap_or(e)),
    };

    if let RootAnchor::Pinned(pins) = opts.anchor {
        // Notary's trust_pinning order: pinned certificates (or key IDs) of a
        // repository decide alone; CAs count only where nothing more specific is pinned.
        // Added up, a CA pinned for a whole registry let in roots a repository's own
        // certificate pin was meant to exclude.
        let by_ca = pins.certs.is_empty() && pins.key_ids.is_empty();
        let pinned = |id: &str| {
            let cert = root.body.keys.get(id).and_then(PublicKey::cert);
            pins.key_ids.iter().any(|p| p == id)
                || cert.is_some_and(|c| pins.certs.contains(&c.der))
                || cert.filter(|_| by_ca).is_some_and(|c| {
                    pins.cas.iter().any(|ca| {
                        ca.not_before <= now + CERT_NOT_BEFORE_LEEWAY
                            && now <= ca.not_after
                            && c.issued_by(ca)
                    })
                })
        };
        return threshold_met("root", &t, role.threshold, |id| {
            pinned(id) && cert_problem(id).is_none()
        })
        .map_err(|_| Error::RootNotPinned {
            detail: format!(
                "signed by key {}, but {} of them must be pinned and none of the signers is",
                signers
                    .iter()
                    .map(|s| short_id(s))
                    .collect::<Vec<_>>()
                    .join(", "),
                role.threshold
            ),
        });
    }
    Ok(signers)
}
