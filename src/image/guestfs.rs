//! A disk image (qcow2 or raw, partitioned or not) opened through libguestfs.
//!
//! One `guestfish` process per image starts the libguestfs appliance once; clockprov then talks
//! to it over a pipe, one command at a time, each followed by an `echo` marker so that the end of
//! every answer is known. guestfish exits at the first failing command when its input is not a
//! terminal, so an error shows up as the end of its output, and its stderr says why.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::image::rootfs::{Entry, RootError, RootFs, ensure_safe, parent_of, temp_name, unique};

/// The formats clockprov hands to libguestfs (never probed by qemu: a raw image whose first
/// bytes look like a qcow2 header must not be opened as one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ImageFormat::Raw => "raw",
            ImageFormat::Qcow2 => "qcow2",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{image}: no such file")]
    Missing { image: String },
    #[error(
        "{image}: the image is in use (locked by another process, e.g. a running VM); stop it first: {detail}"
    )]
    Locked { image: String, detail: String },
    #[error("{image}: unsupported image format {format:?} (clockprov bakes raw and qcow2 images)")]
    Format { image: String, format: String },
    #[error("{image}: cannot run {program}: {detail}")]
    Tool {
        image: String,
        program: &'static str,
        detail: String,
    },
    #[error("{image}: no Linux root file system found in the image")]
    NoRoot { image: String },
    #[error("{image}: several operating systems in one image ({roots}); clockprov bakes one")]
    SeveralRoots { image: String, roots: String },
}

impl From<ImageError> for RootError {
    fn from(e: ImageError) -> Self {
        RootError::Guestfs(e.to_string())
    }
}

fn is_lock_message(text: &str) -> bool {
    text.contains("lock") && (text.contains("Failed to get") || text.contains("another process"))
}

/// The image's format, as `qemu-img info` reads it. Fails if the image is locked by a running
/// VM, before any appliance is started.
///
/// # Errors
/// The file is missing, locked, of another format, or qemu-img cannot run.
pub fn probe(image: &Path) -> Result<ImageFormat, ImageError> {
    let name = image.display().to_string();
    if !image.exists() {
        return Err(ImageError::Missing { image: name });
    }
    let output = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(image)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| ImageError::Tool {
            image: name.clone(),
            program: "qemu-img",
            detail: e.to_string(),
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
    if !output.status.success() {
        if is_lock_message(&stderr) {
            return Err(ImageError::Locked {
                image: name,
                detail: stderr,
            });
        }
        return Err(ImageError::Tool {
            image: name,
            program: "qemu-img",
            detail: stderr,
        });
    }
    let info: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| ImageError::Tool {
            image: name.clone(),
            program: "qemu-img",
            detail: format!("unreadable answer: {e}"),
        })?;
    match info.get("format").and_then(serde_json::Value::as_str) {
        Some("raw") => Ok(ImageFormat::Raw),
        Some("qcow2") => Ok(ImageFormat::Qcow2),
        other => Err(ImageError::Format {
            image: name,
            format: other.unwrap_or("unknown").to_owned(),
        }),
    }
}

/// A disk image's root file system, through one guestfish process.
pub struct GuestfsRoot {
    image: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
    stderr: Option<JoinHandle<String>>,
    readonly: bool,
    commands: u64,
    /// A private directory on this machine for files to upload.
    staging: PathBuf,
}

impl GuestfsRoot {
    /// Start the appliance on `image` and mount its root file system (read-only when
    /// `readonly`).
    ///
    /// # Errors
    /// The image is missing, locked, unreadable, or holds no (or several) Linux roots.
    pub fn open(image: &Path, readonly: bool) -> Result<GuestfsRoot, RootError> {
        let format = probe(image)?;
        let name = image.display().to_string();
        let staging = std::env::temp_dir().join(format!(
            "clockprov-bake-{}-{}",
            std::process::id(),
            unique()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(|e| RootError::Guestfs(format!("{}: {e}", staging.display())))?;
        let mut command = Command::new("guestfish");
        command
            .arg(if readonly { "--ro" } else { "--rw" })
            .arg(format!("--format={}", format.as_str()))
            .arg("-a")
            .arg(image)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The libvirt backend needs a libvirt daemon; the direct one runs qemu itself.
        if std::env::var_os("LIBGUESTFS_BACKEND").is_none() {
            command.env("LIBGUESTFS_BACKEND", "direct");
        }
        let mut child = command.spawn().map_err(|e| ImageError::Tool {
            image: name.clone(),
            program: "guestfish",
            detail: format!("{e} (install libguestfs-tools)"),
        })?;
        let stdin = child.stdin.take();
        let (Some(stdout), Some(mut stderr_pipe)) = (child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RootError::Guestfs("guestfish: no pipes".to_owned()));
        };
        let stdout = BufReader::new(stdout);
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr_pipe.read_to_string(&mut text);
            text
        });
        let mut root = GuestfsRoot {
            image: name,
            child,
            stdin,
            stdout,
            stderr: Some(stderr),
            readonly,
            commands: 0,
            staging,
        };
        root.launch()?;
        Ok(root)
    }

    fn launch(&mut self) -> Result<(), RootError> {
        if let Err(e) = self.call("run") {
            let text = e.to_string();
            if is_lock_message(&text) {
                return Err(ImageError::Locked {
                    image: self.image.clone(),
                    detail: text,
                }
                .into());
            }
            return Err(e);
        }
        let roots = self.call("inspect-os")?;
        let roots: Vec<&str> = roots.iter().map(String::as_str).collect();
        let root = match roots[..] {
            [] => {
                return Err(ImageError::NoRoot {
                    image: self.image.clone(),
                }
                .into());
            }
            [one] => one.to_owned(),
            _ => {
                return Err(ImageError::SeveralRoots {
                    image: self.image.clone(),
                    roots: roots.join(", "),
                }
                .into());
            }
        };
        self.safe(&root)?;
        let verb = if self.readonly { "mount-ro" } else { "mount" };
        // The inspected root is what `/` is, whatever the image's fstab calls it (an fstab
        // written for the VM says /dev/vda, which is a whole partitioned disk here).
        self.call(&format!("{verb} {root} /"))?;
        let mut mounts: Vec<(String, String)> = self
            .call(&format!("inspect-get-mountpoints {root}"))?
            .iter()
            .filter_map(|line| line.split_once(": "))
            .filter(|(at, _)| *at != "/")
            .map(|(at, device)| (at.to_owned(), device.to_owned()))
            .collect();
        // Parents before children: /var before /var/lib.
        mounts.sort_by_key(|(at, _)| at.len());
        for (at, device) in mounts {
            self.safe(&at)?;
            self.safe(&device)?;
            // `-`: a mount that fails (a device the appliance does not have) does not end
            // guestfish; what bake touches is then read from the root file system.
            self.call(&format!("-{verb} {device} {at}"))?;
        }
        Ok(())
    }

    fn safe(&self, path: &str) -> Result<(), RootError> {
        ensure_safe(&self.image, path)
    }

    /// Run one guestfish command; its stdout lines.
    fn call(&mut self, command: &str) -> Result<Vec<String>, RootError> {
        self.commands += 1;
        let marker = format!("@@clockprov-{}", self.commands);
        tracing::debug!("{}: guestfish {command}", self.image);
        let sent = self.stdin.as_mut().map_or_else(
            || Err(std::io::ErrorKind::BrokenPipe.into()),
            |stdin| {
                stdin
                    .write_all(format!("{command}\necho {marker}\n").as_bytes())
                    .and_then(|()| stdin.flush())
            },
        );
        if sent.is_err() {
            return Err(self.died(command));
        }
        let mut lines = Vec::new();
        loop {
            let mut line = String::new();
            match self.stdout.read_line(&mut line) {
                Ok(0) | Err(_) => return Err(self.died(command)),
                Ok(_) => {}
            }
            let line = line.trim_end_matches('\n');
            if line == marker {
                return Ok(lines);
            }
            lines.push(line.to_owned());
        }
    }

    /// guestfish ended: collect why.
    fn died(&mut self, command: &str) -> RootError {
        self.stdin = None;
        let _ = self.child.wait();
        let stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        let reason = stderr
            .lines()
            .filter(|l| !l.trim().is_empty())
            .take(4)
            .collect::<Vec<_>>()
            .join("; ");
        let reason = reason
            .replace("libguestfs: error: ", "")
            .replace("*stdin*:", "line ");
        RootError::Guestfs(format!("{}: guestfish {command}: {reason}", self.image))
    }

    fn yes(&mut self, command: &str) -> Result<bool, RootError> {
        let out = self.call(command)?;
        Ok(out.first().is_some_and(|l| l == "true"))
    }
}

/// `lstatns` prints `st_mode: 33188` lines.
fn stat_field(lines: &[String], name: &str) -> Option<u32> {
    lines.iter().find_map(|l| {
        l.trim()
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(": "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .and_then(|v| u32::try_from(v).ok())
    })
}

impl RootFs for GuestfsRoot {
    fn describe(&self) -> String {
        self.image.clone()
    }

    fn lstat(&mut self, path: &str) -> Result<Entry, RootError> {
        self.safe(path)?;
        if self.yes(&format!("is-symlink {path}"))? {
            let target = self.call(&format!("readlink {path}"))?.join("\n");
            return Ok(Entry::Symlink { target });
        }
        if !self.yes(&format!("exists {path}"))? {
            return Ok(Entry::Absent);
        }
        if self.yes(&format!("is-dir {path}"))? {
            return Ok(Entry::Dir);
        }
        if !self.yes(&format!("is-file {path}"))? {
            return Ok(Entry::Other);
        }
        let stat = self.call(&format!("lstatns {path}"))?;
        match (
            stat_field(&stat, "st_mode"),
            stat_field(&stat, "st_uid"),
            stat_field(&stat, "st_gid"),
        ) {
            (Some(mode), Some(uid), Some(gid)) => Ok(Entry::File {
                mode: mode & 0o7777,
                uid,
                gid,
            }),
            _ => Err(RootError::Guestfs(format!(
                "{}: {path}: unexpected lstatns output",
                self.image
            ))),
        }
    }

    fn resolve(&mut self, path: &str) -> Result<Option<String>, RootError> {
        self.safe(path)?;
        if !self.yes(&format!("exists {path}"))? {
            return Ok(None);
        }
        Ok(self.call(&format!("realpath {path}"))?.into_iter().next())
    }

    fn read(&mut self, path: &str) -> Result<Vec<u8>, RootError> {
        self.safe(path)?;
        let text: String = self.call(&format!("base64-out {path} -"))?.concat();
        BASE64
            .decode(text.trim())
            .map_err(|e| RootError::Guestfs(format!("{}: {path}: bad base64: {e}", self.image)))
    }

    fn list(&mut self, dir: &str) -> Result<Vec<String>, RootError> {
        self.safe(dir)?;
        if !self.yes(&format!("is-dir {dir}"))? {
            return Ok(Vec::new());
        }
        let mut names = self.call(&format!("ls {dir}"))?;
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
        self.safe(path)?;
        let local = self.staging.join(format!("upload-{}", unique()));
        let local_text = local.display().to_string();
        self.safe(&local_text)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&local)
            .map_err(|e| RootError::Guestfs(format!("{local_text}: {e}")))?;
        file.write_all(content)
            .map_err(|e| RootError::Guestfs(format!("{local_text}: {e}")))?;
        drop(file);
        let temp = temp_name(parent_of(path));
        let result = (|| {
            self.call(&format!("upload {local_text} {temp}"))?;
            self.call(&format!("chown 0 0 {temp}"))?;
            self.call(&format!("chmod 0{mode:o} {temp}"))?;
            if let Some(backup) = backup {
                self.safe(backup)?;
                self.call(&format!("ln {path} {backup}"))?;
            }
            self.call(&format!("rename {temp} {path}"))?;
            self.call("sync").map(drop)
        })();
        let _ = std::fs::remove_file(&local);
        result
    }

    fn symlink(&mut self, target: &str, link: &str) -> Result<(), RootError> {
        self.safe(target)?;
        self.safe(link)?;
        let temp = temp_name(parent_of(link));
        self.call(&format!("mkdir-p {}", parent_of(link)))?;
        self.call(&format!("ln-s {target} {temp}"))?;
        self.call(&format!("rename {temp} {link}"))?;
        Ok(())
    }

    fn remove(&mut self, path: &str) -> Result<(), RootError> {
        self.safe(path)?;
        self.call(&format!("rm {path}"))?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), RootError> {
        if !self.readonly {
            self.call("sync")?;
            self.call("umount-all")?;
        }
        self.call("shutdown")?;
        self.stdin = None; // EOF: guestfish exits
        let status = self
            .child
            .wait()
            .map_err(|e| RootError::Guestfs(format!("{}: guestfish: {e}", self.image)))?;
        if !status.success() {
            return Err(self.died("exit"));
        }
        Ok(())
    }
}

impl Drop for GuestfsRoot {
    fn drop(&mut self) {
        // An error path: make sure no appliance outlives us.
        // Closing guestfish's input makes it shut the appliance down itself; a SIGKILL would
        // leave the appliance's qemu running.
        self.stdin = None;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while matches!(self.child.try_wait(), Ok(None)) {
            if std::time::Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}
