//! `RemoteScript`: a shell script that runs on a host, with its arguments.
//!
//! Each script lives in its own `.sh` file next to the module that parses what it prints (loaded
//! with `include_str!`, checked by shellcheck in CI). Its arguments come only from
//! [`ShellWord`]s, on one `set --` line in front of the body, so no value from the inventory or a
//! host is ever spliced into shell text unquoted.
//!
//! The script goes to the host on stdin of `exec /bin/sh -s`, never in the command line: the
//! kernel's limit on argv does not apply, and nothing of it shows in `ps`. The whole script is
//! one `{ ...; } </dev/null` group: the shell reads all of it before running any of it, so a
//! script cut short in transit runs nothing (a syntax error), no command in it can read the
//! rest of the script from stdin, and nothing after it on stdin runs.

use crate::shell::ShellWord;

/// A script and its arguments, ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteScript {
    body: &'static str,
    args: Vec<ShellWord>,
}

impl RemoteScript {
    /// The command line that runs a script sent on stdin. The login shell runs it with `-c` and,
    /// as it is one simple command, `exec` replaces the login shell: one process, not two.
    pub const COMMAND: &'static str = "exec /bin/sh -s";

    /// A script with no arguments yet; `body` is the `include_str!` of its `.sh` file.
    #[must_use]
    pub fn new(body: &'static str) -> RemoteScript {
        RemoteScript {
            body,
            args: Vec::new(),
        }
    }

    /// Append one argument (`$1`, `$2`, ... in the order given).
    #[must_use]
    pub fn arg(mut self, word: ShellWord) -> RemoteScript {
        self.args.push(word);
        self
    }

    /// Append arguments.
    #[must_use]
    pub fn args(mut self, words: impl IntoIterator<Item = ShellWord>) -> RemoteScript {
        self.args.extend(words);
        self
    }

    /// The text to send on stdin: the `set --` line, then the body, in one group.
    #[must_use]
    pub fn text(&self) -> String {
        group(&self.with_args())
    }

    /// As [`RemoteScript::text`], for a script that goes on talking over the channel after it is
    /// read: the channel's stdin stays open to it as fd 3 (stdin is still `/dev/null`). The
    /// group is parsed whole before it runs, as ever, so what the controller sends later is
    /// only ever data for the script's own `read <&3`, never script text.
    #[must_use]
    pub fn text_keeping_stdin(&self) -> String {
        let mut text = group(&self.with_args());
        let end = "} </dev/null; exit\n";
        text.truncate(text.len() - end.len());
        text.push_str("} 3<&0 </dev/null; exit\n");
        text
    }

    fn with_args(&self) -> String {
        let body = compacted(self.body);
        let words: usize = self.args.iter().map(|a| a.as_str().len() + 1).sum();
        let mut text = String::with_capacity(body.len() + words + 32);
        text.push_str("set --");
        for arg in &self.args {
            text.push(' ');
            text.push_str(arg.as_str());
        }
        text.push('\n');
        text.push_str(body);
        text
    }
}

/// [`compact`] of a script's `include_str!` text, worked out once per script for the whole run:
/// every host gets the same body (only the `set --` line differs), and compacting it again for
/// each of 1,000 hosts was a measurable share of apply's CPU.
fn compacted(body: &'static str) -> &'static str {
    type Cache = std::sync::Mutex<Vec<(usize, usize, &'static str)>>;
    static CACHE: Cache = std::sync::Mutex::new(Vec::new());
    // Keyed by where the text lives: an `include_str!` is one static string, and the few
    // scripts there are make a scan cheaper than hashing kilobytes of text.
    let key = (body.as_ptr() as usize, body.len());
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(&(_, _, text)) = cache.iter().find(|(p, l, _)| (*p, *l) == key) {
        return text;
    }
    let text: &'static str = Box::leak(compact(body).into_boxed_str());
    cache.push((key.0, key.1, text));
    text
}

/// `body` without its comment lines and indentation: the same commands in fewer
/// bytes (also for facts.pl, perl's text, which keeps to the same rule). bash reading a script from a pipe (`bash -s`) reads it one byte per system call, so
/// that it never takes what follows on stdin: check's script was two thirds comments. A test
/// holds every script's compacted text to the same parse as its source (`bash --pretty-print`);
/// no script has a here-document or a quoted string across lines, whose lines this would change.
pub(crate) fn compact(body: &str) -> String {
    let mut text = String::with_capacity(body.len());
    for line in body.lines() {
        let line = line.trim_start();
        // A blank line is kept: one byte, and the parse stays exactly the source's.
        if !line.starts_with('#') {
            text.push_str(line);
            text.push('\n');
        }
    }
    text
}

/// `body` as one `{ ...; } </dev/null` group followed by `exit`, for `sh -s` to read: the shell
/// parses the whole group before it runs any of it (a body cut short is a syntax error and runs
/// nothing), no command in it reads the script's own text from stdin, and as `exit` is on the
/// group's last line, parsed with it, nothing that follows on stdin ever runs.
#[must_use]
pub fn group(body: &str) -> String {
    let mut text = String::with_capacity(body.len() + 24);
    text.push_str("{\n");
    text.push_str(body);
    if !body.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("} </dev/null; exit\n");
    text
}

impl RemoteScript {
    /// Run this script here the way a host does (its text on stdin of `sh -c COMMAND`), with
    /// `env` set and `trailing_stdin` after the text: the tests' stand-in for a host. Its stdout.
    #[cfg(test)]
    pub(crate) fn run_here(&self, env: &[(&str, &str)], trailing_stdin: &str) -> Vec<u8> {
        use std::io::Write as _;
        let mut child = Self::spawn_here(env);
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(self.text().as_bytes()).unwrap();
        stdin.write_all(trailing_stdin.as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap().stdout
    }

    /// `sh -c COMMAND` here, as a host starts a script, with `env` set, stdin and stdout piped
    /// (stderr discarded): for tests that talk to the script while it runs.
    #[cfg(test)]
    pub(crate) fn spawn_here(env: &[(&str, &str)]) -> std::process::Child {
        use std::process::{Command, Stdio};
        Command::new("sh")
            .arg("-c")
            .arg(Self::COMMAND)
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    /// Run `script` the way a host does: its text on stdin of `sh -c COMMAND`.
    fn run(script: &RemoteScript, trailing_stdin: &str) -> String {
        String::from_utf8(script.run_here(&[], trailing_stdin)).unwrap()
    }

    #[test]
    fn arguments_arrive_as_words_and_stdin_is_empty() {
        let script = RemoteScript::new(
            "printf '%s|' \"$#\" \"$@\"\nif read -r x; then echo \"read $x\"; else echo no-stdin; fi\n",
        )
        .arg(ShellWord::new("a b").unwrap())
        .args([
            ShellWord::new("it's $(echo no)").unwrap(),
            ShellWord::number(7),
        ]);
        assert!(
            script
                .text()
                .starts_with("{\nset -- 'a b' 'it'\\''s $(echo no)' '7'\n")
        );
        assert_eq!(
            run(&script, "echo injected\n"),
            "3|a b|it's $(echo no)|7|no-stdin\n"
        );
    }

    #[test]
    fn a_script_cut_short_runs_nothing() {
        let script = RemoteScript::new("echo first\necho second\n");
        let text = script.text();
        let cut = text.trim_end_matches("} </dev/null; exit\n");
        assert!(cut.len() < text.len());
        let out = Command::new("sh")
            .arg("-c")
            .arg(RemoteScript::COMMAND)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(cut.as_bytes())?;
                child.wait_with_output()
            })
            .unwrap();
        assert!(!out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    }

    /// Every remote script is POSIX sh (a host's `/bin/sh` may be dash), except those run by
    /// bash by name (`# shellcheck shell=bash` on their first line, checked as bash).
    #[test]
    fn every_script_passes_shellcheck() {
        fn scripts(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    scripts(&path, found);
                } else if path.extension().is_some_and(|e| e == "sh") {
                    found.push(path);
                }
            }
        }
        let mut found = Vec::new();
        scripts(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(
            found.iter().any(|p| p.ends_with("host/facts.sh")),
            "{found:?}"
        );
        for script in &found {
            let first = std::fs::read_to_string(script).unwrap();
            let shell = match first.lines().next() {
                Some("# shellcheck shell=bash") => "bash",
                Some("# shellcheck shell=sh") => "sh",
                other => panic!("{}: first line {other:?}", script.display()),
            };
            let out = Command::new("shellcheck")
                .args(["-s", shell])
                .arg(script)
                .output()
                .expect("shellcheck is installed (scripts/setup.sh)");
            assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    #[test]
    fn a_large_script_is_not_limited_by_argv() {
        // 4 MiB of arguments: far past what one argv string may hold (128 KiB on Linux).
        let big = "x".repeat(4 << 20);
        let script =
            RemoteScript::new("printf '%s' \"${#1}\"\n").arg(ShellWord::new(&big).unwrap());
        assert_eq!(run(&script, ""), (4 << 20).to_string());
    }

    /// Each script is compacted once for the run, and a script is never sent as another one:
    /// the cache knows a text by where it lives and how long it is.
    #[test]
    fn each_script_is_compacted_once_and_only_as_itself() {
        const BOTH: &str = "# a comment\n  echo one\necho two\n";
        let whole = compacted(BOTH);
        assert_eq!(whole, compact(BOTH));
        assert!(std::ptr::eq(whole, compacted(BOTH)), "compacted again");
        // The same address, shorter: another text, another entry.
        let first = compacted(&BOTH[..23]);
        assert_eq!(first, "echo one\n");
        assert_eq!(compacted(BOTH), "echo one\necho two\n");
        let sent = RemoteScript::new(BOTH)
            .arg(ShellWord::new("a b").unwrap())
            .text();
        assert_eq!(
            sent,
            "{\nset -- 'a b'\necho one\necho two\n} </dev/null; exit\n"
        );
    }

    /// Compacting drops only what the shell ignores: every remote script parses as before.
    #[test]
    fn compacted_scripts_parse_as_their_sources() {
        let dir = tempfile::tempdir().unwrap();
        let pretty = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let out = Command::new("bash")
                .arg("--pretty-print")
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{name}: {out:?}");
            // Blank lines are left out: the printer echoes some of the source's between
            // functions, and compacting keeps every blank line as it is (one in a quoted
            // string included), so none can differ.
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("\n")
        };
        for (name, body) in [
            ("apply.sh", include_str!("apply.sh")),
            ("facts.sh", include_str!("facts.sh")),
            ("readings.sh", include_str!("readings.sh")),
            ("ceph.sh", include_str!("ceph.sh")),
        ] {
            let compacted = compact(body);
            assert!(compacted.len() < body.len(), "{name}");
            assert_eq!(
                pretty(name, body),
                pretty(&format!("{name}.compact"), &compacted),
                "{name}"
            );
        }
    }
}
