//! The one way tests start the clockprov binary: [`Clockprov`], a builder like
//! `std::process::Command`, and [`Run`], what one run did.
//!
//! ```ignore
//! let run = Clockprov::new()
//!     .args(["plan", "-i"])
//!     .arg(&inventory)
//!     .env("CLOCKPROV_BECOME_PASSWORD", PASSWORD) // a secret variable: registered by itself
//!     .secret(TOKEN)                               // anything else that must never be printed
//!     .run();
//! assert_eq!(run.code, 0, "{run:?}");
//! ```
//!
//! What a run sees, and nothing else (the environment is cleared first):
//! - `PATH` and `TMPDIR` (when set) of the test process, and `NO_COLOR=1`;
//! - `HOME`: a fresh temporary directory holding an empty `~/.ssh` (mode 700), made for this run
//!   and removed after it, unless the test gives its own with [`Clockprov::home`]. So the
//!   developer's `~/.ssh/config`, keys and `known_hosts`, ssh-agent (`SSH_AUTH_SOCK`), secret
//!   variables (`CLOCKPROV_BECOME_PASSWORD`, `CLOCKPROV_KEY_PASSPHRASE`), `CLOCKPROV_INVENTORY`
//!   and `CLOCKPROV_LOG` never change what the suite does;
//! - what the test passes with [`Clockprov::env`]; stdin is `/dev/null`.
//!
//! Secrets: no value registered with [`Clockprov::secret`], nor any value given to one of
//! [`SECRET_VARS`] through [`Clockprov::env`], may appear in the run's stdout or stderr (or on its
//! terminal): the run panics if one does, its output shown with every secret masked.
//!
//! Every run is echoed on the test's stderr (`$ clockprov ARGS` and its [`Run`], secrets masked),
//! which cargo shows for a failing test.
//!
//! Two other ways to run the same command: [`Clockprov::netns`] runs it inside a VM lab's network
//! namespace (`tests/lab/lab.sh exec DIR`), and [`Clockprov::terminal`] starts it on a
//! pseudo-terminal (util-linux `script`) to be typed at, as a user would.
//!
//! A test that calls the library in its own process (not the binary) is outside all this: it
//! reads this process's `HOME`, so its inventory names every file (`config_file` included).

use std::ffi::{OsStr, OsString};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Variables whose values are secrets: registered as such when a test passes them.
pub const SECRET_VARS: [&str; 2] = ["CLOCKPROV_BECOME_PASSWORD", "CLOCKPROV_KEY_PASSPHRASE"];

/// One clockprov command line and the environment it runs in (see the module header).
#[must_use]
pub struct Clockprov {
    args: Vec<OsString>,
    envs: Vec<(OsString, OsString)>,
    home: Option<PathBuf>,
    current_dir: Option<PathBuf>,
    netns: Option<PathBuf>,
    open_files: Option<u32>,
    secrets: Vec<String>,
}

impl Default for Clockprov {
    fn default() -> Self {
        Self::new()
    }
}

impl Clockprov {
    pub fn new() -> Clockprov {
        Clockprov {
            args: Vec::new(),
            envs: Vec::new(),
            home: None,
            current_dir: None,
            netns: None,
            open_files: None,
            secrets: Vec::new(),
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Clockprov {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(mut self, args: I) -> Clockprov {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// A variable for the run; a value given to one of [`SECRET_VARS`] is a secret.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Clockprov {
        let (key, value) = (key.as_ref(), value.as_ref());
        if SECRET_VARS.iter().any(|v| key == *v) {
            self.secrets.push(value.to_string_lossy().into_owned());
        }
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// `HOME` for the run: the test's own directory instead of a fresh empty one.
    pub fn home(mut self, dir: impl AsRef<Path>) -> Clockprov {
        self.home = Some(dir.as_ref().to_owned());
        self
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Clockprov {
        self.current_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Run inside the network namespace of the VM lab in `lab_dir` (`lab.sh exec`).
    pub fn netns(mut self, lab_dir: impl AsRef<Path>) -> Clockprov {
        self.netns = Some(lab_dir.as_ref().to_owned());
        self
    }

    /// Start with this soft open-file limit (`RLIMIT_NOFILE`; the hard one as it is), through
    /// util-linux's `prlimit`.
    pub fn open_files(mut self, soft: u32) -> Clockprov {
        self.open_files = Some(soft);
        self
    }

    /// A text that must never appear in what the run prints.
    pub fn secret(mut self, secret: impl Into<String>) -> Clockprov {
        self.secrets.push(secret.into());
        self
    }

    /// Run to the end, without a terminal; panics if a secret was printed.
    #[must_use]
    pub fn run(self) -> Run {
        let home = Home::new(self.home.as_deref());
        let out = self
            .command(home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.describe()));
        let run = Run::from(out);
        self.audit(&run);
        run
    }

    /// Start without waiting (stdin `/dev/null`, output captured), to be killed mid-run or run
    /// beside another; see [`Spawned`].
    #[must_use]
    pub fn spawn(self) -> Spawned {
        let home = Home::new(self.home.as_deref());
        let child = self
            .command(home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.describe()));
        Spawned {
            child,
            _home: home,
            clockprov: self,
        }
    }

    /// Start on a pseudo-terminal (util-linux `script`); see [`Terminal`].
    #[must_use]
    pub fn terminal(self) -> Terminal {
        let home = Home::new(self.home.as_deref());
        let line: Vec<String> = self.argv().iter().map(|a| shell_quoted(a)).collect();
        let mut child = self
            .environment(Command::new("script"), home.path())
            .args(["-q", "-e", "-c", &line.join(" "), "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("script (util-linux)");
        let output = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().unwrap();
        let reader = {
            let output = output.clone();
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stdout.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                    output.lock().unwrap().push_str(&text);
                }
            })
        };
        let stdin = child.stdin.take().unwrap();
        Terminal {
            clockprov: self,
            _home: home,
            child,
            stdin,
            output,
            reader,
        }
    }

    /// The program and its arguments: the binary, or `bash lab.sh exec DIR` and the binary.
    fn argv(&self) -> Vec<OsString> {
        let mut argv: Vec<OsString> = Vec::new();
        if let Some(lab) = &self.netns {
            argv.extend([
                "bash".into(),
                super::lab::lab_script().into(),
                "exec".into(),
                lab.into(),
            ]);
        }
        if let Some(soft) = self.open_files {
            argv.extend(["prlimit".into(), format!("--nofile={soft}:").into()]);
        }
        argv.push(env!("CARGO_BIN_EXE_clockprov").into());
        argv.extend(self.args.iter().cloned());
        argv
    }

    fn command(&self, home: &Path) -> Command {
        let argv = self.argv();
        let mut command = self.environment(Command::new(&argv[0]), home);
        command.args(&argv[1..]);
        command
    }

    /// `command` with the run's environment and directory (see the module header).
    fn environment(&self, mut command: Command, home: &Path) -> Command {
        command.env_clear();
        for keep in ["PATH", "TMPDIR"] {
            if let Some(value) = std::env::var_os(keep) {
                command.env(keep, value);
            }
        }
        command.env("HOME", home).env("NO_COLOR", "1");
        command.envs(self.envs.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &self.current_dir {
            command.current_dir(dir);
        }
        command
    }

    /// Panic if a secret is in `run`'s output; echo the run on stderr.
    fn audit(&self, run: &Run) {
        let shown = self.masked(&format!("$ {}\n{run:?}", self.describe()));
        eprintln!("{shown}");
        let printed = self
            .secrets
            .iter()
            .filter(|s| !s.is_empty())
            .any(|s| run.stdout.contains(s.as_str()) || run.stderr.contains(s.as_str()));
        assert!(!printed, "a secret is printed (masked here):\n{shown}");
    }

    /// The command line, with the variables the test set (secret values masked).
    fn describe(&self) -> String {
        let mut words: Vec<String> = self
            .envs
            .iter()
            .map(|(k, v)| format!("{}={}", k.to_string_lossy(), v.to_string_lossy()))
            .collect();
        if let Some(home) = &self.home {
            words.push(format!("HOME={}", home.display()));
        }
        if let Some(lab) = &self.netns {
            words.push(format!("[netns of {}]", lab.display()));
        }
        words.push("clockprov".to_owned());
        words.extend(self.args.iter().map(|a| a.to_string_lossy().into_owned()));
        self.masked(&words.join(" "))
    }

    fn masked(&self, text: &str) -> String {
        self.secrets
            .iter()
            .filter(|s| !s.is_empty())
            .fold(text.to_owned(), |text, s| {
                text.replace(s.as_str(), "[secret]")
            })
    }
}

/// A run started with [`Clockprov::spawn`]: killed ([`Spawned::kill`]) or waited for.
pub struct Spawned {
    child: Child,
    _home: Home,
    clockprov: Clockprov,
}

impl Spawned {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reap it: what it printed is dropped.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether it has ended (reaped then), without waiting.
    pub fn finished(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(Some(_)))
    }

    /// Wait for the end; panics if a secret was printed.
    #[must_use]
    pub fn wait(self) -> Run {
        let out = self
            .child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("cannot wait for {}: {e}", self.clockprov.describe()));
        let run = Run::from(out);
        self.clockprov.audit(&run);
        run
    }
}

/// A run's `HOME`: the test's, or a fresh directory with an empty `.ssh`, removed when dropped.
enum Home {
    Given(PathBuf),
    Fresh(tempfile::TempDir),
}

impl Home {
    fn new(given: Option<&Path>) -> Home {
        if let Some(dir) = given {
            return Home::Given(dir.to_owned());
        }
        let dir = tempfile::Builder::new()
            .prefix("clockprov-home-")
            .tempdir()
            .expect("create a temporary HOME");
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(dir.path().join(".ssh"))
            .expect("create HOME/.ssh");
        Home::Fresh(dir)
    }

    fn path(&self) -> &Path {
        match self {
            Home::Given(dir) => dir,
            Home::Fresh(dir) => dir.path(),
        }
    }
}

/// `word` quoted for `sh -c`.
fn shell_quoted(word: &OsStr) -> String {
    format!("'{}'", word.to_string_lossy().replace('\'', r"'\''"))
}

/// clockprov running on a pseudo-terminal, typed at like a user ([`Clockprov::terminal`]).
pub struct Terminal {
    clockprov: Clockprov,
    _home: Home,
    child: Child,
    stdin: ChildStdin,
    output: Arc<Mutex<String>>,
    reader: JoinHandle<()>,
}

impl Terminal {
    /// Wait (30 s at most) until the terminal has shown `text`.
    pub fn wait_for(&self, text: &str) {
        self.wait_for_within(text, Duration::from_secs(30));
    }

    /// Wait (`limit` at most) until the terminal has shown `text`: for commands that work a
    /// while before they ask (bake starts a libguestfs appliance per disk image first).
    pub fn wait_for_within(&self, text: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.output.lock().unwrap().contains(text) {
            assert!(
                Instant::now() < deadline,
                "no {text:?} on the terminal: {}",
                self.clockprov.masked(&self.output.lock().unwrap())
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Type `line` and Enter.
    pub fn type_line(&mut self, line: &str) {
        self.stdin
            .write_all(format!("{line}\r").as_bytes())
            .unwrap();
    }

    /// Wait for `prompt`, type `line`, and [`Terminal::finish`]: a question answered.
    #[must_use]
    pub fn answer(mut self, prompt: &str, line: &str) -> Run {
        self.wait_for(prompt);
        self.type_line(line);
        self.finish()
    }

    /// Wait for the end: the exit code, and everything the terminal showed as `stdout`; panics if
    /// a secret was shown.
    #[must_use]
    pub fn finish(mut self) -> Run {
        let status = self.child.wait().unwrap();
        drop(self.stdin);
        self.reader.join().unwrap();
        let run = Run {
            code: status.code().unwrap_or(-1),
            stdout: self.output.lock().unwrap().clone(),
            stderr: String::new(),
        };
        self.clockprov.audit(&run);
        run
    }
}

/// What one run of a command did, printable in assertion messages.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// stdout as a JSON document; panics with the run if it is not one.
    #[must_use]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

impl From<Output> for Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}
