//! An offline root file system that `bake` reads and writes: a directory on this machine (a
//! mounted image, a chroot) or a disk image opened through libguestfs ([`crate::image::guestfs`]).
//!
//! Paths are always the guest's ([`GuestPath`]); symbolic links are resolved inside the root,
//! never against this machine's file system.
//!
//! A directory root is the dangerous one: bake runs as root, and the tree may have been made by
//! someone else. So [`DirectoryRoot`] never hands a multi-component path to the kernel. It walks
//! from a descriptor of the root, one plain name at a time (`openat` with `O_NOFOLLOW`), keeps
//! the descriptors of the directories it passed so that `..` goes back to the previous one (and
//! never above the root), reads each link it meets and goes on inside the root (an absolute
//! target starts again at the root), and does every write, link and removal relative to the
//! descriptor of the directory it resolved. It creates directories one at a time, and only for the
//! path it was asked about: a link whose target is missing is refused, never created, so a link
//! such as `x/../../..` through a missing `x` cannot make it build anything elsewhere.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

use crate::image::path::{GuestPath, GuestPathError};

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
    #[error("{root}: {source}")]
    Path {
        root: String,
        #[source]
        source: GuestPathError,
    },
    #[error("{root}: {path}: symbolic links nest too deep (a loop?)")]
    SymlinkLoop { root: String, path: String },
    #[error(
        "{root}: {path}: {link} is a symbolic link to {target}, which leads to something missing; refusing to create what a link points to"
    )]
    DanglingLink {
        root: String,
        path: String,
        link: String,
        target: String,
    },
    #[error("{root}: {path}: {at} is not a directory")]
    NotADirectory {
        root: String,
        path: String,
        at: String,
    },
    #[error("{root}: opened read-only; nothing may be written")]
    ReadOnly { root: String },
    #[error(
        "{root}: this is the root directory of this machine, not an image; refusing to bake it"
    )]
    ThisMachine { root: String },
    #[error("{0}")]
    Guestfs(String),
}

/// A root file system, read and written with the guest's paths.
pub trait RootFs: Send {
    /// How messages name this root: the image or directory path.
    fn describe(&self) -> String;
    /// Was it opened read-only?
    fn readonly(&self) -> bool;
    /// Would writing into directory `dir` work (`create`: after making its missing
    /// directories)? Changes nothing; bake asks before its first write, so that a root it cannot
    /// bake fails whole.
    ///
    /// # Errors
    /// `dir` is not a directory, is missing (and `create` is false), or its missing part is
    /// what a link points to.
    fn check_dir(&mut self, dir: &GuestPath, create: bool) -> Result<(), RootError>;
    /// What `path` is; a final symbolic link is not followed.
    ///
    /// # Errors
    /// The root cannot be read.
    fn lstat(&mut self, path: &GuestPath) -> Result<Entry, RootError>;
    /// `path` with every symbolic link resolved inside the root; None when it does not exist.
    ///
    /// # Errors
    /// The root cannot be read, or links loop.
    fn resolve(&mut self, path: &GuestPath) -> Result<Option<GuestPath>, RootError>;
    /// The bytes of the regular file at `path` (links followed inside the root).
    ///
    /// # Errors
    /// It cannot be read.
    fn read(&mut self, path: &GuestPath) -> Result<Vec<u8>, RootError>;
    /// The names in directory `dir`, sorted; empty when it does not exist. Names are the
    /// image's own: they are not guest paths until checked.
    ///
    /// # Errors
    /// It cannot be read.
    fn list(&mut self, dir: &GuestPath) -> Result<Vec<String>, RootError>;
    /// Replace `path` atomically: a temporary file in the same directory, flushed to disk, mode
    /// `mode`, owned by root, renamed over `path`. With `backup`, the old file is first
    /// hard-linked to that name in the same directory. Missing directories on the way are
    /// made (mode 755).
    ///
    /// # Errors
    /// Any step fails; `path` is then untouched.
    fn write(
        &mut self,
        path: &GuestPath,
        content: &[u8],
        mode: u32,
        backup: Option<&str>,
    ) -> Result<(), RootError>;
    /// Make `link` a symbolic link to `target` (replacing a link there), creating its missing
    /// directories.
    ///
    /// # Errors
    /// Any step fails.
    fn symlink(&mut self, target: &GuestPath, link: &GuestPath) -> Result<(), RootError>;
    /// Remove the file or link at `path`.
    ///
    /// # Errors
    /// It cannot be removed.
    fn remove(&mut self, path: &GuestPath) -> Result<(), RootError>;
    /// Flush everything to disk and release the root.
    ///
    /// # Errors
    /// Flushing or closing fails.
    fn finish(self: Box<Self>) -> Result<(), RootError>;
}

/// A number not handed out before in this process (for temporary names).
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh temporary file name (for a directory of the root).
#[must_use]
pub fn temp_name() -> String {
    format!(".clockprov-{}-{}.tmp", std::process::id(), unique())
}

/// At most this many links are followed in one path, as Linux's `MAXSYMLINKS`.
const MAX_LINKS: usize = 40;

/// A directory passed on the way: its descriptor (`O_PATH`) and its name in its parent.
struct Dir {
    fd: OwnedFd,
    name: String,
}

/// What a walk found at the end of a path.
enum Leaf {
    /// The path names the directory on top of the walk's stack itself (`/`, or a path whose
    /// last step was `..` inside a link).
    Top,
    /// `name` in the top directory, which does not exist. `creatable`: it and what follows are
    /// the path's own names (not a link's target, no `..` to come), so bake may make them.
    Missing { name: String, creatable: bool },
    /// `name` in the top directory: an `O_PATH` descriptor of it and what it is.
    Found {
        name: String,
        fd: OwnedFd,
        stat: rustix::fs::Stat,
    },
}

/// The directories from the root down to where a path ends, and what is there.
struct Walk {
    dirs: Vec<Dir>,
    leaf: Leaf,
    /// The last link followed and its target, for messages.
    last_link: Option<(String, String)>,
}

impl Walk {
    fn top(&self) -> &OwnedFd {
        // The stack always holds the root.
        &self.dirs[self.dirs.len() - 1].fd
    }

    /// The guest path of what the walk ended at.
    fn guest(&self) -> Result<GuestPath, GuestPathError> {
        let mut path = GuestPath::ROOT;
        for dir in &self.dirs[1..] {
            path = path.join(&dir.name)?;
        }
        match &self.leaf {
            Leaf::Top => Ok(path),
            Leaf::Missing { name, .. } | Leaf::Found { name, .. } => path.join(name),
        }
    }
}

/// How a walk treats the path's last component and missing directories.
#[derive(Clone, Copy)]
struct How {
    follow_last: bool,
    create_dirs: bool,
}

/// A root file system in a directory of this machine.
pub struct DirectoryRoot {
    root: PathBuf,
    /// The root, opened once (`O_PATH`); everything else is reached from it.
    fd: OwnedFd,
    readonly: bool,
}

impl DirectoryRoot {
    /// Open `root`, refusing this machine's own `/` (by identity, so a bind mount of it is
    /// refused too).
    ///
    /// # Errors
    /// `root` is not a directory, or is this machine's root.
    pub fn open(root: &Path, readonly: bool) -> Result<DirectoryRoot, RootError> {
        let io = |e: &dyn std::fmt::Display| RootError::Io {
            root: root.display().to_string(),
            path: "/".to_owned(),
            message: e.to_string(),
        };
        let root = std::fs::canonicalize(root).map_err(|e| io(&e))?;
        let fd = rustix::fs::openat(
            rustix::fs::CWD,
            &root,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(&describe_errno(e)))?;
        let mine = rustix::fs::fstat(&fd).map_err(|e| io(&e))?;
        let system = rustix::fs::stat("/").map_err(|e| io(&e))?;
        if (mine.st_dev, mine.st_ino) == (system.st_dev, system.st_ino) {
            return Err(RootError::ThisMachine {
                root: root.display().to_string(),
            });
        }
        Ok(DirectoryRoot { root, fd, readonly })
    }

    fn err(&self, path: &GuestPath, e: impl std::fmt::Display) -> RootError {
        RootError::Io {
            root: self.root.display().to_string(),
            path: path.to_string(),
            message: e.to_string(),
        }
    }

    fn path_err(&self, source: GuestPathError) -> RootError {
        RootError::Path {
            root: self.root.display().to_string(),
            source,
        }
    }

    fn writable(&self) -> Result<(), RootError> {
        if self.readonly {
            Err(RootError::ReadOnly {
                root: self.root.display().to_string(),
            })
        } else {
            Ok(())
        }
    }

    /// Walk `path` from the root, as the guest's kernel would resolve it with this directory as
    /// its `/`.
    fn walk(&self, path: &GuestPath, how: How) -> Result<Walk, RootError> {
        let root = self.fd.try_clone().map_err(|e| self.err(path, e))?;
        let mut dirs = vec![Dir {
            fd: root,
            name: String::new(),
        }];
        // Components still to walk, last first; `true` for those that came from a link.
        let mut pending: Vec<(String, bool)> = path
            .components()
            .rev()
            .map(|c| (c.to_owned(), false))
            .collect();
        let mut links = 0;
        // The last link followed and its target, for messages.
        let mut last_link = None;
        while let Some((name, from_link)) = pending.pop() {
            match name.as_str() {
                "." => continue,
                ".." => {
                    if dirs.len() > 1 {
                        dirs.pop();
                    }
                    continue;
                }
                _ => {}
            }
            let is_last = pending.is_empty();
            let top = &dirs[dirs.len() - 1].fd;
            let fd = match rustix::fs::openat(
                top,
                name.as_str(),
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => {
                    // Only the path's own directories are made: never what a link points to,
                    // never a directory that a later `..` would leave again.
                    let creatable = !from_link && !pending.iter().any(|(c, f)| *f || c == "..");
                    if is_last || !how.create_dirs {
                        // Nothing is there, and nothing after it can be.
                        return Ok(Walk {
                            dirs,
                            leaf: Leaf::Missing { name, creatable },
                            last_link,
                        });
                    }
                    if !creatable {
                        return Err(self.dangling(path, last_link.as_ref()));
                    }
                    let fd = self.make_dir(top, &name, path)?;
                    dirs.push(Dir { fd, name });
                    continue;
                }
                Err(e) => return Err(self.err(path, describe_errno(e))),
            };
            let stat = rustix::fs::fstat(&fd).map_err(|e| self.err(path, e))?;
            match FileType::from_raw_mode(stat.st_mode) {
                FileType::Symlink if how.follow_last || !is_last => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(RootError::SymlinkLoop {
                            root: self.root.display().to_string(),
                            path: path.to_string(),
                        });
                    }
                    let target = read_link(&fd).map_err(|e| self.err(path, e))?;
                    if target.is_empty() {
                        return Err(self.err(path, "a symbolic link with an empty target"));
                    }
                    last_link = Some((here(&dirs, &name), target.clone()));
                    if target.starts_with('/') {
                        dirs.truncate(1);
                    }
                    pending.extend(
                        target
                            .split('/')
                            .filter(|c| !c.is_empty())
                            .rev()
                            .map(|c| (c.to_owned(), true)),
                    );
                }
                _ if is_last => {
                    return Ok(Walk {
                        dirs,
                        leaf: Leaf::Found { name, fd, stat },
                        last_link,
                    });
                }
                FileType::Directory => dirs.push(Dir { fd, name }),
                _ => {
                    return Err(RootError::NotADirectory {
                        root: self.root.display().to_string(),
                        path: path.to_string(),
                        at: here(&dirs, &name),
                    });
                }
            }
        }
        Ok(Walk {
            dirs,
            leaf: Leaf::Top,
            last_link,
        })
    }

    /// The error for a missing directory that a link leads to.
    fn dangling(&self, path: &GuestPath, link: Option<&(String, String)>) -> RootError {
        let (link, target) = link.cloned().unwrap_or_default();
        RootError::DanglingLink {
            root: self.root.display().to_string(),
            path: path.to_string(),
            link,
            target: sanitize(&target),
        }
    }

    /// Create directory `name` in `dir` (mode 0755, root's, as systemctl would) and open it.
    fn make_dir(&self, dir: &OwnedFd, name: &str, path: &GuestPath) -> Result<OwnedFd, RootError> {
        match rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(self.err(path, describe_errno(e))),
        }
        // O_NOFOLLOW | O_DIRECTORY: if something swapped in a link meanwhile, this fails.
        let opened = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(path, describe_errno(e)))?;
        rustix::fs::fchmod(&opened, Mode::from_raw_mode(0o755)).map_err(|e| self.err(path, e))?;
        rustix::fs::fchown(
            &opened,
            Some(rustix::fs::Uid::ROOT),
            Some(rustix::fs::Gid::ROOT),
        )
        .map_err(|e| self.err(path, e))?;
        rustix::fs::fsync(dir_for_sync(dir).map_err(|e| self.err(path, e))?)
            .map_err(|e| self.err(path, e))?;
        rustix::fs::openat(
            &opened,
            ".",
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(path, e))
    }

    /// The directory that holds `path` (links in it resolved inside the root), which must
    /// exist unless `create` (then its missing directories are made, one at a time).
    fn parent_dir(&self, path: &GuestPath, create: bool) -> Result<OwnedFd, RootError> {
        if path.is_root() {
            return Err(self.err(path, "the root itself cannot be replaced"));
        }
        let walk = self.walk(
            &path.parent(),
            How {
                follow_last: true,
                create_dirs: create,
            },
        )?;
        match walk.leaf {
            Leaf::Top => walk.top().try_clone().map_err(|e| self.err(path, e)),
            Leaf::Found { fd, stat, .. }
                if FileType::from_raw_mode(stat.st_mode) == FileType::Directory =>
            {
                Ok(fd)
            }
            Leaf::Found { .. } => Err(RootError::NotADirectory {
                root: self.root.display().to_string(),
                path: path.to_string(),
                at: path.parent().to_string(),
            }),
            Leaf::Missing {
                ref name,
                creatable: true,
            } if create => self.make_dir(walk.top(), name, path),
            Leaf::Missing { .. } if create => {
                Err(self.dangling(&path.parent(), walk.last_link.as_ref()))
            }
            Leaf::Missing { .. } => Err(self.err(&path.parent(), "directory does not exist")),
        }
    }

    fn sync_dir(&self, dir: &OwnedFd, path: &GuestPath) -> Result<(), RootError> {
        let readable = dir_for_sync(dir).map_err(|e| self.err(path, e))?;
        rustix::fs::fsync(readable).map_err(|e| self.err(path, e))
    }
}

/// A readable descriptor of directory `dir` (fsync and reading entries need one; `O_PATH`
/// descriptors do not serve).
fn dir_for_sync(dir: &OwnedFd) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn read_link(fd: &OwnedFd) -> Result<String, Errno> {
    let target = rustix::fs::readlinkat(fd, "", Vec::new())?;
    Ok(String::from_utf8_lossy(target.as_bytes()).into_owned())
}

/// The guest path of `name` in the top directory of `dirs`, for messages.
fn here(dirs: &[Dir], name: &str) -> String {
    let mut at = String::new();
    for dir in &dirs[1..] {
        at.push('/');
        at.push_str(&dir.name);
    }
    at.push('/');
    at.push_str(name);
    sanitize(&at)
}

/// Errors worded for the case at hand (`ELOOP` from `O_NOFOLLOW` means a link was there).
fn describe_errno(e: Errno) -> String {
    if e == Errno::LOOP {
        "a symbolic link where a plain file or directory was expected".to_owned()
    } else {
        std::io::Error::from(e).to_string()
    }
}

/// Control characters from the image, shown escaped.
fn sanitize(text: &str) -> String {
    text.chars().flat_map(char::escape_debug).collect()
}

impl RootFs for DirectoryRoot {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn check_dir(&mut self, dir: &GuestPath, create: bool) -> Result<(), RootError> {
        let walk = self.walk(
            dir,
            How {
                follow_last: true,
                create_dirs: false,
            },
        )?;
        match walk.leaf {
            Leaf::Top => Ok(()),
            Leaf::Found { stat, .. }
                if FileType::from_raw_mode(stat.st_mode) == FileType::Directory =>
            {
                Ok(())
            }
            Leaf::Found { .. } => Err(RootError::NotADirectory {
                root: self.root.display().to_string(),
                path: dir.to_string(),
                at: dir.to_string(),
            }),
            Leaf::Missing {
                creatable: true, ..
            } if create => Ok(()),
            Leaf::Missing { .. } if create => Err(self.dangling(dir, walk.last_link.as_ref())),
            Leaf::Missing { .. } => Err(self.err(dir, "directory does not exist")),
        }
    }

    fn lstat(&mut self, path: &GuestPath) -> Result<Entry, RootError> {
        let walk = self.walk(
            path,
            How {
                follow_last: false,
                create_dirs: false,
            },
        )?;
        Ok(match walk.leaf {
            Leaf::Top => Entry::Dir,
            Leaf::Missing { .. } => Entry::Absent,
            Leaf::Found { fd, stat, .. } => match FileType::from_raw_mode(stat.st_mode) {
                FileType::Symlink => Entry::Symlink {
                    target: read_link(&fd).map_err(|e| self.err(path, e))?,
                },
                FileType::RegularFile => Entry::File {
                    mode: stat.st_mode & 0o7777,
                    uid: stat.st_uid,
                    gid: stat.st_gid,
                },
                FileType::Directory => Entry::Dir,
                _ => Entry::Other,
            },
        })
    }

    fn resolve(&mut self, path: &GuestPath) -> Result<Option<GuestPath>, RootError> {
        let walk = self.walk(
            path,
            How {
                follow_last: true,
                create_dirs: false,
            },
        )?;
        if matches!(walk.leaf, Leaf::Missing { .. }) {
            return Ok(None);
        }
        walk.guest().map(Some).map_err(|e| self.path_err(e))
    }

    fn read(&mut self, path: &GuestPath) -> Result<Vec<u8>, RootError> {
        let walk = self.walk(
            path,
            How {
                follow_last: true,
                create_dirs: false,
            },
        )?;
        let Leaf::Found { name, stat, .. } = &walk.leaf else {
            return Err(self.err(path, "not a regular file"));
        };
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(self.err(path, "not a regular file"));
        }
        // O_NONBLOCK: should a FIFO have been swapped in since, opening it does not hang.
        let fd = rustix::fs::openat(
            walk.top(),
            name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err(path, describe_errno(e)))?;
        let now = rustix::fs::fstat(&fd).map_err(|e| self.err(path, e))?;
        if (now.st_dev, now.st_ino) != (stat.st_dev, stat.st_ino) {
            return Err(self.err(path, "changed while being read"));
        }
        let mut content = Vec::new();
        File::from(fd)
            .read_to_end(&mut content)
            .map_err(|e| self.err(path, e))?;
        Ok(content)
    }

    fn list(&mut self, dir: &GuestPath) -> Result<Vec<String>, RootError> {
        let walk = self.walk(
            dir,
            How {
                follow_last: true,
                create_dirs: false,
            },
        )?;
        let fd = match walk.leaf {
            Leaf::Missing { .. } => return Ok(Vec::new()),
            Leaf::Top => walk.top().try_clone().map_err(|e| self.err(dir, e))?,
            Leaf::Found { fd, stat, .. } => {
                if FileType::from_raw_mode(stat.st_mode) != FileType::Directory {
                    return Ok(Vec::new());
                }
                fd
            }
        };
        let readable = dir_for_sync(&fd).map_err(|e| self.err(dir, e))?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::new(readable).map_err(|e| self.err(dir, e))? {
            let entry = entry.map_err(|e| self.err(dir, e))?;
            let name = String::from_utf8_lossy(entry.file_name().to_bytes()).into_owned();
            if name != "." && name != ".." {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    fn write(
        &mut self,
        path: &GuestPath,
        content: &[u8],
        mode: u32,
        backup: Option<&str>,
    ) -> Result<(), RootError> {
        self.writable()?;
        // Its missing directories are made (a drop-in directory the image lacks).
        let dir = self.parent_dir(path, true)?;
        let name = path.file_name();
        if let Some(backup) = backup {
            path.parent().join(backup).map_err(|e| self.path_err(e))?;
        }
        let temp = temp_name();
        let result = (|| -> Result<(), RootError> {
            let fd = rustix::fs::openat(
                &dir,
                temp.as_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| self.err(path, describe_errno(e)))?;
            let mut file = File::from(fd);
            file.write_all(content).map_err(|e| self.err(path, e))?;
            rustix::fs::fchown(
                &file,
                Some(rustix::fs::Uid::ROOT),
                Some(rustix::fs::Gid::ROOT),
            )
            .map_err(|e| self.err(path, e))?;
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(|e| self.err(path, e))?;
            file.sync_all().map_err(|e| self.err(path, e))?;
            if let Some(backup) = backup {
                // linkat without AT_SYMLINK_FOLLOW links the entry itself.
                rustix::fs::linkat(&dir, name, &dir, backup, AtFlags::empty())
                    .map_err(|e| self.err(path, describe_errno(e)))?;
            }
            rustix::fs::renameat(&dir, temp.as_str(), &dir, name)
                .map_err(|e| self.err(path, describe_errno(e)))
        })();
        if result.is_err() {
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
        }
        result?;
        self.sync_dir(&dir, path)
    }

    fn symlink(&mut self, target: &GuestPath, link: &GuestPath) -> Result<(), RootError> {
        self.writable()?;
        let dir = self.parent_dir(link, true)?;
        let temp = temp_name();
        rustix::fs::symlinkat(target.as_str(), &dir, temp.as_str())
            .map_err(|e| self.err(link, e))?;
        let done = (|| {
            // A link's owner is what `ls -l` shows; make it root's as systemctl would.
            rustix::fs::chownat(
                &dir,
                temp.as_str(),
                Some(rustix::fs::Uid::ROOT),
                Some(rustix::fs::Gid::ROOT),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| self.err(link, e))?;
            rustix::fs::renameat(&dir, temp.as_str(), &dir, link.file_name())
                .map_err(|e| self.err(link, describe_errno(e)))
        })();
        if done.is_err() {
            let _ = rustix::fs::unlinkat(&dir, temp.as_str(), AtFlags::empty());
        }
        done?;
        self.sync_dir(&dir, link)
    }

    fn remove(&mut self, path: &GuestPath) -> Result<(), RootError> {
        self.writable()?;
        let dir = self.parent_dir(path, false)?;
        rustix::fs::unlinkat(&dir, path.file_name(), AtFlags::empty())
            .map_err(|e| self.err(path, describe_errno(e)))?;
        self.sync_dir(&dir, path)
    }

    fn finish(self: Box<Self>) -> Result<(), RootError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs;
    use std::os::unix::fs::{MetadataExt as _, symlink};

    use super::*;

    fn gp(path: &str) -> GuestPath {
        GuestPath::new(path).unwrap()
    }

    /// Every path under `dir` with what it is (content, link target, directory) and its mode.
    fn tree(dir: &Path) -> BTreeMap<PathBuf, String> {
        fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = fs::symlink_metadata(&path).unwrap();
                let rel = path.strip_prefix(base).unwrap().to_owned();
                let what = if meta.file_type().is_symlink() {
                    format!("-> {}", fs::read_link(&path).unwrap().display())
                } else if meta.is_dir() {
                    walk(base, &path, out);
                    format!("dir {:o}", meta.mode())
                } else {
                    format!("{:o} {:?}", meta.mode(), fs::read(&path).unwrap())
                };
                out.insert(rel, what);
            }
        }
        let mut out = BTreeMap::new();
        walk(dir, dir, &mut out);
        out
    }

    #[test]
    fn links_resolve_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/systemd/system")).unwrap();
        fs::write(root.join("usr/lib/systemd/system/a.service"), "x").unwrap();
        symlink("usr/lib", root.join("lib")).unwrap();
        fs::create_dir_all(root.join("etc")).unwrap();
        // An absolute link means the guest's /usr, never this machine's.
        symlink("/usr/lib/os-release-x", root.join("etc/os-release")).unwrap();
        fs::write(root.join("usr/lib/os-release-x"), "ID=test\n").unwrap();
        symlink("../../../../../../../etc/passwd", root.join("etc/escape")).unwrap();
        symlink("/", root.join("etc/top")).unwrap();
        let mut fs_root = DirectoryRoot::open(root, true).unwrap();
        assert_eq!(
            fs_root
                .resolve(&gp("/lib/systemd/system/a.service"))
                .unwrap(),
            Some(gp("/usr/lib/systemd/system/a.service"))
        );
        assert_eq!(fs_root.read(&gp("/etc/os-release")).unwrap(), b"ID=test\n");
        // `..` stops at the root: /etc/passwd of the root, which is absent.
        assert_eq!(fs_root.resolve(&gp("/etc/escape")).unwrap(), None);
        assert!(fs_root.read(&gp("/etc/escape")).is_err());
        assert_eq!(
            fs_root.resolve(&gp("/etc/top")).unwrap(),
            Some(GuestPath::ROOT)
        );
        assert_eq!(
            fs_root.list(&gp("/etc/top")).unwrap(),
            vec!["etc", "lib", "usr"]
        );
        assert_eq!(
            fs_root.lstat(&gp("/lib")).unwrap(),
            Entry::Symlink {
                target: "usr/lib".into()
            }
        );
        assert_eq!(fs_root.lstat(&gp("/nope/x")).unwrap(), Entry::Absent);
        assert_eq!(fs_root.lstat(&GuestPath::ROOT).unwrap(), Entry::Dir);
        assert!(matches!(
            fs_root.lstat(&gp("/lib/systemd/system/a.service")).unwrap(),
            Entry::File { .. }
        ));
        // A file in the middle of a path is an error, not an absence.
        let err = fs_root
            .lstat(&gp("/lib/systemd/system/a.service/x"))
            .unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        // Opened read-only: nothing may be written.
        let err = fs_root.write(&gp("/etc/x"), b"", 0o644, None).unwrap_err();
        assert!(matches!(err, RootError::ReadOnly { .. }), "{err}");
    }

    #[test]
    fn writes_are_atomic_with_backup_and_links_replace() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("etc/systemd")).unwrap();
        fs::write(root.join("etc/systemd/t.conf"), "old\n").unwrap();
        let mut fs_root = DirectoryRoot::open(root, false).unwrap();
        fs_root
            .write(
                &gp("/etc/systemd/t.conf"),
                b"new\n",
                0o644,
                Some("t.conf.bak"),
            )
            .unwrap();
        assert_eq!(fs::read(root.join("etc/systemd/t.conf")).unwrap(), b"new\n");
        assert_eq!(
            fs::read(root.join("etc/systemd/t.conf.bak")).unwrap(),
            b"old\n"
        );
        let meta = fs::metadata(root.join("etc/systemd/t.conf")).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o644);
        let link = gp("/etc/systemd/system/a.wants/x.service");
        fs_root.symlink(&gp("/lib/x.service"), &link).unwrap();
        fs_root.symlink(&gp("/lib/y.service"), &link).unwrap();
        assert_eq!(
            fs::read_link(root.join("etc/systemd/system/a.wants/x.service")).unwrap(),
            Path::new("/lib/y.service")
        );
        // Directories made one at a time: 0755 whatever the umask.
        let made = fs::metadata(root.join("etc/systemd/system/a.wants")).unwrap();
        assert_eq!(made.mode() & 0o7777, 0o755);
        fs_root.remove(&link).unwrap();
        assert_eq!(
            fs_root.list(&gp("/etc/systemd/system/a.wants")).unwrap(),
            Vec::<String>::new()
        );
        // No temporary file is left behind.
        assert_eq!(
            fs_root.list(&gp("/etc/systemd")).unwrap(),
            vec!["system", "t.conf", "t.conf.bak"]
        );
    }

    /// The crafted roots of issue 9: links that try to lead bake out of its root. Each either
    /// fails or lands inside the root; nothing outside it changes.
    #[test]
    fn links_that_climb_out_fail_or_stay_inside() {
        let world = tempfile::tempdir().unwrap();
        let outside = world.path().join("outside");
        fs::create_dir_all(outside.join("etc/systemd/system")).unwrap();
        fs::write(outside.join("etc/machine-id"), "sentinel\n").unwrap();
        fs::write(outside.join("etc/systemd/timesyncd.conf"), "[Time]\n").unwrap();
        let abs_outside = outside.display().to_string();
        let sentinel = tree(world.path());
        let unit = gp("/lib/systemd/system/systemd-timesyncd.service");
        let wants = gp("/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service");
        // (link target for /etc/systemd/system, whether the enablement link may succeed inside)
        let cases = [
            ("x/../../..", false),
            ("x/../../../../../..", false),
            (
                "x/../../../../../../../../../../../../../../etc/systemd/system",
                false,
            ),
            ("../../../../../../..", true),
            ("/", true),
            ("/../../..", true),
            (abs_outside.as_str(), false),
            ("../../../outside/etc/systemd/system", false),
            ("loop", false),
        ];
        for (i, (target, may_succeed)) in cases.iter().enumerate() {
            let root = world.path().join(format!("root{i}"));
            fs::create_dir_all(root.join("etc/systemd")).unwrap();
            fs::create_dir_all(root.join("lib/systemd/system")).unwrap();
            symlink(target, root.join("etc/systemd/system")).unwrap();
            symlink("system", root.join("etc/systemd/loop")).unwrap();
            // A managed file that is a link to this machine's file, by absolute path.
            symlink(
                format!("{abs_outside}/etc/machine-id"),
                root.join("etc/machine-id"),
            )
            .unwrap();
            let mut fs_root = DirectoryRoot::open(&root, false).unwrap();
            let linked = fs_root.symlink(&unit, &wants);
            assert_eq!(linked.is_ok(), *may_succeed, "{target}: {linked:?}");
            if *may_succeed {
                // Where the link leads inside the root: its own top directory.
                assert_eq!(
                    fs::read_link(root.join("sysinit.target.wants/systemd-timesyncd.service"))
                        .unwrap(),
                    Path::new(unit.as_str())
                );
            }
            if let Err(e) = linked {
                let text = e.to_string();
                assert!(
                    text.contains("refusing to create")
                        || text.contains("nest too deep")
                        || text.contains("does not exist"),
                    "{target}: {text}"
                );
            }
            // Reads do not leave the root either.
            assert!(fs_root.read(&gp("/etc/machine-id")).is_err(), "{target}");
            // A write replaces the link itself, never what it points to.
            fs_root
                .write(&gp("/etc/machine-id"), b"", 0o444, None)
                .unwrap();
            assert_eq!(fs::read(root.join("etc/machine-id")).unwrap(), b"");
            let _ = fs_root.remove(&gp(
                "/etc/systemd/system/multi-user.target.wants/chrony.service",
            ));
        }
        let after: BTreeMap<_, _> = tree(world.path())
            .into_iter()
            .filter(|(path, _)| {
                !path
                    .components()
                    .next()
                    .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with("root"))
            })
            .collect();
        assert_eq!(after, sentinel);
    }

    #[test]
    fn refuses_this_machines_root() {
        let err = DirectoryRoot::open(Path::new("/"), true).err().unwrap();
        assert!(matches!(err, RootError::ThisMachine { .. }), "{err}");
        let err = DirectoryRoot::open(Path::new("/usr/.."), false)
            .err()
            .unwrap();
        assert!(matches!(err, RootError::ThisMachine { .. }), "{err}");
    }
}
