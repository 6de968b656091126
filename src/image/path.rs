//! Paths inside an offline root (`/etc/systemd/timesyncd.conf` of the image, not of this
//! machine).
//!
//! A [`GuestPath`] is checked once, when it is made: absolute, normalized (no `.`, `..` or empty
//! components, no trailing slash), at most `PATH_MAX` bytes, and made only of characters that
//! guestfish reads as one plain word (`[A-Za-z0-9._@:+/-]`: no quoting, no control characters,
//! nothing its parser treats specially). Every [`crate::image::rootfs::RootFs`] method and every
//! guestfish command takes one, so no method has to remember to check its argument, and a
//! directory root resolves it one plain name at a time.

use std::borrow::Cow;
use std::fmt;

use serde::{Serialize, Serializer};

/// Linux's `PATH_MAX`, including the terminating NUL.
const PATH_MAX: usize = 4096;

/// Why a string is not a [`GuestPath`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuestPathError {
    #[error("{path:?} is not an absolute path")]
    Relative { path: String },
    #[error("{path:?} is not normalized (an empty, `.` or `..` component, or a trailing `/`)")]
    NotNormal { path: String },
    #[error("{path:?} has characters outside [A-Za-z0-9._@:+/-]")]
    Characters { path: String },
    #[error("a path of {len} bytes is longer than PATH_MAX")]
    TooLong { len: usize },
    #[error("{name:?} is not a single file name")]
    BadName { name: String },
}

/// May `byte` appear in a guest path? guestfish splits its input on white space and treats
/// quotes, backslashes, `#`, `!`, `<`, `|` and others specially; none of these is allowed.
const fn is_path_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'@' | b':' | b'+' | b'/' | b'-')
}

/// The check behind [`GuestPath::new`], usable in constants.
const fn check(path: &[u8]) -> Result<(), Problem> {
    if path.is_empty() || path[0] != b'/' {
        return Err(Problem::Relative);
    }
    if path.len() >= PATH_MAX {
        return Err(Problem::TooLong);
    }
    if path.len() == 1 {
        return Ok(());
    }
    if path[path.len() - 1] == b'/' {
        return Err(Problem::NotNormal);
    }
    let mut i = 0;
    // `start` is the index of the current component's first byte.
    let mut start = 1;
    while i < path.len() {
        let byte = path[i];
        if !is_path_byte(byte) {
            return Err(Problem::Characters);
        }
        if i > 0 && byte == b'/' {
            if bad_component(path, start, i) {
                return Err(Problem::NotNormal);
            }
            start = i + 1;
        }
        i += 1;
    }
    if bad_component(path, start, path.len()) {
        return Err(Problem::NotNormal);
    }
    Ok(())
}

/// Is `path[start..end]` empty, `.` or `..`?
const fn bad_component(path: &[u8], start: usize, end: usize) -> bool {
    let len = end - start;
    len == 0
        || (len == 1 && path[start] == b'.')
        || (len == 2 && path[start] == b'.' && path[start + 1] == b'.')
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    Relative,
    NotNormal,
    Characters,
    TooLong,
}

/// An absolute, normalized path inside an offline root, safe as one guestfish word.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GuestPath(Cow<'static, str>);

impl GuestPath {
    /// The root directory, `/`.
    pub const ROOT: GuestPath = GuestPath::constant("/");

    /// A path known when the program is built; a bad one does not compile.
    ///
    /// # Panics
    /// At compile time, in a constant, when `path` is not a valid guest path.
    #[must_use]
    pub const fn constant(path: &'static str) -> GuestPath {
        assert!(check(path.as_bytes()).is_ok(), "not a valid guest path");
        GuestPath(Cow::Borrowed(path))
    }

    /// Check `path`.
    ///
    /// # Errors
    /// It is relative, not normalized, too long, or has a character outside
    /// `[A-Za-z0-9._@:+/-]`.
    pub fn new(path: &str) -> Result<GuestPath, GuestPathError> {
        match check(path.as_bytes()) {
            Ok(()) => Ok(GuestPath(Cow::Owned(path.to_owned()))),
            Err(problem) => Err(match problem {
                Problem::Relative => GuestPathError::Relative {
                    path: path.to_owned(),
                },
                Problem::NotNormal => GuestPathError::NotNormal {
                    path: path.to_owned(),
                },
                Problem::Characters => GuestPathError::Characters {
                    path: path.to_owned(),
                },
                Problem::TooLong => GuestPathError::TooLong { len: path.len() },
            }),
        }
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[must_use]
    pub fn is_root(&self) -> bool {
        self.0 == "/"
    }

    /// The directory holding this path (`/` for `/` itself and for top-level names).
    #[must_use]
    pub fn parent(&self) -> GuestPath {
        match self.0.rfind('/') {
            Some(0) | None => GuestPath::ROOT,
            // A prefix of a normalized path that ends before a `/` is normalized too.
            Some(i) => GuestPath(Cow::Owned(self.0[..i].to_owned())),
        }
    }

    /// The last component (empty for `/`).
    #[must_use]
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }

    /// The components, in order (none for `/`).
    #[must_use]
    pub fn components(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.0.split('/').filter(|c| !c.is_empty())
    }

    /// This directory's entry `name` (one component: no `/`).
    ///
    /// # Errors
    /// `name` is not one valid component, or the result is too long.
    pub fn join(&self, name: &str) -> Result<GuestPath, GuestPathError> {
        if name.is_empty() || name.contains('/') || name == "." || name == ".." {
            return Err(GuestPathError::BadName {
                name: name.to_owned(),
            });
        }
        let joined = if self.is_root() {
            format!("/{name}")
        } else {
            format!("{}/{name}", self.0)
        };
        GuestPath::new(&joined)
    }
}

impl fmt::Display for GuestPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for GuestPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl AsRef<str> for GuestPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for GuestPath {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for GuestPath {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn accepts_and_refuses() {
        for good in [
            "/",
            "/etc",
            "/etc/systemd/timesyncd.conf",
            "/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service",
            "/var/lib/chrony/192.0.2.1.nts",
            "/etc/systemd/system/getty@tty1.service",
            "/..x/.y/z..",
        ] {
            assert_eq!(GuestPath::new(good).unwrap().as_str(), good);
        }
        for (bad, why) in [
            ("", "is not an absolute path"),
            ("etc/x", "is not an absolute path"),
            ("//etc", "not normalized"),
            ("/etc/", "not normalized"),
            ("/etc//x", "not normalized"),
            ("/etc/./x", "not normalized"),
            ("/etc/../../x", "not normalized"),
            ("/..", "not normalized"),
            ("/etc/x y", "characters outside"),
            ("/etc/\"x", "characters outside"),
            ("/etc/x\nrm", "characters outside"),
            ("/etc/x\\", "characters outside"),
            ("/etc/é", "characters outside"),
            ("/etc/#x", "characters outside"),
        ] {
            let err = GuestPath::new(bad).unwrap_err().to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        let long = format!("/{}", "a".repeat(PATH_MAX));
        assert!(matches!(
            GuestPath::new(&long),
            Err(GuestPathError::TooLong { .. })
        ));
    }

    #[test]
    fn parents_names_and_joins() {
        let unit = GuestPath::new("/etc/machine-id").unwrap();
        assert_eq!(unit.parent(), GuestPath::new("/etc").unwrap());
        assert_eq!(unit.parent().parent(), GuestPath::ROOT);
        assert_eq!(GuestPath::ROOT.parent(), GuestPath::ROOT);
        assert_eq!(unit.file_name(), "machine-id");
        assert_eq!(GuestPath::ROOT.file_name(), "");
        assert_eq!(
            unit.components().collect::<Vec<_>>(),
            vec!["etc", "machine-id"]
        );
        assert_eq!(GuestPath::ROOT.components().count(), 0);
        assert_eq!(GuestPath::ROOT.join("lib").unwrap(), "/lib");
        assert_eq!(unit.parent().join("os-release").unwrap(), "/etc/os-release");
        for bad in ["", ".", "..", "a/b", "a b"] {
            assert!(GuestPath::ROOT.join(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Any string either is refused or gives a path whose parent, components and joins are
        /// guest paths again; nothing panics.
        #[test]
        fn any_string_is_checked_without_panicking(text in "\\PC{0,40}|[/a-z.]{0,24}") {
            if let Ok(path) = GuestPath::new(&text) {
                prop_assert!(path.as_str().starts_with('/'));
                prop_assert!(GuestPath::new(path.parent().as_str()).is_ok());
                let rebuilt = path
                    .components()
                    .try_fold(GuestPath::ROOT, |dir, name| dir.join(name));
                prop_assert_eq!(rebuilt.as_ref(), Ok(&path));
                prop_assert!(path.components().all(|c| c != "." && c != ".."));
            }
        }

        #[test]
        fn bytes_outside_the_set_are_always_refused(
            head in "[/a-z]{0,8}",
            byte in any::<char>().prop_filter("outside the set", |c| !c.is_ascii() || !is_path_byte(*c as u8)),
            tail in "[a-z/]{0,8}",
        ) {
            let text = format!("/{head}{byte}{tail}");
            prop_assert!(GuestPath::new(&text).is_err());
        }
    }
}
