//! Throw-away SSH test hosts for the integration tests.
//!
//! Each host is a real OpenSSH `sshd` on port 22 of its own loopback address
//! (127.0.1.X ...), in a private mount namespace that overlays `/etc` and
//! `/usr`, binds `/var/lib/dpkg/status` and `/root`; `systemctl`, `apt-get`
//! and `apt` are recorded stand-ins, and chrony hosts get a real `chronyd`
//! 4.3 binary.  All of it is done by `tests/hosts/testhosts.sh` (see its
//! header); this module is a thin wrapper over it.  Needs root.
//!
//! ```ignore
//! mod support;
//! use support::hosts::{HostSpec, TestHosts};
//! let hosts = TestHosts::start(&[HostSpec::new("debian-12", "chrony")]);
//! let out = hosts.ssh(&hosts.addrs()[0], "cat /etc/chrony/chrony.conf");
//! ```
//!
//! Set `CLOCKPROV_KEEP_TEST_HOSTS=1` to keep the hosts' directory (the hosts
//! are still stopped) for a post-mortem.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

/// One host to start.
#[derive(Clone, Debug)]
pub struct HostSpec {
    /// Loopback address the host's sshd listens on (port 22).
    pub addr: String,
    /// `"ubuntu-20.04"` or `"debian-12"`.
    pub os: &'static str,
    /// `"chrony"`, `"systemd-timesyncd"`, `"chrony,systemd-timesyncd"` or `"none"`.
    pub packages: &'static str,
    /// Seed `/etc/chrony/chrony.conf` and `/etc/systemd/timesyncd.conf` (both,
    /// whatever the packages); `false` starts with neither file present.
    pub seed_files: bool,
    /// A non-root login the client key opens (no password, no sudo rule yet).
    pub user: Option<&'static str>,
    /// Run the host under this host name, which does not resolve there (sudo complains).
    pub hostname: Option<String>,
}

impl HostSpec {
    /// A host on a fresh address from [`next_addr`], with seeded files.
    pub fn new(os: &'static str, packages: &'static str) -> HostSpec {
        HostSpec {
            addr: next_addr(),
            os,
            packages,
            seed_files: true,
            user: None,
            hostname: None,
        }
    }

    /// The same host with a non-root login `user`.
    #[must_use]
    pub fn with_user(mut self, user: &'static str) -> HostSpec {
        self.user = Some(user);
        self
    }

    /// The same host under a host name it cannot resolve.
    #[must_use]
    pub fn with_unresolvable_hostname(mut self, hostname: &str) -> HostSpec {
        self.hostname = Some(hostname.to_owned());
        self
    }

    /// The same host without the seeded config files.
    #[must_use]
    pub fn without_seed_files(mut self) -> HostSpec {
        self.seed_files = false;
        self
    }
}

/// What one `testhosts.sh up` call starts: os, packages, seed files, user, host name.
type Flavour<'a> = (&'a str, &'a str, bool, Option<&'a str>, Option<&'a str>);

/// Running test hosts; dropping it stops them (`testhosts.sh down`) and
/// removes their directory.
pub struct TestHosts {
    dir: tempfile::TempDir,
    addrs: Vec<String>,
}

/// Path of `tests/hosts/testhosts.sh`.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts/testhosts.sh")
}

/// Path of a stock seed file, e.g. `seed_file("debian-12", "chrony.conf")`.
pub fn seed_file(os: &str, name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/hosts/seed")
        .join(os)
        .join(name)
}

/// The text of a stock seed file (see [`seed_file`]).
pub fn seed(os: &str, name: &str) -> String {
    fs::read_to_string(seed_file(os, name)).unwrap()
}

fn run_script(args: &[&str], dir: &Path) -> Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} for {}: {e}",
                script().display(),
                dir.display()
            )
        })
}

impl TestHosts {
    /// Starts the hosts (in parallel, one `testhosts.sh up` per flavour) and
    /// waits until each accepts TCP on port 22.  Panics with the script's
    /// stderr on failure.
    pub fn start(hosts: &[HostSpec]) -> TestHosts {
        assert!(!hosts.is_empty(), "TestHosts::start: no hosts");
        let dir = tempfile::Builder::new()
            .prefix("clockprov-hosts-")
            .tempdir()
            .expect("create a temporary directory for the test hosts");
        let mut groups: BTreeMap<Flavour, Vec<&str>> = BTreeMap::new();
        for h in hosts {
            groups
                .entry((
                    h.os,
                    h.packages,
                    h.seed_files,
                    h.user,
                    h.hostname.as_deref(),
                ))
                .or_default()
                .push(&h.addr);
        }
        let children: Vec<_> = groups
            .iter()
            .map(|((os, packages, seed, user, hostname), addrs)| {
                let mut cmd = Command::new("bash");
                cmd.arg(script()).arg("up").arg(dir.path()).args([
                    "--os",
                    os,
                    "--packages",
                    packages,
                ]);
                if !seed {
                    cmd.arg("--no-seed-files");
                }
                if let Some(user) = user {
                    cmd.args(["--user", user]);
                }
                if let Some(hostname) = hostname {
                    cmd.args(["--hostname", hostname]);
                }
                cmd.args(addrs)
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot run {}: {e}", script().display()))
            })
            .collect();
        let mut errors = String::new();
        for child in children {
            let out = child.wait_with_output().expect("wait for testhosts.sh up");
            if !out.status.success() {
                errors.push_str(&String::from_utf8_lossy(&out.stderr));
            }
        }
        let hosts = TestHosts {
            dir,
            addrs: hosts.iter().map(|h| h.addr.clone()).collect(),
        };
        if !errors.is_empty() {
            hosts.down();
            panic!("testhosts.sh up failed:\n{errors}");
        }
        hosts
    }

    /// The directory holding keys, `known_hosts` and `hosts/<addr>/`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Addresses of the hosts, in the order given to [`TestHosts::start`].
    pub fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// Client private key (ed25519) authorised for root on every host.
    pub fn key(&self) -> PathBuf {
        self.dir().join("id_ed25519")
    }

    /// `known_hosts` file with every host's key (`ADDR ssh-ed25519 KEY`).
    pub fn known_hosts(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// The host's own directory (`DIR/hosts/ADDR`).
    pub fn host_dir(&self, addr: &str) -> PathBuf {
        self.dir().join("hosts").join(addr)
    }

    /// Where the host's `/etc/<rel>` lives when it was seeded or written by
    /// the host (the upper layer of its `/etc` overlay), e.g.
    /// `etc_file(addr, "chrony/chrony.conf")`.
    pub fn etc_file(&self, addr: &str, rel: &str) -> PathBuf {
        self.host_dir(addr)
            .join("etc-upper")
            .join(rel.trim_start_matches('/'))
    }

    /// Contents of the host's `/etc/<rel>` if it was seeded or written on the
    /// host; `None` if absent or deleted on the host (an overlay whiteout).
    /// Files the host never touched that come from this machine's `/etc`
    /// are not seen here.
    pub fn read_etc(&self, addr: &str, rel: &str) -> Option<String> {
        let path = self.etc_file(addr, rel);
        let meta = fs::symlink_metadata(&path).ok()?;
        if meta.file_type().is_char_device() {
            return None; // whiteout: deleted on the host
        }
        fs::read_to_string(&path).ok()
    }

    fn lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// One line per `systemctl` call on the host: its arguments (`"$*"`).
    pub fn systemctl_log(&self, addr: &str) -> Vec<String> {
        Self::lines(&self.host_dir(addr).join("state/systemctl.log"))
    }

    /// One line per `apt-get` call on the host: its arguments (`"$*"`);
    /// calls of `apt` are recorded as `apt ARGS`.
    pub fn apt_log(&self, addr: &str) -> Vec<String> {
        Self::lines(&self.host_dir(addr).join("state/apt-get.log"))
    }

    /// The host's `/var/lib/dpkg/status`.
    pub fn dpkg_status(&self, addr: &str) -> String {
        fs::read_to_string(self.host_dir(addr).join("dpkg-status")).unwrap_or_default()
    }

    /// The stand-in's unit state: (`enabled`|`disabled`|`masked`, `active`|`inactive`|`failed`),
    /// `None` for a unit that does not exist on the host.
    pub fn unit_state(&self, addr: &str, unit: &str) -> Option<(String, String)> {
        let units = self.host_dir(addr).join("state/units");
        let unit = normalise_unit(unit);
        let file = |ext: &str| units.join(format!("{unit}.{ext}"));
        let read = |ext: &str| {
            fs::read_to_string(file(ext))
                .ok()
                .map(|s| s.trim().to_owned())
        };
        let enabled = if file("masked").exists() {
            Some("masked".to_owned())
        } else {
            read("enabled")
        };
        let active = read("active").unwrap_or_else(|| "inactive".to_owned());
        enabled.map(|e| (e, active))
    }

    /// From now on `systemctl start|restart UNIT` fails (exit 1) and leaves
    /// the unit `failed`.  `unit` may be `chrony`, `chronyd.service`, ...
    pub fn fail_start(&self, addr: &str, unit: &str) {
        let p = self
            .host_dir(addr)
            .join("state/fail-start")
            .join(normalise_unit(unit));
        fs::write(&p, "").unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Undo [`TestHosts::fail_start`].
    pub fn clear_fail_start(&self, addr: &str, unit: &str) {
        let _ = fs::remove_file(
            self.host_dir(addr)
                .join("state/fail-start")
                .join(normalise_unit(unit)),
        );
    }

    /// From now on every `apt-get` call fails with exit code 100.
    pub fn fail_apt(&self, addr: &str) {
        let p = self.host_dir(addr).join("state/fail-apt");
        fs::write(&p, "").unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    /// Undo [`TestHosts::fail_apt`].
    pub fn clear_fail_apt(&self, addr: &str) {
        let _ = fs::remove_file(self.host_dir(addr).join("state/fail-apt"));
    }

    /// PID of the host's sshd (as recorded at start).
    pub fn pid(&self, addr: &str) -> Option<u32> {
        fs::read_to_string(self.host_dir(addr).join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Gives the host a socket where its system D-Bus would listen (nothing answers there): check
    /// runs `timedatectl` only on a host that has one (src/host/readings.sh), so a test whose
    /// `timedatectl` stand-in answers in the bus's place needs it. Made through the host's
    /// `/proc/PID/root`, in its own `/run`.
    pub fn add_system_bus_socket(&self, addr: &str) {
        let pid = self.pid(addr).expect("the host's sshd PID");
        let dir = PathBuf::from(format!("/proc/{pid}/root/run/dbus"));
        fs::create_dir_all(&dir).unwrap();
        // The file stays a socket once the listener is dropped.
        drop(UnixListener::bind(dir.join("system_bus_socket")).unwrap());
    }

    /// Kills one host (its sshd and everything it started), e.g. to test an
    /// unreachable host.  Its address then refuses connections.
    pub fn stop_host(&self, addr: &str) {
        let out = run_script(&["down", &self.dir().to_string_lossy(), addr], self.dir());
        assert!(
            out.status.success(),
            "testhosts.sh down {addr} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ssh` arguments (before `root@ADDR`) that trust only this set's keys.
    pub fn ssh_args(&self) -> Vec<String> {
        vec![
            "-F".into(),
            "/dev/null".into(),
            "-i".into(),
            self.key().display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", self.known_hosts().display()),
            "-o".into(),
            "GlobalKnownHostsFile=/dev/null".into(),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
            // the default sntrup761x25519 key exchange costs ~70 ms of CPU
            // per connection on the 2-core test machine
            "-o".into(),
            "KexAlgorithms=curve25519-sha256".into(),
            "-o".into(),
            "LogLevel=ERROR".into(),
        ]
    }

    /// A `Command` running the real OpenSSH client as root@ADDR.
    pub fn ssh_command(&self, addr: &str, remote_cmd: &str) -> Command {
        let mut cmd = Command::new("ssh");
        cmd.args(self.ssh_args())
            .arg(format!("root@{addr}"))
            .arg(remote_cmd)
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `remote_cmd` on the host with the real `ssh` client.
    pub fn ssh(&self, addr: &str, remote_cmd: &str) -> Output {
        self.ssh_command(addr, remote_cmd)
            .output()
            .expect("run ssh")
    }

    /// Runs `remote_cmd` as root on the host; panics unless it succeeds.
    pub fn root(&self, addr: &str, remote_cmd: &str) {
        let out = self.ssh(addr, remote_cmd);
        assert!(
            out.status.success(),
            "`{remote_cmd}` on {addr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Replaces the host's sudo rules for the tests (`/etc/sudoers.d/clockprov-test`, checked
    /// with `visudo -c` first); an empty `rules` removes them.
    pub fn set_sudoers(&self, addr: &str, rules: &str) {
        let f = "/etc/sudoers.d/clockprov-test";
        if rules.is_empty() {
            self.root(addr, &format!("rm -f {f}"));
            return;
        }
        self.root(
            addr,
            &format!(
                "umask 337; printf '%s\\n' '{rules}' > {f}.new && visudo -cqf {f}.new && mv {f}.new {f}"
            ),
        );
    }

    /// Sets `user`'s password on the host (SHA-512 crypt in its own /etc/shadow).
    pub fn set_password(&self, addr: &str, user: &str, password: &str) {
        self.root(
            addr,
            &format!(
                "usermod -p \"$(printf '%s' '{password}' | openssl passwd -6 -stdin)\" {user}"
            ),
        );
    }

    fn down(&self) -> bool {
        let out = run_script(&["down", &self.dir().to_string_lossy()], self.dir());
        if !out.status.success() {
            eprintln!(
                "testhosts.sh down {} failed:\n{}",
                self.dir().display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out.status.success()
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        let ok = self.down();
        // keep the directory if asked to, and never delete it under a host
        // that could not be stopped
        if std::env::var_os("CLOCKPROV_KEEP_TEST_HOSTS").is_some() || !ok {
            self.dir.disable_cleanup(true);
            eprintln!("test hosts directory kept: {}", self.dir.path().display());
        }
    }
}

/// `chrony` / `chronyd.service` / `x` -> `chrony.service` / `x.service`, as
/// the systemctl stand-in does.
pub fn normalise_unit(unit: &str) -> String {
    if let Some(base) = unit.strip_suffix(".service") {
        return normalise_unit_base(base);
    }
    if unit.contains('.') {
        return unit.to_owned();
    }
    normalise_unit_base(unit)
}

fn normalise_unit_base(base: &str) -> String {
    let base = if base == "chronyd" { "chrony" } else { base };
    format!("{base}.service")
}

/// A loopback address no other test (in this process or another test binary
/// running at the same time) uses: 127.0.1.1 ..= 127.0.9.254.  The address is
/// reserved with a lock on `$TMPDIR/clockprov-test-addrs/ADDR.lock` held until
/// the process exits, and skipped if something already listens on ADDR:22.
pub fn next_addr() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static HELD: Mutex<Vec<File>> = Mutex::new(Vec::new());
    const PER_NET: u32 = 254;
    const NETS: u32 = 9;
    let lock_dir = std::env::temp_dir().join("clockprov-test-addrs");
    fs::create_dir_all(&lock_dir).unwrap_or_else(|e| panic!("create {}: {e}", lock_dir.display()));
    loop {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(
            i < PER_NET * NETS,
            "next_addr: all 127.0.1-9.x test addresses are in use"
        );
        let addr = format!("127.0.{}.{}", 1 + i / PER_NET, 1 + i % PER_NET);
        let lock_path = lock_dir.join(format!("{addr}.lock"));
        let Ok(file) = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
        else {
            continue;
        };
        if file.try_lock().is_err() {
            continue; // another test process has it
        }
        match TcpListener::bind((addr.as_str(), 22)) {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {} // not root: the script will say so
            Err(_) => continue,                                     // in use (e.g. a leftover host)
        }
        HELD.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(file);
        return addr;
    }
}
