//! Careful file handling: private modes, ownership checks, atomic durable writes.

use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Refuses a path that group or others can write, or that someone other than us or
/// root owns (a symlink too: whoever owns it chooses what it points to).
pub fn check_secure(path: &Path) -> Result<()> {
    let euid = rustix::process::geteuid().as_raw();
    let foreign = |owner: u32| Error::ForeignOwner {
        path: path.to_path_buf(),
        owner,
        euid,
    };
    let link = fs::symlink_metadata(path).map_err(io("inspect", path))?;
    if link.file_type().is_symlink() && !trusted_owner(link.uid(), euid) {
        return Err(foreign(link.uid()));
    }
    let meta = fs::metadata(path).map_err(io("inspect", path))?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 && !kubelet_volume_root(path, &meta, euid) {
        if meta.is_dir() && mode & 0o1000 == 0 && fs::symlink_metadata(path.join("..data")).is_ok()
        {
            return Err(Error::WritableVolumeRoot {
                path: path.to_path_buf(),
                mode,
            });
        }
        return Err(Error::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if !trusted_owner(meta.uid(), euid) {
        return Err(foreign(meta.uid()));
    }
    Ok(())
}

fn trusted_owner(uid: u32, euid: u32) -> bool {
    uid == euid || uid == 0
}

/// A Kubernetes Secret volume's root as pullguard's container sees it: the kubelet's
/// tmpfs, mode 1777, mounted read-only, holding the kubelet's `..data` symlink. There
/// the mode bits grant no one a write. A read-only mount alone is not enough: a
/// read-only bind of a world-writable host directory stays writable from the host, so
/// the sticky bit (no one can replace the root-owned entries) and the kubelet's own
/// layout (`..data`, owned by root) are required too.
fn kubelet_volume_root(path: &Path, meta: &fs::Metadata, euid: u32) -> bool {
    meta.is_dir()
        && meta.mode() & 0o1000 != 0
        && read_only_mount(path)
        && fs::symlink_metadata(path.join("..data"))
            .is_ok_and(|m| m.file_type().is_symlink() && trusted_owner(m.uid(), euid))
}

/// Whether `path` is on a file system mounted read-only (in this mount namespace).
fn read_only_mount(path: &Path) -> bool {
    rustix::fs::statvfs(path)
        .is_ok_and(|s| s.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY))
}

/// Creates `dir` (and parents) if missing, mode 0700 for what it creates; checks it.
pub fn private_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        let new: Vec<&Path> = dir.ancestors().take_while(|d| !d.exists()).collect();
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(io("set permissions of", dir))?;
        // A new directory's entry is durable once its parent is synced. Done here, at
        // start, rather than left to the first record's sync (the first verdict's).
        for d in new {
            let parent = match d.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            File::open(parent)
                .and_then(|f| f.sync_all())
                .map_err(io("sync", parent))?;
        }
    }
    check_secure(dir)
}

/// Reads at most `limit` bytes of a file after checking it; `None` if it does not exist.
pub fn read_secure(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io("read", path)(e)),
    };
    check_secure(path)?;
    let mut bytes = Vec::new();
    file.take(limit)
        .read_to_end(&mut bytes)
        .map_err(io("read", path))?;
    Ok(Some(bytes))
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either the old or
/// the new content: temporary file in the same directory (0600), fsync, rename, fsync
/// of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    // Unique per write, so that concurrent writers (threads or processes) never share
    // a temporary file; the last rename wins with a complete file either way.
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp: PathBuf = dir.join(format!(".{name}.{}.{n}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        fs::rename(&tmp, path).map_err(io("rename into place", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync", dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Removes temporary files a killed writer left behind. Only old ones: a young one may
/// belong to a writer that is still running.
pub fn sweep_temporaries(dir: &Path) {
    let stale = |e: &fs::DirEntry| {
        e.metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age.as_secs() > 60)
    };
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(".tmp") && stale(&e) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}
