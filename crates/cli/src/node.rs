//! `pullguard node`: puts `pullguard-verifier` into a node's containerd verifier
//! directory and takes it out again. The Kubernetes DaemonSet's init container runs it
//! (deploy/helm/pullguard), where there is no shell and no `install(1)`.
//!
//! containerd runs every file in its verifier `bin_dir` on every pull, and a file there
//! that is not executable blocks every pull. So nothing half-written may ever appear in
//! it: the copy is written beside the directory (same filesystem), made executable,
//! synced, then renamed in, and a copy left over by a crash is never inside `bin_dir`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::exit::{fail, Exit};

/// The verifier's file name: containerd names the verifier by it in its logs.
pub const VERIFIER: &str = "pullguard-verifier";

pub const EXAMPLES: &str = "\
Examples:
  pullguard node install-verifier --bin-dir /host/opt/containerd/image-verifier/bin
  pullguard node remove-verifier --bin-dir /host/opt/containerd/image-verifier/bin

The copy is written beside BIN_DIR (in its parent, on the same filesystem), then renamed
into it, so containerd never runs a half-written verifier. In Kubernetes, mount the
parent of BIN_DIR (deploy/helm/pullguard does).

Exit codes: 0 installed, removed, or already so; 2 the source is missing or BIN_DIR
cannot be written (the message says which).";

#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Copy pullguard-verifier into containerd's verifier directory, atomically.
    #[command(after_help = EXAMPLES)]
    InstallVerifier(Args),
    /// Remove pullguard-verifier from containerd's verifier directory.
    #[command(after_help = EXAMPLES)]
    RemoveVerifier(Args),
    /// In a pod: remove pullguard-verifier on every node of a DaemonSet, one Job per node (the chart's uninstall hook).
    #[command(after_help = FANOUT_EXAMPLES)]
    RemoveVerifierOnNodes(crate::node_fanout::Args),
}

const FANOUT_EXAMPLES: &str = "\
Example (what deploy/helm/pullguard's pre-delete hook runs):
  pullguard node remove-verifier-on-nodes --namespace pullguard \\
    --selector app.kubernetes.io/name=pullguard,app.kubernetes.io/instance=pullguard \\
    --image registry.example.com/pullguard/pullguard:0.1.0 \\
    --bin-dir /opt/containerd/image-verifier/bin

Needs the pod's service account with: pods list, jobs create/get/delete in the namespace.

Exit codes: 0 removed on every node; 1 some node kept it (each named); 2 bad usage;
3 the Kubernetes API cannot be reached or refused a request.";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// containerd's verifier directory (`bin_dir` of its image-verifier bindir plugin).
    #[arg(long, value_name = "DIR")]
    bin_dir: PathBuf,
    /// The verifier to copy (default: pullguard-verifier beside this program).
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

pub fn run(command: &Command) -> ExitCode {
    let result = match command {
        Command::InstallVerifier(args) => {
            let from = match &args.from {
                Some(f) => Ok(f.clone()),
                None => std::env::current_exe()
                    .map(|exe| exe.with_file_name(VERIFIER))
                    .map_err(|e| format!("cannot find this program's own path: {e}")),
            };
            from.and_then(|from| install(&from, &args.bin_dir))
        }
        Command::RemoveVerifier(args) => remove(&args.bin_dir),
        Command::RemoveVerifierOnNodes(args) => return crate::node_fanout::run(args),
    };
    match result {
        Ok(message) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err(message) => fail(Exit::Usage, false, "node", &message),
    }
}

/// Copies `from` to `bin_dir/pullguard-verifier` through a file in `bin_dir`'s parent.
pub fn install(from: &Path, bin_dir: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let bytes = std::fs::read(from)
        .map_err(|e| format!("cannot read the verifier {}: {e}", from.display()))?;
    let parent = bin_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .ok_or_else(|| {
            format!(
                "{} has no parent directory to stage the copy in",
                bin_dir.display()
            )
        })?;
    std::fs::create_dir_all(bin_dir)
        .map_err(|e| format!("cannot create {}: {e}", bin_dir.display()))?;
    let target = bin_dir.join(VERIFIER);
    if std::fs::read(&target).is_ok_and(|old| old == bytes) {
        return Ok(format!("{} is already this verifier", target.display()));
    }
    let staged = parent.join(format!(".{VERIFIER}.new"));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&staged)?;
        file.write_all(&bytes)?;
        file.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        file.sync_all()?;
        std::fs::rename(&staged, &target)?;
        // The rename is durable once the directory is synced.
        std::fs::File::open(bin_dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&staged);
        format!(
            "cannot install {} (staged in {}): {e}",
            target.display(),
            parent.display()
        )
    })?;
    let others = others_in(bin_dir);
    let mut message = format!("installed {}", target.display());
    if !others.is_empty() {
        // Not ours to remove, but each one also judges every pull.
        message.push_str(&format!(
            "; {} also holds {} (containerd runs every file there on every pull)",
            bin_dir.display(),
            others.join(", ")
        ));
    }
    Ok(message)
}

/// Removes `bin_dir/pullguard-verifier` (and a staged copy a crash left beside it).
pub fn remove(bin_dir: &Path) -> Result<String, String> {
    if let Some(parent) = bin_dir.parent() {
        let _ = std::fs::remove_file(parent.join(format!(".{VERIFIER}.new")));
    }
    let target = bin_dir.join(VERIFIER);
    match std::fs::remove_file(&target) {
        Ok(()) => Ok(format!("removed {}", target.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Ok(format!("{} was not there", target.display()))
        }
        Err(e) => Err(format!("cannot remove {}: {e}", target.display())),
    }
}

fn others_in(bin_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(bin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != VERIFIER)
        .take(16)
        .collect();
    names.sort();
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn install_puts_an_executable_copy_in_and_leaves_nothing_staged() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("src");
        std::fs::write(&from, b"#!/bin/sh\nexit 0\n").unwrap();
        let bin = dir.path().join("image-verifier/bin");
        let said = install(&from, &bin).unwrap();
        let target = bin.join(VERIFIER);
        assert!(said.starts_with("installed"), "{said}");
        assert_eq!(std::fs::read(&target).unwrap(), b"#!/bin/sh\nexit 0\n");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755);
        let names: Vec<_> = std::fs::read_dir(dir.path().join("image-verifier"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("bin")]);
        // Again: nothing to do, and said so.
        assert!(install(&from, &bin).unwrap().contains("already"));
    }

    #[test]
    fn install_names_the_other_verifiers_it_finds() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("src");
        std::fs::write(&from, b"v").unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join("other-verifier"), b"x").unwrap();
        let said = install(&from, &bin).unwrap();
        assert!(said.contains("other-verifier"), "{said}");
    }

    #[test]
    fn install_without_a_source_fails_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        let err = install(&dir.path().join("missing"), &bin).unwrap_err();
        assert!(err.contains("cannot read the verifier"), "{err}");
        assert!(!bin.join(VERIFIER).exists());
    }

    #[test]
    fn remove_takes_out_the_verifier_and_a_leftover_staged_copy() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::fs::write(bin.join(VERIFIER), b"v").unwrap();
        std::fs::write(dir.path().join(format!(".{VERIFIER}.new")), b"half").unwrap();
        assert!(remove(&bin).unwrap().starts_with("removed"));
        assert!(!bin.join(VERIFIER).exists());
        assert!(!dir.path().join(format!(".{VERIFIER}.new")).exists());
        assert!(remove(&bin).unwrap().contains("was not there"));
    }
}
