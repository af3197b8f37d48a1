//! TUF 5.6.7: the delegations under `targets`.

use super::*;

/// TUF 5.6.7 (preorder depth-first search of delegations). Every delegation the
/// snapshot lists must be served, verify and be unexpired, or the whole repository
/// fails (Notary would skip it); one the parent names but the snapshot never listed is
/// skipped and reported, unless this node trusted it before (a rollback).
pub(super) struct Walk<'w, 'o> {
    pub(super) files: &'w RepoFiles,
    pub(super) snapshot: &'w MetaRole,
    pub(super) opts: &'w VerifyOptions<'o>,
    pub(super) roles: &'w mut BTreeMap<String, RoleInfo>,
    pub(super) skipped: Vec<SkippedRole>,
    pub(super) targets: BTreeMap<String, BTreeMap<String, FileMeta>>,
    pub(super) order: Vec<String>,
    pub(super) count: usize,
}

impl Walk<'_, '_> {
    fn skip(&mut self, role: &str, error: SkipReason) {
        self.skipped.push(SkippedRole {
            role: role.to_owned(),
            error,
        });
    }

    pub(super) fn visit(
        &mut self,
        name: &str,
        role: TargetsRole,
        paths: &[String],
        depth: usize,
    ) -> Result<(), Error> {
        let TargetsRole {
            targets: mut allowed,
            delegation_keys,
            delegations,
            ..
        } = role;
        // The role's own targets, kept in place (a copy of a 10,000-target map and the
        // drop of the original were a fifth of a large repository's verification); a
        // role allowed every path (`targets` itself) keeps them all without a look.
        if !paths.iter().any(String::is_empty) {
            allowed.retain(|target, _| paths.iter().any(|p| target.starts_with(p.as_str())));
        }
        self.targets.insert(name.to_owned(), allowed);
        self.order.push(name.to_owned());

        let mut read_ahead = self.read_ahead(name, &delegation_keys, &delegations, depth);
        for (i, d) in delegations.iter().enumerate() {
            self.count += 1;
            if self.count > self.opts.limits.delegations {
                return Err(Error::Oversized {
                    role: "delegations".to_owned(),
                    size: self.count as u64,
                    limit: self.opts.limits.delegations as u64,
                });
            }
            if !valid_child_name(name, &d.name) {
                self.skip(&d.name, SkipReason::BadName);
                continue;
            }
            if depth + 1 > self.opts.limits.delegation_depth {
                self.skip(&d.name, SkipReason::TooDeep);
                continue;
            }
            // A delegation this node trusted before may not vanish: whoever serves the
            // snapshot (often the trust server itself) could drop it to bring back what
            // a lower-priority role still lists.
            let trusted = self
                .opts
                .state
                .and_then(|s| s.versions.get(&d.name).copied());
            let Some(meta) = self.snapshot.meta.get(&d.name) else {
                if let Some(trusted) = trusted {
                    return Err(Error::RoleWithdrawn {
                        role: d.name.clone(),
                        trusted,
                        what: "no longer listed in the snapshot",
                    });
                }
                self.skip(&d.name, SkipReason::NotPublished);
                continue;
            };
            // Stricter than Notary on purpose: Notary skips a listed delegation it cannot
            // get or verify and falls back to its parent, so a server withholding
            // targets/releases could bring back a digest `targets` still lists for a tag
            // that releases has re-signed. Here the whole repository fails.
            let Some(bytes) = self.files.get(&d.name) else {
                return Err(match trusted {
                    Some(trusted) => Error::RoleWithdrawn {
                        role: d.name.clone(),
                        trusted,
                        what: "listed in the snapshot but not served",
                    },
                    None => Error::NoTrustData {
                        gun: self.opts.gun.to_owned(),
                        what: format!(
                            "delegation {} is listed in the snapshot but was not served; \
                             a repository is verified with all of its delegations or not at all",
                            d.name
                        ),
                    },
                });
            };
            let (child, t) = match read_ahead.get_mut(i).and_then(Option::take) {
                Some(read) => read?,
                None => check_then_parse(
                    &d.name,
                    "snapshot",
                    bytes,
                    meta,
                    self.opts.limits.file,
                    (&delegation_keys, &d.keys),
                    |s| targets_body(&d.name, s),
                )?,
            };
            no_rollback(&d.name, child.body.common.version, self.opts.state)?;
            let signers = passed(&d.name, &t, &d.keys)?;
            not_expired(&d.name, child.body.common.expires, self.opts.now)?;
            // A child may only narrow its parent's paths.
            let child_paths: Vec<String> = if d.uses_hash_prefixes {
                Vec::new()
            } else {
                d.paths
                    .iter()
                    .filter(|p| paths.iter().any(|pp| p.starts_with(pp.as_str())))
                    .cloned()
                    .collect()
            };
            self.roles
                .insert(d.name.clone(), info(&child.body.common, signers));
            self.visit(&d.name, child.body, &child_paths, depth + 1)?;
        }
        Ok(())
    }

    /// The children's files checked against the snapshot and parsed ahead of the walk,
    /// two at a time, when there is enough of them to be worth a thread (a 10,000-tag
    /// repository spread over delegations read them one after the other). Only the
    /// children the walk would read itself, with the same checks; each result, error
    /// included, is used when the walk reaches that child, in its order, so the outcome
    /// is the walk's. `None` where the walk reads the file itself.
    fn read_ahead(
        &self,
        name: &str,
        keys: &BTreeMap<String, PublicKey>,
        delegations: &[Delegation],
        depth: usize,
    ) -> Vec<Option<Result<Checked<TargetsRole>, Error>>> {
        let budget = self.opts.limits.delegations.saturating_sub(self.count);
        let wanted: Vec<Option<(&Delegation, &[u8], &FileMeta)>> = delegations
            .iter()
            .take(budget)
            .map(|d| {
                let readable =
                    valid_child_name(name, &d.name) && depth < self.opts.limits.delegation_depth;
                let meta = self.snapshot.meta.get(&d.name)?;
                let bytes = self.files.get(&d.name)?;
                readable.then_some((d, bytes, meta))
            })
            .collect();
        let bytes: usize = wanted.iter().flatten().map(|(_, b, _)| b.len()).sum();
        if wanted.iter().flatten().count() < 2 || bytes < READ_AHEAD_MIN {
            return Vec::new();
        }
        let limit = self.opts.limits.file;
        let read = |w: &Option<(&Delegation, &[u8], &FileMeta)>| {
            w.map(|(d, bytes, meta)| {
                check_then_parse(
                    &d.name,
                    "snapshot",
                    bytes,
                    meta,
                    limit,
                    (keys, &d.keys),
                    |s| targets_body(&d.name, s),
                )
            })
        };
        std::thread::scope(|s| {
            // Odd children on a second thread, even ones here.
            let odd = std::thread::Builder::new()
                .name("trust-core-read".to_owned())
                .spawn_scoped(s, || {
                    wanted
                        .iter()
                        .skip(1)
                        .step_by(2)
                        .map(read)
                        .collect::<Vec<_>>()
                });
            let Ok(odd) = odd else {
                // No thread to be had: the walk reads each file itself.
                return Vec::new();
            };
            let even: Vec<_> = wanted.iter().step_by(2).map(read).collect();
            let odd = odd
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            let mut all = Vec::with_capacity(wanted.len());
            let (mut even, mut odd) = (even.into_iter(), odd.into_iter());
            for i in 0..wanted.len() {
                all.push(if i % 2 == 0 { even.next() } else { odd.next() }.flatten());
            }
            all
        })
    }
}

/// Children's files are read ahead of the walk, two at a time, from this many bytes in
/// all (below it a thread costs more than it saves).
const READ_AHEAD_MIN: usize = 128 * 1024;
