//! A disk image (qcow2 or raw, partitioned or not) opened through libguestfs.
//!
//! One `guestfish` process per image starts the libguestfs appliance once; clockprov then talks
//! to it over a pipe, one command at a time, each followed by an `echo` of a marker that the
//! image cannot guess (a random nonce and the command's number), so that the end of every answer
//! is known and no file name or link target in the image can fake it. guestfish exits at the
//! first failing command when its input is not a terminal, so an error shows up as the end of
//! its output, and its stderr says why.
//!
//! Every command is built by [`command_line`] from a verb written in this file and arguments
//! that are [`GuestPath`]s or numbers: each is one plain word for guestfish's parser, so nothing
//! read from an image or an inventory can add a word or a command.
//!
//! Where `/dev/kvm` exists but does not work (a nested or restricted VM), libguestfs's
//! appliance dies as it starts. [`GuestfsRoot::open`] then tries once more with software
//! emulation (`force_tcg`), and says so once per run.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use crate::image::path::GuestPath;
use crate::image::rootfs::{Entry, RootError, RootFs, temp_name, unique};

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

    /// The format libvirt or qemu-img calls `name`, if clockprov bakes it.
    #[must_use]
    pub fn from_name(name: &str) -> Option<ImageFormat> {
        match name {
            "raw" => Some(ImageFormat::Raw),
            "qcow2" => Some(ImageFormat::Qcow2),
            _ => None,
        }
    }
}

/// One disk of an image, and its format when known (a libvirt domain declares it); else it is
/// read with `qemu-img info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    pub format: Option<ImageFormat>,
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
    #[error(
        "{image}: guestfish answered {answer:?} to {command}, which clockprov does not understand"
    )]
    Reply {
        image: String,
        command: String,
        answer: String,
    },
}

impl From<ImageError> for RootError {
    fn from(e: ImageError) -> Self {
        RootError::Guestfs(e.to_string())
    }
}

fn is_lock_message(text: &str) -> bool {
    text.contains("lock") && (text.contains("Failed to get") || text.contains("another process"))
}

/// Did the appliance die as it started (what broken KVM looks like), rather than fail for a
/// reason that software emulation would not change (a locked or unreadable disk)?
fn is_launch_death(text: &str) -> bool {
    !is_lock_message(text)
        && (text.contains("appliance closed the connection unexpectedly")
            || text.contains("child process died unexpectedly")
            || text.to_ascii_lowercase().contains("kvm"))
}

/// The first thing libguestfs said about a failed launch (`appliance closed the connection
/// unexpectedly`), without the advice that follows it.
fn launch_reason(error: &str) -> &str {
    let after = error.split_once(" run: ").map_or(error, |(_, rest)| rest);
    let after = after.strip_prefix("line 1: ").unwrap_or(after);
    after
        .split("; ")
        .next()
        .unwrap_or(after)
        .trim_end_matches('.')
}

/// The environment variable that makes libguestfs use software emulation.
pub const BACKEND_SETTINGS: &str = "LIBGUESTFS_BACKEND_SETTINGS";

/// Set once the appliance died under KVM in this process: later images go straight to TCG.
static KVM_FAILED: AtomicBool = AtomicBool::new(false);

/// Wait until a qemu left by a killed launch is gone: libguestfs's recovery process polls
/// every 2 s for guestfish and then stops qemu, whose lock on `disks` the retry needs (seen:
/// a retry at once fails with "appliance closed the connection unexpectedly"). Then (at most
/// 30 s) until no qemu holds a lock on any of `disks`.
fn wait_for_unlocked(disks: &[Disk]) {
    std::thread::sleep(std::time::Duration::from_secs(5));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline
        && disks
            .iter()
            .any(|d| matches!(probe(&d.path), Err(ImageError::Locked { .. })))
    {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// How long an appliance may take to start under KVM before it is taken for one that hangs.
const KVM_LAUNCH_LIMIT: std::time::Duration = std::time::Duration::from_secs(90);

/// Kills guestfish (`pid`, not yet reaped by us, so not reused) if the launch outlasts
/// [`KVM_LAUNCH_LIMIT`].
struct LaunchWatchdog {
    done: std::sync::Arc<AtomicBool>,
    thread: JoinHandle<bool>,
}

impl LaunchWatchdog {
    fn start(pid: u32) -> LaunchWatchdog {
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + KVM_LAUNCH_LIMIT;
            while std::time::Instant::now() < deadline {
                if flag.load(Ordering::Acquire) {
                    return false;
                }
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            if flag.load(Ordering::Acquire) {
                return false;
            }
            let Ok(pid) = libc::pid_t::try_from(pid) else {
                return false;
            };
            // SAFETY: kill(2) with a pid of our own unreaped child and a constant signal.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            true
        });
        LaunchWatchdog { done, thread }
    }

    /// Stop watching; whether it fired.
    fn stop(self) -> bool {
        self.done.store(true, Ordering::Release);
        self.thread.join().unwrap_or(false)
    }
}

/// `LIBGUESTFS_BACKEND_SETTINGS` with `force_tcg` added (settings are colon-separated).
fn settings_with_tcg(current: Option<&str>) -> String {
    match current {
        Some(current) if !current.is_empty() => format!("{current}:force_tcg"),
        _ => "force_tcg".to_owned(),
    }
}

fn tcg_forced(current: Option<&str>) -> bool {
    current.is_some_and(|s| s.split(':').any(|setting| setting == "force_tcg"))
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
    let format = info
        .get("format")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("unknown");
    ImageFormat::from_name(format).ok_or_else(|| ImageError::Format {
        image: name,
        format: format.to_owned(),
    })
}

/// One argument of a guestfish command. Only checked paths and numbers: each is one word that
/// guestfish's parser takes as it is.
#[derive(Debug, Clone, Copy)]
enum Arg<'a> {
    /// A path in the image, or a device of the appliance (`/dev/sda1`).
    Path(&'a GuestPath),
    /// A path on this machine (an upload's source), checked by the same rules.
    Local(&'a GuestPath),
    /// A user or group id.
    Id(u32),
    /// A file mode, written in octal.
    Mode(u32),
    /// An optional argument written in this file (`followsymlinks:true`).
    Flag(&'static str),
}

/// The text of one guestfish command. `verb` is a literal of this file; a leading `-` tells
/// guestfish to go on when the command fails.
fn command_line(verb: &'static str, args: &[Arg<'_>]) -> String {
    use std::fmt::Write as _;
    let mut line = verb.to_owned();
    for arg in args {
        let _ = match arg {
            Arg::Path(path) | Arg::Local(path) => write!(line, " {path}"),
            Arg::Id(id) => write!(line, " {id}"),
            Arg::Mode(mode) => write!(line, " 0{:o}", mode & 0o7777),
            Arg::Flag(flag) => write!(line, " {flag}"),
        };
    }
    line
}

/// Collects one answer: the lines guestfish prints until the marker that follows the command.
#[derive(Debug, Default)]
pub struct Answer {
    lines: Vec<String>,
}

impl Answer {
    /// Take one line of output (without its newline, any bytes). Returns the answer when `line`
    /// is the marker.
    pub fn feed(&mut self, line: &[u8], marker: &str) -> Option<Vec<String>> {
        if line == marker.as_bytes() {
            return Some(std::mem::take(&mut self.lines));
        }
        self.lines.push(String::from_utf8_lossy(line).into_owned());
        None
    }
}

/// `true` / `false`, as the `is-*` and `exists` commands print them.
#[must_use]
pub fn parse_bool(lines: &[String]) -> Option<bool> {
    match lines {
        [one] if one.trim() == "true" => Some(true),
        [one] if one.trim() == "false" => Some(false),
        _ => None,
    }
}

/// Mode, owner and group from `lstatns` (`st_mode: 33188` lines).
#[must_use]
pub fn parse_lstatns(lines: &[String]) -> Option<(u32, u32, u32)> {
    let field = |name: &str| {
        lines.iter().find_map(|l| {
            l.trim()
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(": "))
                .and_then(|v| v.trim().parse::<i64>().ok())
                .and_then(|v| u32::try_from(v).ok())
        })
    };
    Some((field("st_mode")?, field("st_uid")?, field("st_gid")?))
}

/// `inspect-get-mountpoints`: `MOUNTPOINT: DEVICE` lines, parents before children, `/` left
/// out (it is mounted first). Lines that are not a checked path pair are refused.
///
/// # Errors
/// A line is not `PATH: DEVICE`, or either is not a [`GuestPath`].
pub fn parse_mountpoints(lines: &[String]) -> Result<Vec<(GuestPath, GuestPath)>, String> {
    let mut mounts = Vec::new();
    for line in lines {
        let (at, device) = line
            .split_once(": ")
            .ok_or_else(|| format!("not a mount point: {line:?}"))?;
        let at = GuestPath::new(at).map_err(|e| e.to_string())?;
        let device = GuestPath::new(device).map_err(|e| e.to_string())?;
        if !at.is_root() {
            mounts.push((at, device));
        }
    }
    mounts.sort_by_key(|(at, _)| at.as_str().len());
    Ok(mounts)
}

/// A file's content from `base64-out` (the lines of one base64 text).
///
/// # Errors
/// It is not base64.
pub fn decode_base64(lines: &[String]) -> Result<Vec<u8>, base64::DecodeError> {
    let text: String = lines.concat();
    BASE64.decode(text.trim())
}

/// A marker no image can guess: 128 random bits for this session.
fn session_nonce() -> String {
    use ring::rand::SecureRandom as _;
    let mut bytes = [0u8; 16];
    // Should the system's random source fail, the process id and a counter still make the
    // marker unique to this run; it is then only as unguessable as those.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        bytes[..8].copy_from_slice(&u64::from(std::process::id()).to_le_bytes());
        bytes[8..].copy_from_slice(&unique().to_le_bytes());
    }
    bytes.iter().fold(String::new(), |mut hex, b| {
        use std::fmt::Write as _;
        let _ = write!(hex, "{b:02x}");
        hex
    })
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
    nonce: String,
    /// A private directory on this machine for files to upload.
    staging: PathBuf,
}

/// Why a start failed: the appliance died at launch (worth a retry under TCG), or anything else.
enum StartError {
    LaunchDied(RootError),
    Other(RootError),
}

impl GuestfsRoot {
    /// Start the appliance on the disks of one image and mount its root file system (read-only
    /// when `readonly`). `name` is how messages call the image.
    ///
    /// # Errors
    /// A disk is missing, locked, unreadable, or the image holds no (or several) Linux roots.
    pub fn open(name: &str, disks: &[Disk], readonly: bool) -> Result<GuestfsRoot, RootError> {
        let mut formats = Vec::new();
        for disk in disks {
            // Also the lock check, before any appliance starts.
            let probed = probe(&disk.path)?;
            formats.push(disk.format.unwrap_or(probed));
        }
        let settings = std::env::var(BACKEND_SETTINGS).ok();
        let forced = tcg_forced(settings.as_deref());
        let skip_kvm = !forced && KVM_FAILED.load(Ordering::Relaxed);
        match Self::start(name, disks, &formats, readonly, skip_kvm) {
            Ok(root) => Ok(root),
            Err(StartError::LaunchDied(e)) if !forced && !skip_kvm => {
                if !KVM_FAILED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{name}: libguestfs's appliance died as it started ({}), as it does where /dev/kvm exists but does not work; trying again with software emulation (TCG). Set {BACKEND_SETTINGS}=force_tcg to skip the first try",
                        launch_reason(&e.to_string())
                    );
                }
                // A qemu killed by the launch watchdog goes a moment later (libguestfs's
                // recovery process polls): its image lock must be gone before the retry.
                wait_for_unlocked(disks);
                Self::start(name, disks, &formats, readonly, true).map_err(|e| match e {
                    StartError::LaunchDied(e) | StartError::Other(e) => e,
                })
            }
            Err(StartError::LaunchDied(e) | StartError::Other(e)) => Err(e),
        }
    }

    fn start(
        name: &str,
        disks: &[Disk],
        formats: &[ImageFormat],
        readonly: bool,
        force_tcg: bool,
    ) -> Result<GuestfsRoot, StartError> {
        let staging = staging_dir().map_err(StartError::Other)?;
        let mut command = Command::new("guestfish");
        command.arg(if readonly { "--ro" } else { "--rw" });
        for (disk, format) in disks.iter().zip(formats) {
            command
                .arg(format!("--format={}", format.as_str()))
                .arg("-a")
                .arg(&disk.path);
        }
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // The libvirt backend needs a libvirt daemon; the direct one runs qemu itself.
        if std::env::var_os("LIBGUESTFS_BACKEND").is_none() {
            command.env("LIBGUESTFS_BACKEND", "direct");
        }
        if force_tcg {
            command.env(
                BACKEND_SETTINGS,
                settings_with_tcg(std::env::var(BACKEND_SETTINGS).ok().as_deref()),
            );
        }
        let spawned = command.spawn().map_err(|e| {
            StartError::Other(
                ImageError::Tool {
                    image: name.to_owned(),
                    program: "guestfish",
                    detail: format!("{e} (install libguestfs-tools)"),
                }
                .into(),
            )
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&staging);
                return Err(e);
            }
        };
        let stdin = child.stdin.take();
        let (Some(stdout), Some(mut stderr_pipe)) = (child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&staging);
            return Err(StartError::Other(RootError::Guestfs(
                "guestfish: no pipes".to_owned(),
            )));
        };
        let stderr = std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = stderr_pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let mut root = GuestfsRoot {
            image: name.to_owned(),
            child,
            stdin,
            stdout: BufReader::new(stdout),
            stderr: Some(stderr),
            readonly,
            commands: 0,
            nonce: session_nonce(),
            staging,
        };
        // Under KVM the appliance starts in seconds; where /dev/kvm exists but the nested
        // virtualisation under it does not work, it may spin forever instead of dying (seen on
        // this project's CI machines). A watchdog kills guestfish then (libguestfs's recovery
        // process stops qemu once guestfish is reaped), and the start counts as a launch death: tried again
        // under TCG. Under TCG there is no limit (a slow machine is not a broken one).
        let watchdog = (!force_tcg).then(|| LaunchWatchdog::start(root.child.id()));
        let launched = root.call("run", &[]);
        let timed_out = watchdog.is_some_and(LaunchWatchdog::stop);
        if let Err(e) = launched {
            if timed_out {
                return Err(StartError::LaunchDied(RootError::Guestfs(format!(
                    "guestfish run: the appliance did not start within {} s under KVM",
                    KVM_LAUNCH_LIMIT.as_secs()
                ))));
            }
            let text = e.to_string();
            if is_lock_message(&text) {
                return Err(StartError::Other(
                    ImageError::Locked {
                        image: root.image.clone(),
                        detail: text,
                    }
                    .into(),
                ));
            }
            return Err(if is_launch_death(&text) {
                StartError::LaunchDied(e)
            } else {
                StartError::Other(e)
            });
        }
        root.mount().map_err(StartError::Other)?;
        Ok(root)
    }

    /// Find the image's one Linux root and mount it, then its other file systems.
    fn mount(&mut self) -> Result<(), RootError> {
        let roots = self.call("inspect-os", &[])?;
        let root = match &roots[..] {
            [] => {
                return Err(ImageError::NoRoot {
                    image: self.image.clone(),
                }
                .into());
            }
            [one] => GuestPath::new(one).map_err(|e| self.unexpected("inspect-os", &e))?,
            _ => {
                return Err(ImageError::SeveralRoots {
                    image: self.image.clone(),
                    roots: roots.join(", "),
                }
                .into());
            }
        };
        let verb = if self.readonly { "mount-ro" } else { "mount" };
        // The inspected root is what `/` is, whatever the image's fstab calls it (an fstab
        // written for the VM says /dev/vda, which is a whole partitioned disk here).
        self.call(verb, &[Arg::Path(&root), Arg::Path(&GuestPath::ROOT)])?;
        let lines = self.call("inspect-get-mountpoints", &[Arg::Path(&root)])?;
        let mounts = parse_mountpoints(&lines)
            .map_err(|e| self.unexpected("inspect-get-mountpoints", &e))?;
        // `-`: a mount that fails (a device the appliance does not have) does not end
        // guestfish; what bake touches is then read from the root file system.
        let tolerant = if self.readonly { "-mount-ro" } else { "-mount" };
        for (at, device) in mounts {
            self.call(tolerant, &[Arg::Path(&device), Arg::Path(&at)])?;
        }
        Ok(())
    }

    fn unexpected(&self, command: &str, answer: &dyn std::fmt::Display) -> RootError {
        ImageError::Reply {
            image: self.image.clone(),
            command: command.to_owned(),
            answer: answer.to_string(),
        }
        .into()
    }

    /// Run one guestfish command; its stdout lines.
    fn call(&mut self, verb: &'static str, args: &[Arg<'_>]) -> Result<Vec<String>, RootError> {
        let command = command_line(verb, args);
        self.commands += 1;
        let marker = format!("@@clockprov-{}-{}", self.nonce, self.commands);
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
            return Err(self.died(&command));
        }
        let mut answer = Answer::default();
        let mut line = Vec::new();
        loop {
            line.clear();
            match self.stdout.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return Err(self.died(&command)),
                Ok(_) => {}
            }
            if line.last() == Some(&b'\n') {
                line.pop();
            }
            if let Some(lines) = answer.feed(&line, &marker) {
                return Ok(lines);
            }
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

    fn yes(&mut self, verb: &'static str, args: &[Arg<'_>]) -> Result<bool, RootError> {
        let lines = self.call(verb, args)?;
        parse_bool(&lines).ok_or_else(|| self.unexpected(verb, &lines.join("\n")))
    }
}

/// A private directory for uploads, whose path guestfish reads as one word.
fn staging_dir() -> Result<PathBuf, RootError> {
    let name = format!("clockprov-bake-{}-{}", std::process::id(), unique());
    let mut base = std::env::temp_dir();
    if GuestPath::new(&base.join(&name).display().to_string()).is_err() {
        base = PathBuf::from("/tmp");
    }
    let staging = base.join(name);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .map_err(|e| RootError::Guestfs(format!("{}: {e}", staging.display())))?;
    Ok(staging)
}

impl RootFs for GuestfsRoot {
    fn describe(&self) -> String {
        self.image.clone()
    }

    fn readonly(&self) -> bool {
        self.readonly
    }

    fn check_dir(&mut self, _dir: &GuestPath, _create: bool) -> Result<(), RootError> {
        // Inside the appliance every link resolves within the image, and `mkdir-p` makes what
        // is missing: nothing to refuse beforehand.
        Ok(())
    }

    fn lstat(&mut self, path: &GuestPath) -> Result<Entry, RootError> {
        let at = [Arg::Path(path)];
        if self.yes("is-symlink", &at)? {
            let target = self.call("readlink", &at)?.join("\n");
            return Ok(Entry::Symlink { target });
        }
        if !self.yes("exists", &at)? {
            return Ok(Entry::Absent);
        }
        if self.yes("is-dir", &at)? {
            return Ok(Entry::Dir);
        }
        if !self.yes("is-file", &at)? {
            return Ok(Entry::Other);
        }
        let stat = self.call("lstatns", &at)?;
        match parse_lstatns(&stat) {
            Some((mode, uid, gid)) => Ok(Entry::File {
                mode: mode & 0o7777,
                uid,
                gid,
            }),
            None => Err(self.unexpected("lstatns", &stat.join("\n"))),
        }
    }

    fn resolve(&mut self, path: &GuestPath) -> Result<Option<GuestPath>, RootError> {
        if !self.yes("exists", &[Arg::Path(path)])? {
            return Ok(None);
        }
        let lines = self.call("realpath", &[Arg::Path(path)])?;
        match &lines[..] {
            [one] => GuestPath::new(one)
                .map(Some)
                .map_err(|e| self.unexpected("realpath", &e)),
            _ => Err(self.unexpected("realpath", &lines.join("\n"))),
        }
    }

    fn read(&mut self, path: &GuestPath) -> Result<Vec<u8>, RootError> {
        let lines = self.call("base64-out", &[Arg::Path(path), Arg::Flag("-")])?;
        decode_base64(&lines)
            .map_err(|e| RootError::Guestfs(format!("{}: {path}: bad base64: {e}", self.image)))
    }

    fn list(&mut self, dir: &GuestPath) -> Result<Vec<String>, RootError> {
        if !self.yes(
            "is-dir",
            &[Arg::Path(dir), Arg::Flag("followsymlinks:true")],
        )? {
            return Ok(Vec::new());
        }
        let mut names = self.call("ls", &[Arg::Path(dir)])?;
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
        if self.readonly {
            return Err(RootError::ReadOnly {
                root: self.image.clone(),
            });
        }
        let parent = path.parent();
        let path_err = |e: crate::image::path::GuestPathError| RootError::Path {
            root: self.image.clone(),
            source: e,
        };
        let backup = backup
            .map(|b| parent.join(b))
            .transpose()
            .map_err(path_err)?;
        let temp = parent.join(&temp_name()).map_err(path_err)?;
        let local = self.staging.join(format!("upload-{}", unique()));
        let local_text = local.display().to_string();
        let local_word = GuestPath::new(&local_text).map_err(path_err)?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&local)
            .map_err(|e| RootError::Guestfs(format!("{local_text}: {e}")))?;
        file.write_all(content)
            .map_err(|e| RootError::Guestfs(format!("{local_text}: {e}")))?;
        drop(file);
        let result = (|| {
            // A drop-in directory the image lacks (timesyncd.conf.d) is made first.
            self.call("mkdir-p", &[Arg::Path(&parent)])?;
            self.call("upload", &[Arg::Local(&local_word), Arg::Path(&temp)])?;
            self.call("chown", &[Arg::Id(0), Arg::Id(0), Arg::Path(&temp)])?;
            self.call("chmod", &[Arg::Mode(mode), Arg::Path(&temp)])?;
            if let Some(backup) = &backup {
                self.call("ln", &[Arg::Path(path), Arg::Path(backup)])?;
            }
            self.call("rename", &[Arg::Path(&temp), Arg::Path(path)])?;
            self.call("sync", &[]).map(drop)
        })();
        let _ = std::fs::remove_file(&local);
        result
    }

    fn symlink(&mut self, target: &GuestPath, link: &GuestPath) -> Result<(), RootError> {
        if self.readonly {
            return Err(RootError::ReadOnly {
                root: self.image.clone(),
            });
        }
        // Inside the appliance, the guest's links cannot lead anywhere but the image.
        let parent = link.parent();
        let temp = parent.join(&temp_name()).map_err(|e| RootError::Path {
            root: self.image.clone(),
            source: e,
        })?;
        self.call("mkdir-p", &[Arg::Path(&parent)])?;
        self.call("ln-s", &[Arg::Path(target), Arg::Path(&temp)])?;
        self.call("rename", &[Arg::Path(&temp), Arg::Path(link)])?;
        Ok(())
    }

    fn remove(&mut self, path: &GuestPath) -> Result<(), RootError> {
        if self.readonly {
            return Err(RootError::ReadOnly {
                root: self.image.clone(),
            });
        }
        self.call("rm", &[Arg::Path(path)])?;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), RootError> {
        if !self.readonly {
            self.call("sync", &[])?;
            self.call("umount-all", &[])?;
        }
        self.call("shutdown", &[])?;
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn commands_are_plain_words() {
        let path = GuestPath::new("/etc/systemd/timesyncd.conf").unwrap();
        assert_eq!(
            command_line("chmod", &[Arg::Mode(0o100_644), Arg::Path(&path)]),
            "chmod 0644 /etc/systemd/timesyncd.conf"
        );
        assert_eq!(
            command_line("chown", &[Arg::Id(0), Arg::Id(0), Arg::Path(&path)]),
            "chown 0 0 /etc/systemd/timesyncd.conf"
        );
        assert_eq!(
            command_line(
                "is-dir",
                &[Arg::Path(&path), Arg::Flag("followsymlinks:true")]
            ),
            "is-dir /etc/systemd/timesyncd.conf followsymlinks:true"
        );
    }

    #[test]
    fn replies() {
        let lines = |text: &str| text.lines().map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(parse_bool(&lines("true")), Some(true));
        assert_eq!(parse_bool(&lines("false")), Some(false));
        assert_eq!(parse_bool(&lines("true\nfalse")), None);
        assert_eq!(parse_bool(&lines("")), None);
        assert_eq!(
            parse_lstatns(&lines(
                "st_dev: 2049\nst_ino: 12\nst_mode: 33188\nst_nlink: 1\nst_uid: 0\nst_gid: 0\n"
            )),
            Some((33188, 0, 0))
        );
        assert_eq!(
            parse_lstatns(&lines("st_mode: -1\nst_uid: 0\nst_gid: 0")),
            None
        );
        let mounts =
            parse_mountpoints(&lines("/: /dev/sda2\n/var/lib: /dev/sda4\n/var: /dev/sda3"))
                .unwrap();
        assert_eq!(
            mounts
                .iter()
                .map(|(a, d)| format!("{a}={d}"))
                .collect::<Vec<_>>(),
            vec!["/var=/dev/sda3", "/var/lib=/dev/sda4"]
        );
        assert!(parse_mountpoints(&lines("/x: /dev/sda1; rm -rf /")).is_err());
        assert!(parse_mountpoints(&lines("nonsense")).is_err());
        assert_eq!(decode_base64(&lines("aGVs\nbG8=")).unwrap(), b"hello");
        assert!(decode_base64(&lines("not base64!")).is_err());
    }

    #[test]
    fn answers_end_at_the_marker_only() {
        let marker = "@@clockprov-00ff-3";
        let mut answer = Answer::default();
        assert_eq!(answer.feed(b"@@clockprov-00ff-2", marker), None);
        assert_eq!(answer.feed(b"\xff\xfe", marker), None);
        assert_eq!(
            answer.feed(marker.as_bytes(), marker),
            Some(vec![
                "@@clockprov-00ff-2".to_owned(),
                "\u{fffd}\u{fffd}".to_owned()
            ])
        );
    }

    #[test]
    fn kvm_fallback_settings() {
        assert_eq!(settings_with_tcg(None), "force_tcg");
        assert_eq!(settings_with_tcg(Some("")), "force_tcg");
        assert_eq!(
            settings_with_tcg(Some("network_bridge=br0")),
            "network_bridge=br0:force_tcg"
        );
        assert!(tcg_forced(Some("a:force_tcg")));
        assert!(!tcg_forced(Some("force_tcg_not")));
        assert!(!tcg_forced(None));
        assert!(is_launch_death(
            "*stdin*:1: libguestfs: error: appliance closed the connection unexpectedly."
        ));
        assert!(!is_launch_death(
            "qemu-img: Could not open 'x': Failed to get shared \"write\" lock; Is another process using the image?"
        ));
        assert!(!is_launch_death(
            "libguestfs: error: /x: No such file or directory"
        ));
    }

    proptest! {
        /// Whatever guestfish (or an image through it) prints, the parsers answer without
        /// panicking, and an answer ends only at its own marker.
        #[test]
        fn replies_never_panic(
            lines in proptest::collection::vec("\\PC{0,40}|st_(mode|uid|gid): -?[0-9]{1,12}|/[a-z/]{0,10}: /dev/[a-z0-9]{1,5}", 0..8),
            raw in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let _ = parse_bool(&lines);
            let _ = parse_lstatns(&lines);
            if let Ok(mounts) = parse_mountpoints(&lines) {
                for (at, device) in mounts {
                    prop_assert!(!at.is_root());
                    prop_assert!(device.as_str().starts_with('/'));
                }
            }
            let _ = decode_base64(&lines);
            let marker = "@@clockprov-0123456789abcdef-1";
            let mut answer = Answer::default();
            for line in raw.split(|b| *b == b'\n') {
                prop_assert_eq!(answer.feed(line, marker), None);
            }
            let lines = answer.feed(marker.as_bytes(), marker).unwrap();
            prop_assert_eq!(lines.len(), raw.split(|b| *b == b'\n').count());
        }
    }
}
