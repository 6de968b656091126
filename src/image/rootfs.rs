//! An offline root file system that `bake` reads and writes: a directory on this machine (a
//! mounted image, a chroot) or a disk image opened through libguestfs ([`crate::image::guestfs`]).
//!
//! Paths are always the guest's absolute paths (`/etc/systemd/timesyncd.conf`); symbolic links
//! are resolved inside the root, never against this machine's file system.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Component, Path, PathBuf};

/// What is at a path, without following a final symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Absent,
    File { mode: u32, uid: u32, gid: u32 },
    Dir,
    Symlink { target: String },
    Other,
}

#[derive(Debug, thiserror::Error)]
pub enum RootError {
    #[error("{root}: {path}: {message}")]
    Io {
        root: String,
        path: String,
        message: String,
    },
    #[error("{root}: {path}: refusing a path with characters outside [A-Za-z0-9._@:+/-]")]
    UnsafePath { root: String, path: String },
    #[error("{root}: {path}: symbolic links nest too deep (a loop?)")]
    SymlinkLoop { root: String, path: String },
    #[error("{0}")]
    Guestfs(String),
}

/// A root file system, read and written with the guest's paths.
pub trait RootFs: Send {
    /// How messages name this root: the image or directory path.
    fn describe(&self) -> String;
    /// What `path` is; a final symbolic link is not followed.
    ///
    /// # Errors
    /// The root cannot be read.
    fn lstat(&mut self, path: &str) -> Result<Entry, RootError>;
    /// `path` with every symbolic link resolved inside the root; None when it does not exist.
    ///
    /// # Errors
    /// The root cannot be read, or links loop.
    fn resolve(&mut self, path: &str) -> Result<Option<String>, RootError>;
    /// The bytes of the regular file at `path` (links followed inside the root).
    ///
    /// # Errors
    /// It cannot be read.
    fn read(&mut self, path: &str) -> Result<Vec<u8>, RootError>;
    /// The names in directory `dir`, sorted; empty when it does not exist.
    ///
    /// # Errors
    /// It cannot be read.
    fn list(&mut self, dir: &str) -> Result<Vec<String>, RootError>;
    /// Replace `path` atomically: a temporary file in the same directory, flushed to disk, mode
    /// `mode`, owned by root, renamed over `path`. With `backup`, the old file is first hard-linked
    /// to that name.
    ///
    /// # Errors
    /// Any step fails; `path` is then untouched.
    fn write(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        backup: Option<&str>,
    ) -> Result<(), RootError>;
    /// Make `link` a symbolic link to `target` (replacing a link there), creating its directory.
    ///
    /// # Errors
    /// Any step fails.
    fn symlink(&mut self, target: &str, link: &str) -> Result<(), RootError>;
    /// Remove the file or link at `path`.
    ///
    /// # Errors
    /// It cannot be removed.
    fn remove(&mut self, path: &str) -> Result<(), RootError>;
    /// Flush everything to disk and release the root.
    ///
    /// # Errors
    /// Flushing or closing fails.
    fn finish(self: Box<Self>) -> Result<(), RootError>;
}

/// Paths that reach a root (and guestfish's command line) are limited to these characters.
#[must_use]
pub fn is_safe_path(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains("/../")
        && !path.ends_with("/..")
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._@:+/-".contains(&b))
}

/// An error naming `root` unless `path` is safe (see [`is_safe_path`]).
///
/// # Errors
/// `path` is not safe.
pub fn ensure_safe(root: &str, path: &str) -> Result<(), RootError> {
    if is_safe_path(path) {
        Ok(())
    } else {
        Err(RootError::UnsafePath {
            root: root.to_owned(),
            path: path.to_owned(),
        })
    }
}

/// A number not handed out before in this process (for temporary names).
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh temporary name in guest directory `dir`.
#[must_use]
pub fn temp_name(dir: &str) -> String {
    join(
        dir,
        &format!(".clockprov-{}-{}.tmp", std::process::id(), unique()),
    )
}

/// The directory part of a guest path (`/` for top-level names).
#[must_use]
pub fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// A root file system in a directory of this machine.
pub struct DirectoryRoot {
    root: PathBuf,
}

impl DirectoryRoot {
    /// # Errors
    /// `root` is not a directory.
    pub fn open(root: &Path) -> Result<DirectoryRoot, RootError> {
        let root = fs::canonicalize(root).map_err(|e| RootError::Io {
            root: root.display().to_string(),
            path: "/".to_owned(),
            message: e.to_string(),
        })?;
        if !root.is_dir() {
            return Err(RootError::Io {
                root: root.display().to_string(),
                path: "/".to_owned(),
                message: "not a directory".to_owned(),
            });
        }
        Ok(DirectoryRoot { root })
    }

    fn err(&self, path: &str, e: impl std::fmt::Display) -> RootError {
        RootError::Io {
            root: self.root.display().to_string(),
            path: path.to_owned(),
            message: e.to_string(),
        }
    }

    fn check(&self, path: &str) -> Result<(), RootError> {
        ensure_safe(&self.root.display().to_string(), path)
    }

    /// The host path of guest path `guest` (no link resolution).
    fn host(&self, guest: &str) -> PathBuf {
        self.root.join(guest.trim_start_matches('/'))
    }

    /// Resolve `path` inside the root as the guest's kernel would: absolute link targets start
    /// again from the root, `..` stops at the root. With `follow_last` false the final
    /// component is not followed. Returns the guest path, and whether it exists.
    fn resolve_guest(&self, path: &str, follow_last: bool) -> Result<(String, bool), RootError> {
        let mut pending: Vec<String> = components(path);
        pending.reverse();
        let mut resolved: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(name) = pending.pop() {
            match name.as_str() {
                "." => continue,
                ".." => {
                    resolved.pop();
                    continue;
                }
                _ => {}
            }
            resolved.push(name);
            let guest = format!("/{}", resolved.join("/"));
            let is_last = pending.is_empty();
            let meta = match fs::symlink_metadata(self.host(&guest)) {
                Ok(meta) => meta,
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    // The rest does not exist either.
                    let mut rest: Vec<String> = pending.drain(..).rev().collect();
                    resolved.append(&mut rest);
                    return Ok((format!("/{}", resolved.join("/")), false));
                }
                Err(e) => return Err(self.err(&guest, e)),
            };
            if meta.file_type().is_symlink() && (follow_last || !is_last) {
                hops += 1;
                if hops > 40 {
                    return Err(RootError::SymlinkLoop {
                        root: self.root.display().to_string(),
                        path: path.to_owned(),
                    });
                }
                let target = fs::read_link(self.host(&guest)).map_err(|e| self.err(&guest, e))?;
                let target = target.as_os_str().to_string_lossy().into_owned();
                resolved.pop();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut more = components(&target);
                more.reverse();
                pending.extend(more);
            }
        }
        Ok((format!("/{}", resolved.join("/")), true))
    }

    fn sync_dir(&self, guest_dir: &str) -> Result<(), RootError> {
        File::open(self.host(guest_dir))
            .and_then(|d| d.sync_all())
            .map_err(|e| self.err(guest_dir, e))
    }

    /// The guest path of `path`'s directory with links resolved; it must exist.
    fn real_parent(&self, path: &str) -> Result<(String, String), RootError> {
        let name = path.rsplit('/').next().unwrap_or_default().to_owned();
        let (dir, exists) = self.resolve_guest(parent_of(path), true)?;
        if !exists {
            return Err(self.err(parent_of(path), "directory does not exist"));
        }
        Ok((dir, name))
    }
}

fn components(path: &str) -> Vec<String> {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            Component::ParentDir => Some("..".to_owned()),
            _ => None,
        })
        .collect()
}

fn join(dir: &str, name: &str) -> String {
    if dir == "/" {
        format!("/{name}")
    } else {
        format!("{dir}/{name}")
    }
}

impl RootFs for DirectoryRoot {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn lstat(&mut self, path: &str) -> Result<Entry, RootError> {
        self.check(path)?;
        let (guest, exists) = self.resolve_guest(path, false)?;
        if !exists {
            return Ok(Entry::Absent);
        }
        let host = self.host(&guest);
        let meta = fs::symlink_metadata(&host).map_err(|e| self.err(path, e))?;
        let kind = meta.file_type();
        Ok(if kind.is_symlink() {
            let target = fs::read_link(&host).map_err(|e| self.err(path, e))?;
            Entry::Symlink {
                target: target.as_os_str().to_string_lossy().into_owned(),
            }
        } else if kind.is_file() {
            Entry::File {
                mode: meta.mode() & 0o7777,
                uid: meta.uid(),
                gid: meta.gid(),
            }
        } else if kind.is_dir() {
            Entry::Dir
        } else {
            Entry::Other
        })
    }

    fn resolve(&mut self, path: &str) -> Result<Option<String>, RootError> {
        self.check(path)?;
        let (guest, exists) = self.resolve_guest(path, true)?;
        Ok(exists.then_some(guest))
    }

    fn read(&mut self, path: &str) -> Result<Vec<u8>, RootError> {
        self.check(path)?;
        let (guest, _) = self.resolve_guest(path, true)?;
        fs::read(self.host(&guest)).map_err(|e| self.err(path, e))
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, RootError> {
        self.check(dir)?;
        let (guest, exists) = self.resolve_guest(dir, true)?;
        if !exists {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for entry in fs::read_dir(self.host(&guest)).map_err(|e| self.err(dir, e))? {
            let entry = entry.map_err(|e| self.err(dir, e))?;
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn write(
        &mut self,
        path: &str,
        content: &[u8],
        mode: u32,
        backup: Option<&str>,
    ) -> Result<(), RootError> {
        self.check(path)?;
        let (dir, name) = self.real_parent(path)?;
        let target = join(&dir, &name);
        let temp = temp_name(&dir);
        let result = (|| -> Result<(), RootError> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(self.host(&temp))
                .map_err(|e| self.err(&temp, e))?;
            file.write_all(content).map_err(|e| self.err(&temp, e))?;
            std::os::unix::fs::fchown(&file, Some(0), Some(0)).map_err(|e| self.err(&temp, e))?;
            file.set_permissions(fs::Permissions::from_mode(mode))
                .map_err(|e| self.err(&temp, e))?;
            file.sync_all().map_err(|e| self.err(&temp, e))?;
            if let Some(backup) = backup {
                self.check(backup)?;
                fs::hard_link(
                    self.host(&target),
                    self.host(&join(&dir, backup_name(backup))),
                )
                .map_err(|e| self.err(backup, e))?;
            }
            fs::rename(self.host(&temp), self.host(&target)).map_err(|e| self.err(path, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(self.host(&temp));
        }
        result?;
        self.sync_dir(&dir)
    }

    fn symlink(&mut self, target: &str, link: &str) -> Result<(), RootError> {
        self.check(link)?;
        self.check(target)?;
        let (dir, exists) = self.resolve_guest(parent_of(link), true)?;
        if !exists {
            fs::create_dir_all(self.host(&dir)).map_err(|e| self.err(&dir, e))?;
        }
        let name = link.rsplit('/').next().unwrap_or_default();
        let temp = temp_name(&dir);
        std::os::unix::fs::symlink(OsStr::from_bytes(target.as_bytes()), self.host(&temp))
            .map_err(|e| self.err(&temp, e))?;
        // A link's owner is what `ls -l` shows; make it root's like systemctl would.
        std::os::unix::fs::lchown(self.host(&temp), Some(0), Some(0))
            .map_err(|e| self.err(&temp, e))?;
        fs::rename(self.host(&temp), self.host(&join(&dir, name))).map_err(|e| {
            let _ = fs::remove_file(self.host(&temp));
            self.err(link, e)
        })?;
        self.sync_dir(&dir)
    }

    fn remove(&mut self, path: &str) -> Result<(), RootError> {
        self.check(path)?;
        let (dir, name) = self.real_parent(path)?;
        fs::remove_file(self.host(&join(&dir, &name))).map_err(|e| self.err(path, e))?;
        self.sync_dir(&dir)
    }

    fn finish(self: Box<Self>) -> Result<(), RootError> {
        Ok(())
    }
}

/// The file name of a backup path (backups live next to their file).
fn backup_name(backup: &str) -> &str {
    backup.rsplit('/').next().unwrap_or(backup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths() {
        assert!(is_safe_path("/etc/systemd/timesyncd.conf"));
        assert!(is_safe_path(
            "/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service"
        ));
        assert!(!is_safe_path("etc/x"));
        assert!(!is_safe_path("/etc/x y"));
        assert!(!is_safe_path("/etc/\"x"));
        assert!(!is_safe_path("/etc/../../x"));
        assert!(!is_safe_path("/etc/x\nrm"));
        assert_eq!(parent_of("/etc/machine-id"), "/etc");
        assert_eq!(parent_of("/lib"), "/");
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/systemd/system")).unwrap();
        fs::write(root.join("usr/lib/systemd/system/a.service"), "x").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute link means the guest's /usr, never this machine's.
        std::os::unix::fs::symlink("/usr/lib/os-release-x", root.join("etc/os-release")).unwrap();
        fs::write(root.join("usr/lib/os-release-x"), "ID=test\n").unwrap();
        std::os::unix::fs::symlink("../../../../../../../etc/passwd", root.join("etc/escape"))
            .unwrap();
        let mut fs_root = DirectoryRoot::open(root).unwrap();
        assert_eq!(
            fs_root
                .resolve("/lib/systemd/system/a.service")
                .unwrap()
                .as_deref(),
            Some("/usr/lib/systemd/system/a.service")
        );
        assert_eq!(fs_root.read("/etc/os-release").unwrap(), b"ID=test\n");
        // `..` stops at the root: /etc/passwd of the root, which is absent.
        assert_eq!(fs_root.resolve("/etc/escape").unwrap(), None);
        assert_eq!(
            fs_root.lstat("/lib").unwrap(),
            Entry::Symlink {
                target: "usr/lib".into()
            }
        );
        assert_eq!(fs_root.lstat("/nope/x").unwrap(), Entry::Absent);
        assert!(matches!(
            fs_root.lstat("/lib/systemd/system/a.service").unwrap(),
            Entry::File { .. }
        ));
    }

    #[test]
    fn writes_are_atomic_with_backup_and_links_replace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/systemd")).unwrap();
        fs::write(root.join("etc/systemd/t.conf"), "old\n").unwrap();
        let mut fs_root = DirectoryRoot::open(root).unwrap();
        fs_root
            .write(
                "/etc/systemd/t.conf",
                b"new\n",
                0o644,
                Some("/etc/systemd/t.conf.bak"),
            )
            .unwrap();
        assert_eq!(fs::read(root.join("etc/systemd/t.conf")).unwrap(), b"new\n");
        assert_eq!(
            fs::read(root.join("etc/systemd/t.conf.bak")).unwrap(),
            b"old\n"
        );
        let meta = fs::metadata(root.join("etc/systemd/t.conf")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        fs_root
            .symlink("/lib/x.service", "/etc/systemd/system/a.wants/x.service")
            .unwrap();
        fs_root
            .symlink("/lib/y.service", "/etc/systemd/system/a.wants/x.service")
            .unwrap();
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/a.wants/x.service")).unwrap(),
            Path::new("/lib/y.service")
        );
        fs_root
            .remove("/etc/systemd/system/a.wants/x.service")
            .unwrap();
        assert_eq!(
            fs_root.list("/etc/systemd/system/a.wants").unwrap(),
            Vec::<String>::new()
        );
        // No temporary file is left behind.
        assert_eq!(
            fs_root.list("/etc/systemd").unwrap(),
            vec!["system", "t.conf", "t.conf.bak"]
        );
    }
}
