//! Which signed target a tag or digest resolves to, under a choice of rules.

use crate::error::Error;
use crate::metadata::FileMeta;
use crate::verify::{SkipReason, VerifiedRepo};

/// The delegation Docker content trust signs releases into.
pub const RELEASES: &str = "targets/releases";

/// Which roles may vouch for a tag.
#[derive(Debug, Clone, Copy)]
pub enum TagPolicy<'a> {
    /// `docker pull` with content trust: `targets/releases`, then `targets`; a tag that
    /// only another delegation signs is not trusted.
    Docker,
    /// Any verified role, walked as `notary lookup` walks them.
    AnyRole,
    /// Every one of these roles must sign the tag, with the same digest.
    RequireRoles(&'a [String]),
}

/// A signed target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetMatch {
    /// Target (tag) name.
    pub name: String,
    /// The role that vouched; with `RequireRoles`, all of them joined by `+`.
    pub role: String,
    /// SHA-256 of the manifest or index, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub length: u64,
    /// Key IDs that signed the vouching role(s).
    pub signers: Vec<String>,
}

impl VerifiedRepo {
    fn entry(&self, role: &str, name: &str) -> Option<&FileMeta> {
        self.targets.get(role)?.get(name)
    }

    fn to_match(&self, role: &str, name: &str, meta: &FileMeta) -> Result<TargetMatch, Error> {
        let sha = meta
            .hashes
            .get("sha256")
            .ok_or_else(|| Error::malformed(role, format!("target {name:?} has no sha256 hash")))?;
        Ok(TargetMatch {
            name: name.to_owned(),
            role: role.to_owned(),
            sha256: hex::encode(sha),
            length: meta.length,
            signers: self
                .roles
                .get(role)
                .map(|r| r.signers.clone())
                .unwrap_or_default(),
        })
    }

    fn candidate_roles(&self, policy: TagPolicy<'_>) -> Vec<String> {
        match policy {
            TagPolicy::Docker => vec![RELEASES.to_owned(), "targets".to_owned()],
            TagPolicy::AnyRole => self.walk_order.clone(),
            TagPolicy::RequireRoles(roles) => roles.to_vec(),
        }
    }

    fn skip_note(&self, role: &str) -> Option<String> {
        self.skipped
            .iter()
            .find(|s| s.role == role)
            .map(|s| format!("{role} was not used: {}", s.error))
    }

    /// Every verified (role, target name, metadata), roles in Notary's walk order.
    pub fn signed_targets(&self) -> impl Iterator<Item = (&str, &str, &FileMeta)> {
        self.walk_order.iter().flat_map(move |role| {
            self.targets.get(role).into_iter().flat_map(move |t| {
                t.iter()
                    .map(move |(name, meta)| (role.as_str(), name.as_str(), meta))
            })
        })
    }

    /// Resolves `tag` to the target that `policy` accepts.
    pub fn resolve_tag(&self, tag: &str, policy: TagPolicy<'_>) -> Result<TargetMatch, Error> {
        let roles = self.candidate_roles(policy);
        if let TagPolicy::RequireRoles(required) = policy {
            return self.resolve_required(tag, required);
        }
        for role in &roles {
            if let Some(meta) = self.entry(role, tag) {
                return self.to_match(role, tag, meta);
            }
        }
        let elsewhere: Vec<&str> = self
            .walk_order
            .iter()
            .filter(|r| !roles.contains(r) && self.entry(r, tag).is_some())
            .map(String::as_str)
            .collect();
        let mut notes: Vec<String> = roles.iter().filter_map(|r| self.skip_note(r)).collect();
        if !elsewhere.is_empty() {
            notes.push(format!(
                "only {} signs it, which Docker content trust does not accept",
                elsewhere.join(", ")
            ));
        }
        Err(Error::UnknownTag {
            tag: tag.to_owned(),
            looked_in: looked_in(&roles),
            note: (!notes.is_empty()).then(|| notes.join("; ")),
        })
    }

    fn resolve_required(&self, tag: &str, required: &[String]) -> Result<TargetMatch, Error> {
        let mut found: Option<TargetMatch> = None;
        for role in required {
            let meta = self.entry(role, tag).ok_or_else(|| Error::UnknownTag {
                tag: tag.to_owned(),
                looked_in: role.clone(),
                note: Some(
                    self.skip_note(role)
                        .unwrap_or_else(|| format!("the policy requires {role} to sign it")),
                ),
            })?;
            let m = self.to_match(role, tag, meta)?;
            found = Some(match found {
                None => m,
                Some(prev) if prev.sha256 == m.sha256 && prev.length == m.length => {
                    let mut signers = prev.signers;
                    signers.extend(m.signers);
                    TargetMatch {
                        role: format!("{}+{}", prev.role, m.role),
                        signers,
                        ..prev
                    }
                }
                Some(prev) => {
                    return Err(Error::DigestMismatch {
                        detail: format!(
                            "tag {tag:?}: {} signs sha256:{} but {role} signs sha256:{}",
                            prev.role, prev.sha256, m.sha256
                        ),
                    })
                }
            });
        }
        found.ok_or_else(|| Error::UnknownTag {
            tag: tag.to_owned(),
            looked_in: "no roles".to_owned(),
            note: Some("the policy names no required roles".to_owned()),
        })
    }

    /// Finds a tag that resolves to `sha256_hex` under `policy`: the digest of a pull by
    /// digest must be what some tag means now, with the same role order as a pull by
    /// tag. A digest that only a lower-priority role still lists, for a tag a
    /// higher-priority role has re-signed, is superseded and refused.
    pub fn find_digest(
        &self,
        sha256_hex: &str,
        policy: TagPolicy<'_>,
    ) -> Result<TargetMatch, Error> {
        let want = sha256_hex.to_ascii_lowercase();
        let roles = self.candidate_roles(policy);
        let mut superseded = Vec::new();
        let mut tried = std::collections::BTreeSet::new();
        for role in &roles {
            let Some(targets) = self.targets.get(role) else {
                continue;
            };
            for (name, meta) in targets {
                let listed = meta.hashes.get("sha256").map(hex::encode);
                if listed.as_deref() != Some(want.as_str()) || !tried.insert(name.as_str()) {
                    continue;
                }
                match self.resolve_tag(name, policy) {
                    Ok(m) if m.sha256 == want => return Ok(m),
                    Ok(m) => superseded.push(format!(
                        "{role} lists it for tag {name:?}, which now resolves to sha256:{} in {}",
                        m.sha256, m.role
                    )),
                    Err(e) => superseded.push(format!("{role} lists it for tag {name:?}: {e}")),
                }
            }
        }
        let note = if superseded.is_empty() {
            String::new()
        } else {
            format!(" (superseded: {})", superseded.join("; "))
        };
        Err(Error::DigestMismatch {
            detail: format!(
                "no tag signed in {} resolves to sha256:{want}{note}",
                looked_in(&roles)
            ),
        })
    }

    /// Resolves `tag` and checks that it is signed as `sha256_hex`.
    pub fn verify_tag_digest(
        &self,
        tag: &str,
        sha256_hex: &str,
        policy: TagPolicy<'_>,
    ) -> Result<TargetMatch, Error> {
        let m = self.resolve_tag(tag, policy)?;
        if !m.sha256.eq_ignore_ascii_case(sha256_hex) {
            return Err(Error::DigestMismatch {
                detail: format!(
                    "tag {tag:?} is signed as sha256:{} in {}, not sha256:{}",
                    m.sha256,
                    m.role,
                    sha256_hex.to_ascii_lowercase()
                ),
            });
        }
        Ok(m)
    }

    /// What a pull of `tag` and/or `digest` may take: under `policy` when `roles` is
    /// empty, else when at least `required` of `roles` each sign the same digest (each
    /// role judged on its own statement, as [`TagPolicy::RequireRoles`] with one role).
    /// A tag with a digest must resolve to that digest; a digest alone must be what some
    /// tag resolves to ([`VerifiedRepo::find_digest`]).
    pub fn resolve_pull(
        &self,
        tag: Option<&str>,
        sha256_hex: Option<&str>,
        roles: &[String],
        required: usize,
    ) -> Result<TargetMatch, Error> {
        let one = |policy: TagPolicy<'_>| match (tag, sha256_hex) {
            (Some(t), Some(d)) => self.verify_tag_digest(t, d, policy),
            (Some(t), None) => self.resolve_tag(t, policy),
            (None, Some(d)) => self.find_digest(d, policy),
            (None, None) => Err(Error::UnknownTag {
                tag: String::new(),
                looked_in: "no role".to_owned(),
                note: Some("neither a tag nor a digest to check".to_owned()),
            }),
        };
        if roles.is_empty() {
            return one(TagPolicy::Docker);
        }
        let mut matches: Vec<TargetMatch> = Vec::new();
        let mut misses = Vec::new();
        for role in roles {
            match one(TagPolicy::RequireRoles(std::slice::from_ref(role))) {
                Ok(m) if matches.first().is_none_or(|f| f.sha256 == m.sha256) => matches.push(m),
                Ok(m) => misses.push(format!(
                    "{role} signs a different digest (sha256:{})",
                    m.sha256
                )),
                Err(e) => misses.push(e.to_string()),
            }
        }
        if matches.len() >= required && !matches.is_empty() {
            let mut m = matches.remove(0);
            for other in matches {
                m.role = format!("{}+{}", m.role, other.role);
                m.signers.extend(other.signers);
            }
            return Ok(m);
        }
        Err(Error::UnknownTag {
            tag: tag.unwrap_or_default().to_owned(),
            looked_in: looked_in(roles),
            note: Some(format!(
                "{required} of them must sign it, {} did: {}",
                matches.len(),
                misses.join("; ")
            )),
        })
    }

    /// Delegations that vouch for nothing, with the reason, for reports.
    pub fn skipped_roles(&self) -> impl Iterator<Item = (&str, &SkipReason)> {
        self.skipped.iter().map(|s| (s.role.as_str(), &s.error))
    }
}

fn looked_in(roles: &[String]) -> String {
    match roles {
        [] => "no role".to_owned(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}
