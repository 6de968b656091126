//! OpenSSH client configuration (`~/.ssh/config`, or the inventory's `ssh.config_file`): the
//! part of `ssh_config(5)` that decides where and as whom clockprov connects.
//!
//! Honoured: `Host` (wildcards `*` `?`, `!` negation, several patterns), `Match` (`all`, `host`,
//! `originalhost`, `user`, `localuser`, each negatable), `Include` (globs; relative paths are
//! under `~/.ssh`, as OpenSSH has it), and the keywords `HostName`, `User`, `Port`,
//! `IdentityFile`, `ProxyJump`, `UserKnownHostsFile`, `GlobalKnownHostsFile`,
//! `StrictHostKeyChecking`. Every other
//! keyword is ignored, as it does not change where we connect. For each keyword the first value
//! obtained wins, top to bottom through the file and its includes; `IdentityFile` accumulates.
//!
//! Nothing here ever runs a command: a `Match exec` (or a criterion we do not know) is an error
//! naming its file and line, raised only when a lookup reaches it, as OpenSSH evaluates it.
//!
//! Why not the `ssh2-config` crate: it has no `Match`, keeps no line numbers for errors, does not
//! understand `Key=Value` or quoted arguments, replaces `IdentityFile` instead of accumulating it,
//! and merges `Include`d files by pattern rather than in place, so its precedence differs from
//! OpenSSH's in exactly the cases users rely on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::glob::wildcard_match;
use crate::value::{JumpList, NetAddress, UserName};

/// OpenSSH's limit on nested `Include`s.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a line is: for every message about the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    pub file: Arc<PathBuf>,
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The cause is in the message, not chained as a source: `{:#}` would print it twice.
    #[error("cannot read OpenSSH config {}: {}", .path.display(), crate::inventory::io_reason(.error))]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{loc}: {message}")]
    Invalid { loc: Loc, message: String },
}

fn invalid<T>(loc: &Loc, message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError::Invalid {
        loc: loc.clone(),
        message: message.into(),
    })
}

/// `StrictHostKeyChecking` as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strictness {
    Yes,
    AcceptNew,
    /// `no` or `off`: never honoured as such; the caller decides (see the README).
    No,
    /// `ask`: we cannot ask, so an unknown key is refused, as with `yes`.
    Ask,
}

impl fmt::Display for Strictness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strictness::Yes => "yes",
            Strictness::AcceptNew => "accept-new",
            Strictness::No => "no",
            Strictness::Ask => "ask",
        })
    }
}

/// A value and the line it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub loc: Loc,
}

#[derive(Debug, Clone)]
enum Setting {
    HostName(String),
    User(UserName),
    Port(u16),
    IdentityFile(String),
    /// `None` is `ProxyJump none`.
    ProxyJump(Option<JumpList>),
    UserKnownHostsFile(Vec<String>),
    /// Empty is `GlobalKnownHostsFile none`.
    GlobalKnownHostsFile(Vec<String>),
    StrictHostKeyChecking(Strictness),
}

#[derive(Debug, Clone)]
enum Criterion {
    All,
    Host(String),
    OriginalHost(String),
    User(String),
    LocalUser(String),
    /// `exec`, `canonical`, `final`, `tagged`, ...: an error if a lookup gets to it.
    Unsupported(String),
}

#[derive(Debug, Clone)]
enum Item {
    Host(Vec<String>),
    Match(Vec<(bool, Criterion)>),
    Include(Vec<ConfigFile>),
    Set(Setting),
    /// A keyword that does not change where or as whom we connect (kept for `import`, which
    /// lists what it does not map).
    Ignored(String),
}

#[derive(Debug, Clone)]
struct Entry {
    loc: Loc,
    item: Item,
}

#[derive(Debug, Clone)]
struct ConfigFile {
    entries: Vec<Entry>,
}

/// A parsed configuration file with its includes, ready for lookups.
#[derive(Debug, Clone)]
pub struct SshConfig {
    root: ConfigFile,
}

/// What a lookup knows besides the host name.
#[derive(Debug, Clone)]
pub struct Context<'a> {
    /// The remote user given explicitly (the inventory's): it wins over `User`, and is what
    /// `Match user` and `%r` see.
    pub user: Option<&'a str>,
    /// The port given explicitly (the inventory's), for `%p`.
    pub port: Option<u16>,
    /// The remote user when nobody names one (clockprov's default is root, not the local user).
    pub default_user: &'a str,
    pub local_user: &'a str,
    pub home: &'a Path,
}

/// What the configuration says about one host. Paths are expanded (`~`, `%` tokens).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConfig {
    pub hostname: Option<Located<NetAddress>>,
    pub user: Option<Located<UserName>>,
    pub port: Option<Located<u16>>,
    pub identity_files: Vec<Located<PathBuf>>,
    /// `Some(None)` is `ProxyJump none`.
    pub proxy_jump: Option<Located<Option<JumpList>>>,
    pub known_hosts_files: Option<Located<Vec<PathBuf>>>,
    /// `GlobalKnownHostsFile`; an empty list is `none`.
    pub global_known_hosts_files: Option<Located<Vec<PathBuf>>>,
    pub strict_host_key_checking: Option<Located<Strictness>>,
}

impl SshConfig {
    /// Read and parse `path` and everything it includes. `home` is where `~` and relative
    /// `Include` paths point.
    ///
    /// # Errors
    /// A file cannot be read, or a line is malformed (the error names the file and line).
    pub fn load(path: &Path, home: &Path) -> Result<SshConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(path, &text, home)
    }

    /// Parse `text` as if read from `path` (used in messages); includes are read from disk.
    ///
    /// # Errors
    /// As for [`SshConfig::load`].
    pub fn parse(path: &Path, text: &str, home: &Path) -> Result<SshConfig, ConfigError> {
        Ok(SshConfig {
            root: parse_file(path, text, home, 0)?,
        })
    }

    /// The names of `Host` lines without wildcards or negations (hosts one can `ssh NAME` to),
    /// each once, in order, includes in place; and the keywords clockprov does not use.
    pub(crate) fn hosts_and_ignored(&self) -> (Vec<Located<String>>, Vec<Located<String>>) {
        fn walk(
            file: &ConfigFile,
            hosts: &mut Vec<Located<String>>,
            ignored: &mut Vec<Located<String>>,
        ) {
            for entry in &file.entries {
                match &entry.item {
                    Item::Host(patterns) => {
                        for pattern in patterns {
                            let concrete = !pattern.contains(['*', '?', '!']);
                            if concrete && !hosts.iter().any(|h| &h.value == pattern) {
                                hosts.push(Located {
                                    value: pattern.clone(),
                                    loc: entry.loc.clone(),
                                });
                            }
                        }
                    }
                    Item::Include(files) => {
                        for included in files {
                            walk(included, hosts, ignored);
                        }
                    }
                    Item::Ignored(keyword) => ignored.push(Located {
                        value: keyword.clone(),
                        loc: entry.loc.clone(),
                    }),
                    Item::Match(_) | Item::Set(_) => {}
                }
            }
        }
        let (mut hosts, mut ignored) = (Vec::new(), Vec::new());
        walk(&self.root, &mut hosts, &mut ignored);
        (hosts, ignored)
    }

    /// The configuration for `host` (the name as given: the inventory's `ssh.host` or address).
    ///
    /// # Errors
    /// A `Match` reaches a criterion we do not evaluate, a `%` token is unknown, or `HostName`
    /// expands to something that is not a host name.
    pub fn lookup(&self, host: &str, context: &Context<'_>) -> Result<HostConfig, ConfigError> {
        let mut state = State {
            original: host.to_ascii_lowercase(),
            context,
            hostname: None,
            user: None,
            port: None,
            identity_files: Vec::new(),
            proxy_jump: None,
            known_hosts: None,
            global_known_hosts: None,
            strict: None,
        };
        state.apply(&self.root, true, false)?;
        state.finish()
    }
}

fn parse_file(
    path: &Path,
    text: &str,
    home: &Path,
    depth: usize,
) -> Result<ConfigFile, ConfigError> {
    let file = Arc::new(path.to_owned());
    let mut entries = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let loc = Loc {
            file: file.clone(),
            line: index + 1,
        };
        let Some((keyword, args)) = split_line(raw, &loc)? else {
            continue;
        };
        if let Some(item) = parse_item(&keyword, args, &loc, home, depth)? {
            // As written (the keyword is lower-cased ASCII of the same length), for `import`.
            let item = match item {
                Item::Ignored(_) => Item::Ignored(raw.trim()[..keyword.len()].to_owned()),
                item => item,
            };
            entries.push(Entry { loc, item });
        }
    }
    Ok(ConfigFile { entries })
}

/// Split a line into its keyword and arguments, OpenSSH-style: `Key value`, `Key=value`,
/// `Key = value`; double- or single-quoted arguments; a `#` that starts an unquoted argument
/// starts a comment. None for blank and comment lines.
fn split_line(raw: &str, loc: &Loc) -> Result<Option<(String, Vec<String>)>, ConfigError> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let rest = line[end..].trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest).trim_start();
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => break,
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (None, c) if c.is_whitespace() => break,
                (None, '"' | '\'') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (_, '\\') => match chars.peek().copied() {
                    Some(next @ ('\\' | '"' | '\'')) => {
                        arg.push(next);
                        chars.next();
                    }
                    Some(next) if quote.is_none() && next.is_whitespace() => {
                        arg.push(next);
                        chars.next();
                    }
                    _ => arg.push('\\'),
                },
                (_, c) => arg.push(c),
            }
        }
        if quote.is_some() {
            return invalid(loc, "an unterminated quote");
        }
        args.push(arg);
    }
    Ok(Some((keyword, args)))
}

fn one_arg(keyword: &str, args: Vec<String>, loc: &Loc) -> Result<String, ConfigError> {
    let mut args = args.into_iter();
    match (args.next(), args.next()) {
        (Some(arg), None) if !arg.is_empty() => Ok(arg),
        (Some(_), Some(extra)) => invalid(
            loc,
            format!("{keyword} takes one value; unexpected {extra:?}"),
        ),
        _ => invalid(loc, format!("{keyword} needs a value")),
    }
}

fn parse_item(
    keyword: &str,
    args: Vec<String>,
    loc: &Loc,
    home: &Path,
    depth: usize,
) -> Result<Option<Item>, ConfigError> {
    let setting = match keyword {
        "host" => {
            if args.is_empty() {
                return invalid(loc, "Host needs at least one pattern");
            }
            return Ok(Some(Item::Host(args)));
        }
        "match" => return parse_match(args, loc).map(|c| Some(Item::Match(c))),
        "include" => {
            if args.is_empty() {
                return invalid(loc, "Include needs a file");
            }
            if depth >= MAX_INCLUDE_DEPTH {
                return invalid(
                    loc,
                    format!("Include nested more than {MAX_INCLUDE_DEPTH} deep (a loop?)"),
                );
            }
            let mut files = Vec::new();
            for arg in args {
                for path in include_paths(&arg, loc, home)? {
                    let text =
                        std::fs::read_to_string(&path).map_err(|e| ConfigError::Invalid {
                            loc: loc.clone(),
                            message: format!("cannot read included file {}: {e}", path.display()),
                        })?;
                    files.push(parse_file(&path, &text, home, depth + 1)?);
                }
            }
            return Ok(Some(Item::Include(files)));
        }
        "hostname" => Setting::HostName(one_arg("HostName", args, loc)?),
        "user" => {
            let user = one_arg("User", args, loc)?;
            match user.parse::<UserName>() {
                Ok(user) => Setting::User(user),
                Err(e) => return invalid(loc, format!("User: {e}")),
            }
        }
        "port" => {
            let port = one_arg("Port", args, loc)?;
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Setting::Port(p),
                _ => {
                    return invalid(
                        loc,
                        format!("Port {port:?} is not a port number (1 to 65535)"),
                    );
                }
            }
        }
        "identityfile" => Setting::IdentityFile(one_arg("IdentityFile", args, loc)?),
        "proxyjump" => {
            let value = one_arg("ProxyJump", args, loc)?;
            if value.eq_ignore_ascii_case("none") {
                Setting::ProxyJump(None)
            } else {
                match value.parse::<JumpList>() {
                    Ok(list) => Setting::ProxyJump(Some(list)),
                    Err(e) => return invalid(loc, format!("ProxyJump: {e}")),
                }
            }
        }
        "userknownhostsfile" => {
            if args.is_empty() {
                return invalid(loc, "UserKnownHostsFile needs a file");
            }
            Setting::UserKnownHostsFile(args)
        }
        "globalknownhostsfile" => {
            if args.is_empty() {
                return invalid(loc, "GlobalKnownHostsFile needs a file (or none)");
            }
            if args.len() == 1 && args[0].eq_ignore_ascii_case("none") {
                Setting::GlobalKnownHostsFile(Vec::new())
            } else {
                Setting::GlobalKnownHostsFile(args)
            }
        }
        "stricthostkeychecking" => {
            let value = one_arg("StrictHostKeyChecking", args, loc)?;
            Setting::StrictHostKeyChecking(match value.to_ascii_lowercase().as_str() {
                "yes" | "true" => Strictness::Yes,
                "accept-new" => Strictness::AcceptNew,
                "no" | "false" | "off" => Strictness::No,
                "ask" => Strictness::Ask,
                _ => {
                    return invalid(
                        loc,
                        format!(
                            "StrictHostKeyChecking {value:?}: expected yes, accept-new, no, off or ask"
                        ),
                    );
                }
            })
        }
        // Every other keyword leaves where and as whom we connect unchanged.
        _ => return Ok(Some(Item::Ignored(keyword.to_owned()))),
    };
    Ok(Some(Item::Set(setting)))
}

fn parse_match(args: Vec<String>, loc: &Loc) -> Result<Vec<(bool, Criterion)>, ConfigError> {
    let mut criteria = Vec::new();
    let mut args = args.into_iter();
    while let Some(word) = args.next() {
        let (negated, name) = match word.strip_prefix('!') {
            Some(name) => (true, name.to_ascii_lowercase()),
            None => (false, word.to_ascii_lowercase()),
        };
        let criterion = match name.as_str() {
            "all" => Criterion::All,
            // These take no argument; we do not canonicalize host names, so we do not pretend
            // to know which pass this is.
            "canonical" | "final" => Criterion::Unsupported(name),
            _ => {
                let Some(arg) = args.next() else {
                    return invalid(loc, format!("Match {name} needs an argument"));
                };
                match name.as_str() {
                    "host" => Criterion::Host(arg),
                    "originalhost" => Criterion::OriginalHost(arg),
                    "user" => Criterion::User(arg),
                    "localuser" => Criterion::LocalUser(arg),
                    _ => Criterion::Unsupported(format!("{name} {arg}")),
                }
            }
        };
        criteria.push((negated, criterion));
    }
    if criteria.is_empty() {
        return invalid(loc, "Match needs a criterion (e.g. `Match all`)");
    }
    if criteria.iter().any(|(_, c)| matches!(c, Criterion::All))
        && criteria
            .iter()
            .any(|(_, c)| !matches!(c, Criterion::All | Criterion::Unsupported(_)))
    {
        return invalid(loc, "Match all cannot be combined with other criteria");
    }
    Ok(criteria)
}

/// The files an `Include` argument names: `~` expanded, relative to `~/.ssh`, globbed, sorted.
/// A pattern that matches nothing includes nothing, as with OpenSSH.
fn include_paths(arg: &str, loc: &Loc, home: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let expanded = expand_tilde(arg, loc, home)?;
    let path = if expanded.is_absolute() {
        expanded
    } else {
        home.join(".ssh").join(expanded)
    };
    let mut found = vec![PathBuf::from("/")];
    for component in path.components().skip(1) {
        let part = component.as_os_str().to_string_lossy();
        if part.contains(['*', '?']) {
            let mut next = Vec::new();
            for dir in &found {
                let Ok(read) = std::fs::read_dir(dir) else {
                    continue;
                };
                let mut names: Vec<String> = read
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| {
                        (part.starts_with('.') || !n.starts_with('.')) && wildcard_match(&part, n)
                    })
                    .collect();
                names.sort();
                next.extend(names.into_iter().map(|n| dir.join(n)));
            }
            found = next;
        } else {
            found = found.into_iter().map(|d| d.join(&*part)).collect();
        }
    }
    Ok(found.into_iter().filter(|p| p.is_file()).collect())
}

fn expand_tilde(text: &str, loc: &Loc, home: &Path) -> Result<PathBuf, ConfigError> {
    if text == "~" {
        return Ok(home.to_owned());
    }
    if let Some(rest) = text.strip_prefix("~/") {
        return Ok(home.join(rest));
    }
    if text.starts_with('~') {
        return invalid(
            loc,
            format!("{text:?}: only ~/ (your own home) is expanded, not ~user"),
        );
    }
    Ok(PathBuf::from(text))
}

/// Replace `%x` tokens from `tokens`; `%%` is `%`. An unknown token is an error naming it.
fn expand_tokens(
    text: &str,
    keyword: &str,
    tokens: &[(char, &str)],
    loc: &Loc,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(t) => {
                if let Some((_, value)) = tokens.iter().find(|(k, _)| *k == t) {
                    out.push_str(value);
                } else {
                    let known: Vec<String> = tokens.iter().map(|(k, _)| format!("%{k}")).collect();
                    return invalid(
                        loc,
                        format!(
                            "{keyword}: the token %{t} is not supported here (supported: {}, %%)",
                            known.join(" ")
                        ),
                    );
                }
            }
            None => return invalid(loc, format!("{keyword}: a lone % at the end")),
        }
    }
    Ok(out)
}

/// Does `name` match the comma-separated pattern list? A matching `!pattern` says no outright.
fn matches_list(list: &str, name: &str, lowercase: bool) -> bool {
    let mut matched = false;
    for pattern in list.split(',') {
        let pattern = if lowercase {
            pattern.to_ascii_lowercase()
        } else {
            pattern.to_owned()
        };
        if let Some(negated) = pattern.strip_prefix('!') {
            if wildcard_match(negated, name) {
                return false;
            }
        } else if wildcard_match(&pattern, name) {
            matched = true;
        }
    }
    matched
}

struct State<'a> {
    original: String,
    context: &'a Context<'a>,
    hostname: Option<Located<String>>,
    user: Option<Located<UserName>>,
    port: Option<Located<u16>>,
    identity_files: Vec<Located<String>>,
    proxy_jump: Option<Located<Option<JumpList>>>,
    known_hosts: Option<Located<Vec<String>>>,
    global_known_hosts: Option<Located<Vec<String>>>,
    strict: Option<Located<Strictness>>,
}

fn first<T>(slot: &mut Option<Located<T>>, value: T, loc: &Loc) {
    if slot.is_none() {
        *slot = Some(Located {
            value,
            loc: loc.clone(),
        });
    }
}

impl State<'_> {
    /// Apply a file's entries. A file starts with the activity of the line that included it;
    /// an `Include` in an inactive block includes nothing, whatever `Host` lines it holds
    /// (OpenSSH's `SSHCONF_NEVERMATCH`); activity after an `Include` is what it was before.
    fn apply(&mut self, file: &ConfigFile, active: bool, never: bool) -> Result<(), ConfigError> {
        let mut active = active;
        for entry in &file.entries {
            match &entry.item {
                Item::Host(patterns) => active = !never && self.host_matches(patterns),
                Item::Match(criteria) => {
                    active = !never && self.criteria_match(criteria, &entry.loc)?;
                }
                Item::Include(files) => {
                    for included in files {
                        self.apply(included, active, never || !active)?;
                    }
                }
                Item::Set(setting) if active => self.set(setting, &entry.loc),
                Item::Set(_) | Item::Ignored(_) => {}
            }
        }
        Ok(())
    }

    fn host_matches(&self, patterns: &[String]) -> bool {
        let mut matched = false;
        for pattern in patterns {
            let pattern = pattern.to_ascii_lowercase();
            if let Some(negated) = pattern.strip_prefix('!') {
                if wildcard_match(negated, &self.original) {
                    return false;
                }
            } else if wildcard_match(&pattern, &self.original) {
                matched = true;
            }
        }
        matched
    }

    /// The host name as far as the configuration has said so far (what `Match host` sees).
    fn current_hostname(&self) -> String {
        self.hostname.as_ref().map_or_else(
            || self.original.clone(),
            |h| h.value.replace("%h", &self.original).to_ascii_lowercase(),
        )
    }

    fn current_user(&self) -> &str {
        self.context.user.unwrap_or_else(|| {
            self.user
                .as_ref()
                .map_or(self.context.default_user, |u| u.value.as_str())
        })
    }

    fn criteria_match(
        &self,
        criteria: &[(bool, Criterion)],
        loc: &Loc,
    ) -> Result<bool, ConfigError> {
        for (negated, criterion) in criteria {
            let result = match criterion {
                Criterion::All => true,
                Criterion::Host(list) => matches_list(list, &self.current_hostname(), true),
                Criterion::OriginalHost(list) => matches_list(list, &self.original, true),
                Criterion::User(list) => matches_list(list, self.current_user(), false),
                Criterion::LocalUser(list) => matches_list(list, self.context.local_user, false),
                Criterion::Unsupported(what) => {
                    return invalid(
                        loc,
                        format!(
                            "Match {what} is not supported (clockprov never runs commands from an ssh config and evaluates only all, host, originalhost, user and localuser); move this block behind a Host line that excludes the inventory's hosts, or use ssh.config_file"
                        ),
                    );
                }
            };
            // As OpenSSH: the first criterion that fails decides, and later ones (an `exec`)
            // are not evaluated.
            if result == *negated {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn set(&mut self, setting: &Setting, loc: &Loc) {
        match setting {
            Setting::HostName(v) => first(&mut self.hostname, v.clone(), loc),
            Setting::User(v) => first(&mut self.user, v.clone(), loc),
            Setting::Port(v) => first(&mut self.port, *v, loc),
            Setting::IdentityFile(v) => self.identity_files.push(Located {
                value: v.clone(),
                loc: loc.clone(),
            }),
            Setting::ProxyJump(v) => first(&mut self.proxy_jump, v.clone(), loc),
            Setting::UserKnownHostsFile(v) => first(&mut self.known_hosts, v.clone(), loc),
            Setting::GlobalKnownHostsFile(v) => {
                first(&mut self.global_known_hosts, v.clone(), loc);
            }
            Setting::StrictHostKeyChecking(v) => first(&mut self.strict, *v, loc),
        }
    }

    fn finish(self) -> Result<HostConfig, ConfigError> {
        let context = self.context;
        let hostname = match &self.hostname {
            Some(h) => {
                let text = expand_tokens(&h.value, "HostName", &[('h', &self.original)], &h.loc)?;
                match text.parse::<NetAddress>() {
                    Ok(address) => Some(Located {
                        value: address,
                        loc: h.loc.clone(),
                    }),
                    Err(e) => return invalid(&h.loc, format!("HostName: {e}")),
                }
            }
            None => None,
        };
        let final_host = hostname
            .as_ref()
            .map_or_else(|| self.original.clone(), |h| h.value.to_string());
        let port = context
            .port
            .or(self.port.as_ref().map(|p| p.value))
            .unwrap_or(22)
            .to_string();
        let user = self.current_user().to_owned();
        let home = context.home.to_string_lossy().into_owned();
        let tokens = [
            ('d', home.as_str()),
            ('h', final_host.as_str()),
            ('n', self.original.as_str()),
            ('p', port.as_str()),
            ('r', user.as_str()),
            ('u', context.local_user),
        ];
        let path = |text: &str, keyword: &str, loc: &Loc| -> Result<PathBuf, ConfigError> {
            let expanded = expand_tokens(text, keyword, &tokens, loc)?;
            expand_tilde(&expanded, loc, context.home)
        };
        let identity_files = self
            .identity_files
            .iter()
            .map(|f| {
                Ok(Located {
                    value: path(&f.value, "IdentityFile", &f.loc)?,
                    loc: f.loc.clone(),
                })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let known_hosts_files = match &self.known_hosts {
            Some(files) => {
                if files.value.iter().any(|f| f.eq_ignore_ascii_case("none")) {
                    return invalid(
                        &files.loc,
                        "UserKnownHostsFile none would leave no host key to check against; clockprov always checks host keys",
                    );
                }
                Some(Located {
                    value: files
                        .value
                        .iter()
                        .map(|f| path(f, "UserKnownHostsFile", &files.loc))
                        .collect::<Result<Vec<_>, _>>()?,
                    loc: files.loc.clone(),
                })
            }
            None => None,
        };
        let global_known_hosts_files = match &self.global_known_hosts {
            Some(files) => Some(Located {
                value: files
                    .value
                    .iter()
                    .map(|f| path(f, "GlobalKnownHostsFile", &files.loc))
                    .collect::<Result<Vec<_>, _>>()?,
                loc: files.loc.clone(),
            }),
            None => None,
        };
        Ok(HostConfig {
            hostname,
            user: self.user,
            port: self.port,
            identity_files,
            proxy_jump: self.proxy_jump,
            known_hosts_files,
            global_known_hosts_files,
            strict_host_key_checking: self.strict,
        })
    }
}

/// The name of the user running clockprov, for `%u` and `Match localuser`.
#[must_use]
pub fn local_user_name() -> String {
    use std::os::unix::fs::MetadataExt as _;
    if let Some(user) = std::env::var_os("USER").or_else(|| std::env::var_os("LOGNAME")) {
        return user.to_string_lossy().into_owned();
    }
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let mut fields = line.split(':');
            let name = fields.next()?;
            let id: u32 = fields.nth(1)?.parse().ok()?;
            (Some(id) == uid).then(|| name.to_owned())
        })
        .unwrap_or_else(|| "root".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: &str = "/home/ops";

    fn context() -> Context<'static> {
        Context {
            user: None,
            port: None,
            default_user: "root",
            local_user: "ops",
            home: Path::new(HOME),
        }
    }

    fn parse(text: &str) -> SshConfig {
        SshConfig::parse(Path::new("/cfg"), text, Path::new(HOME)).unwrap()
    }

    fn parse_error(text: &str) -> String {
        SshConfig::parse(Path::new("/cfg"), text, Path::new(HOME))
            .unwrap_err()
            .to_string()
    }

    fn lookup(text: &str, host: &str) -> HostConfig {
        parse(text).lookup(host, &context()).unwrap()
    }

    fn lookup_error(text: &str, host: &str) -> String {
        parse(text)
            .lookup(host, &context())
            .unwrap_err()
            .to_string()
    }

    fn user(config: &HostConfig) -> Option<&str> {
        config.user.as_ref().map(|u| u.value.as_str())
    }

    fn hostname(config: &HostConfig) -> Option<String> {
        config.hostname.as_ref().map(|h| h.value.to_string())
    }

    fn identities(config: &HostConfig) -> Vec<String> {
        config
            .identity_files
            .iter()
            .map(|f| f.value.display().to_string())
            .collect()
    }

    fn jump(config: &HostConfig) -> Option<String> {
        config.proxy_jump.as_ref().map(|j| {
            j.value
                .as_ref()
                .map_or("none".to_owned(), ToString::to_string)
        })
    }

    #[test]
    fn first_value_wins_so_host_star_defaults_belong_at_the_bottom() {
        let bottom = "Host db1\n  User alice\nHost *\n  User bob\n  Port 2222\n";
        let config = lookup(bottom, "db1");
        assert_eq!(user(&config), Some("alice"));
        assert_eq!(config.port.map(|p| p.value), Some(2222));
        assert_eq!(user(&lookup(bottom, "other")), Some("bob"));
        // `Host *` at the top shadows everything below it.
        let top = "Host *\n  User bob\nHost db1\n  User alice\n  Port 2200\n";
        let config = lookup(top, "db1");
        assert_eq!(user(&config), Some("bob"));
        assert_eq!(config.port.map(|p| p.value), Some(2200));
        // Lines before any Host apply to every host, and win.
        assert_eq!(
            user(&lookup("User early\nHost db1\n User late\n", "db1")),
            Some("early")
        );
    }

    #[test]
    fn host_patterns_wildcards_negation_and_several_per_line() {
        let text =
            "Host *.lab !bad.lab\n  User lab\nHost web? db1\n  User many\nHost *\n  User default\n";
        assert_eq!(user(&lookup(text, "node.lab")), Some("lab"));
        assert_eq!(user(&lookup(text, "bad.lab")), Some("default"));
        assert_eq!(user(&lookup(text, "web1")), Some("many"));
        assert_eq!(user(&lookup(text, "web12")), Some("default"));
        assert_eq!(user(&lookup(text, "db1")), Some("many"));
        // Host names are matched case-insensitively, as OpenSSH lowercases them.
        assert_eq!(user(&lookup(text, "NODE.Lab")), Some("lab"));
        // A negation alone matches nothing.
        assert_eq!(user(&lookup("Host !x\n User n\n", "y")), None);
    }

    #[test]
    fn keywords_are_case_insensitive_with_equals_quotes_and_comments() {
        let text = "# comment\n\nHOST=db1\n  hostname = 10.0.0.5\n  USER=\"alice\"\n  Port\t2022   # trailing comment\n  IdentityFile \"~/keys/my key\"\n  identityfile='/k/two'\n  UnknownKeyword whatever\n";
        let config = lookup(text, "db1");
        assert_eq!(hostname(&config).as_deref(), Some("10.0.0.5"));
        assert_eq!(user(&config), Some("alice"));
        assert_eq!(config.port.as_ref().map(|p| p.value), Some(2022));
        assert_eq!(identities(&config), ["/home/ops/keys/my key", "/k/two"]);
        assert_eq!(config.port.unwrap().loc.to_string(), "/cfg:6");
    }

    #[test]
    fn identity_files_accumulate_in_order_with_tokens() {
        let text = "Host db1\n  IdentityFile ~/.ssh/%h_%r\n  HostName 10.0.0.5\nHost *\n  IdentityFile %d/.ssh/%u-%n:%p\n  IdentityFile /keys/100%%\n  User bob\n";
        let config = lookup(text, "db1");
        assert_eq!(
            identities(&config),
            [
                "/home/ops/.ssh/10.0.0.5_bob",
                "/home/ops/.ssh/ops-db1:22",
                "/keys/100%"
            ]
        );
        // The explicit (inventory) user and port are what %r and %p see, and Match user.
        let explicit = Context {
            user: Some("carol"),
            port: Some(2200),
            ..context()
        };
        let config = parse(text).lookup("db1", &explicit).unwrap();
        assert_eq!(identities(&config)[0], "/home/ops/.ssh/10.0.0.5_carol");
        assert_eq!(identities(&config)[1], "/home/ops/.ssh/ops-db1:2200");
        assert_eq!(
            lookup_error("IdentityFile ~/%C\n", "x"),
            "/cfg:1: IdentityFile: the token %C is not supported here (supported: %d %h %n %p %r %u, %%)"
        );
    }

    #[test]
    fn hostname_tokens() {
        let text = "Host *.int\n  HostName %h.example.net\nHost pct\n  HostName 100%%\n";
        assert_eq!(
            hostname(&lookup(text, "db.int")).as_deref(),
            Some("db.int.example.net")
        );
        assert_eq!(
            lookup_error(text, "pct"),
            "/cfg:4: HostName: invalid address \"100%\": contains '%', which is not allowed here; expected an IP address or a DNS name"
        );
        assert_eq!(
            lookup_error("HostName %r.x\n", "a"),
            "/cfg:1: HostName: the token %r is not supported here (supported: %h, %%)"
        );
    }

    #[test]
    fn proxy_jump_chains_and_none() {
        let text =
            "Host direct\n  ProxyJump none\nHost *.int\n  ProxyJump huatai@zcloud:2222,bastion\n";
        assert_eq!(
            jump(&lookup(text, "db.int")).as_deref(),
            Some("huatai@zcloud:2222,bastion")
        );
        assert_eq!(jump(&lookup(text, "other")), None);
        // `none` is a value: it wins over a later ProxyJump.
        let none_first = "Host db.int\n  ProxyJump none\nHost *\n  ProxyJump bastion\n";
        assert_eq!(jump(&lookup(none_first, "db.int")).as_deref(), Some("none"));
        assert_eq!(jump(&lookup(none_first, "x")).as_deref(), Some("bastion"));
        assert_eq!(
            parse_error("ProxyJump root@:22\n"),
            "/cfg:1: ProxyJump: invalid jump host \"root@:22\": invalid address \"\": it is empty"
        );
    }

    #[test]
    fn known_hosts_files_and_strictness() {
        let text = "Host a\n  UserKnownHostsFile ~/.ssh/kh1 /etc/kh2\n  StrictHostKeyChecking accept-new\nHost *\n  UserKnownHostsFile /never\n  StrictHostKeyChecking yes\n";
        let config = lookup(text, "a");
        assert_eq!(config.global_known_hosts_files, None);
        let global = |text: &str| {
            lookup(text, "x")
                .global_known_hosts_files
                .map(|files| files.value)
        };
        assert_eq!(
            global("GlobalKnownHostsFile ~/g1 /etc/g2\nGlobalKnownHostsFile /never\n"),
            Some(vec![
                PathBuf::from("/home/ops/g1"),
                PathBuf::from("/etc/g2")
            ])
        );
        assert_eq!(global("GlobalKnownHostsFile none\n"), Some(vec![]));
        let files = config.known_hosts_files.unwrap();
        assert_eq!(
            files.value,
            [
                PathBuf::from("/home/ops/.ssh/kh1"),
                PathBuf::from("/etc/kh2")
            ]
        );
        assert_eq!(
            config.strict_host_key_checking.map(|s| s.value),
            Some(Strictness::AcceptNew)
        );
        assert_eq!(
            lookup(text, "b").strict_host_key_checking.map(|s| s.value),
            Some(Strictness::Yes)
        );
        for (word, expected) in [
            ("no", Strictness::No),
            ("OFF", Strictness::No),
            ("ask", Strictness::Ask),
            ("true", Strictness::Yes),
        ] {
            let config = lookup(&format!("StrictHostKeyChecking {word}\n"), "x");
            assert_eq!(
                config.strict_host_key_checking.map(|s| s.value),
                Some(expected)
            );
        }
        assert_eq!(
            parse_error("StrictHostKeyChecking maybe\n"),
            "/cfg:1: StrictHostKeyChecking \"maybe\": expected yes, accept-new, no, off or ask"
        );
        assert_eq!(
            lookup_error("UserKnownHostsFile none\n", "x"),
            "/cfg:1: UserKnownHostsFile none would leave no host key to check against; clockprov always checks host keys"
        );
    }

    #[test]
    fn match_criteria() {
        let text = "Match originalhost db* !user admin\n  Port 1\nMatch host 10.0.0.*\n  Port 2\nMatch localuser ops\n  Port 3\nMatch all\n  Port 4\n";
        let port = |config: HostConfig| config.port.map(|p| p.value);
        assert_eq!(port(lookup(text, "db1")), Some(1));
        let admin = Context {
            user: Some("admin"),
            ..context()
        };
        assert_eq!(
            port(parse(text).lookup("db1", &admin).unwrap()),
            Some(3),
            "!user admin fails for admin; localuser ops matches"
        );
        // `Match host` sees the HostName obtained so far; `originalhost` the name as given.
        let by_hostname = "Host web\n  HostName 10.0.0.7\nMatch host 10.0.0.*\n  User net\nMatch originalhost web\n  Port 7\n";
        let config = lookup(by_hostname, "web");
        assert_eq!(
            (user(&config), config.port.as_ref().map(|p| p.value)),
            (Some("net"), Some(7))
        );
        assert_eq!(port(lookup("Match localuser root\n Port 9\n", "x")), None);
        // `Match user` sees the User obtained so far, else the default (root).
        let users =
            "Host a\n  User deploy\nMatch user deploy\n  Port 5\nMatch user root\n  Port 6\n";
        assert_eq!(port(lookup(users, "a")), Some(5));
        assert_eq!(port(lookup(users, "b")), Some(6));
    }

    #[test]
    fn match_exec_and_unknown_criteria_are_errors_where_reached_and_never_run() {
        let text = "Host safe\n  User s\nMatch host db* exec \"touch /tmp/pwned\"\n  User x\n";
        // Not reached for `safe`: host db* fails first, as OpenSSH skips the exec.
        assert_eq!(user(&lookup(text, "safe")), Some("s"));
        assert_eq!(
            lookup_error(text, "db1"),
            "/cfg:3: Match exec touch /tmp/pwned is not supported (clockprov never runs commands from an ssh config and evaluates only all, host, originalhost, user and localuser); move this block behind a Host line that excludes the inventory's hosts, or use ssh.config_file"
        );
        assert!(!Path::new("/tmp/pwned").exists());
        assert!(
            lookup_error("Match final\n", "x").starts_with("/cfg:1: Match final is not supported")
        );
        assert!(
            lookup_error("Match tagged t\n", "x")
                .starts_with("/cfg:1: Match tagged t is not supported")
        );
        assert_eq!(
            parse_error("\nMatch host\n"),
            "/cfg:2: Match host needs an argument"
        );
        assert_eq!(
            parse_error("Match all host x\n"),
            "/cfg:1: Match all cannot be combined with other criteria"
        );
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        assert_eq!(
            parse_error("Host a\n  Port 0\n"),
            "/cfg:2: Port \"0\" is not a port number (1 to 65535)"
        );
        assert_eq!(
            parse_error("Port 22 23\n"),
            "/cfg:1: Port takes one value; unexpected \"23\""
        );
        assert_eq!(
            parse_error("User \"open\n"),
            "/cfg:1: an unterminated quote"
        );
        assert_eq!(
            parse_error("Host\n"),
            "/cfg:1: Host needs at least one pattern"
        );
        assert_eq!(
            parse_error("User \"a b\"\n"),
            "/cfg:1: User: invalid user name \"a b\": contains a space"
        );
        assert_eq!(parse_error("HostName\n"), "/cfg:1: HostName needs a value");
    }

    #[test]
    fn include_in_place_with_globs_relative_to_dot_ssh() {
        let home = tempfile::tempdir().unwrap();
        let ssh = home.path().join(".ssh");
        std::fs::create_dir_all(ssh.join("conf.d")).unwrap();
        std::fs::write(
            ssh.join("conf.d/20-b.conf"),
            "Host db1\n  Port 20\n  User b\n",
        )
        .unwrap();
        std::fs::write(ssh.join("conf.d/10-a.conf"), "Host db1\n  Port 10\n").unwrap();
        std::fs::write(ssh.join("conf.d/.hidden"), "Host db1\n  User hidden\n").unwrap();
        std::fs::write(
            ssh.join("scoped"),
            "User scoped\nHost *\n  IdentityFile /scoped-star\n",
        )
        .unwrap();
        let main = ssh.join("config");
        std::fs::write(
            &main,
            "Host db1\n  User first\nInclude conf.d/*.conf conf.d/* missing/*\nHost web\n  Include scoped\n  Port 80\nHost *\n  Port 1\n",
        )
        .unwrap();
        let config = SshConfig::load(&main, home.path()).unwrap();
        let context = Context {
            home: home.path(),
            ..context()
        };
        let db1 = config.lookup("db1", &context).unwrap();
        // In place: the main file's User came first; the includes, sorted, give the Port.
        assert_eq!(user(&db1), Some("first"));
        assert_eq!(db1.port.as_ref().map(|p| p.value), Some(10));
        assert_eq!(
            db1.port.unwrap().loc.to_string(),
            format!("{}:2", ssh.join("conf.d/10-a.conf").display())
        );
        // Included inside `Host web`: applies to web only, and its own `Host *` ends with the
        // file, so `Port 80` after the Include is again web's.
        let web = config.lookup("web", &context).unwrap();
        assert_eq!(user(&web), Some("scoped"));
        assert_eq!(web.port.as_ref().map(|p| p.value), Some(80));
        assert_eq!(identities(&web), ["/scoped-star"]);
        let other = config.lookup("other", &context).unwrap();
        assert_eq!(
            user(&other),
            None,
            "an Include in an inactive block includes nothing"
        );
        assert!(identities(&other).is_empty());
        // An include loop is an error naming the line.
        std::fs::write(ssh.join("loop"), "Include loop\n").unwrap();
        let err = SshConfig::parse(&main, "Include loop\n", home.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("loop:1: Include nested more than 16 deep (a loop?)"),
            "{err}"
        );
    }
}
