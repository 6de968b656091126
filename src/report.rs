//! What users see: plans, apply and bake results and clock checks as text (for people) or JSON
//! (for programs).
//!
//! Pure functions from results to strings. Every output is snapshot-tested below (insta, with
//! the snapshots in `src/snapshots/`), from fixture results including a hostile host.
//!
//! Text from hosts (file contents in diffs, OS names, error text relayed from a host's stderr,
//! daemon states) is untrusted: [`shown`] makes control characters visible (`\x1b`, `\r`), so
//! that a host cannot clear the screen or repaint the plan above the "Apply?" question.

use std::borrow::Cow;
use std::fmt::Write as _;

use serde::Serialize;

use crate::check::{CheckStatus, HostCheck};
use crate::daemon::{Daemon, DaemonVersion};
use crate::image::bake::{ImagePlan, ImageResult, ImageStatus, MachineId};
use crate::operations::{HostResult, HostStatus, Summary};
use crate::plan::{FileAction, FileChange, HostPlan};

/// The JSON document's schema version; bumped only on incompatible changes.
pub(crate) const JSON_FORMAT_VERSION: u32 = 1;

/// The named styles of text output; nothing else paints.
mod tone {
    use anstyle::{AnsiColor, Style};

    pub(super) const HEADING: Style = Style::new().bold();
    pub(super) const ADDED: Style = AnsiColor::Green.on_default();
    pub(super) const CHANGED: Style = AnsiColor::Yellow.on_default();
    pub(super) const REMOVED: Style = AnsiColor::Red.on_default();
    pub(super) const HUNK: Style = AnsiColor::Cyan.on_default();
    pub(super) const GOOD: Style = AnsiColor::Green.on_default();
    pub(super) const BAD: Style = AnsiColor::Red.on_default();
}

/// Colours, or none (not a terminal, or `NO_COLOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Style {
    pub(crate) color: bool,
}

impl Style {
    fn paint(self, tone: anstyle::Style, text: &str) -> String {
        if self.color {
            format!("{tone}{text}{tone:#}")
        } else {
            text.to_owned()
        }
    }
}

/// `text` (from a host) safe to print on a terminal: every control character but tab and
/// newline, and the bidirectional overrides that reorder what a line seems to say, written out
/// as an escape (`\x1b`, `\r`, `\u{202e}`).
#[must_use]
pub(crate) fn shown(text: &str) -> Cow<'_, str> {
    let hostile = |c: char| {
        (c.is_control() && c != '\t' && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(hostile) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\r' => out.push_str("\\r"),
            c if hostile(c) && u32::from(c) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if hostile(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// The marker in front of an action.
#[derive(Debug, Clone, Copy)]
enum Mark {
    Add,
    Change,
    Remove,
    Warn,
}

/// One line of a plan: what would be done.
struct Action {
    mark: Mark,
    text: String,
}

impl Action {
    fn new(mark: Mark, text: String) -> Action {
        Action { mark, text }
    }
}

/// The head of one host's or image's section.
struct Header<'a> {
    name: &'a str,
    /// Where it is: an address or an image path.
    place: &'a str,
    /// Role, OS, daemon and version, as known.
    details: Vec<String>,
    status: &'static str,
    good: Option<bool>,
    error: Option<&'a str>,
}

/// `== NAME (PLACE; DETAIL; ...): STATUS`, then the error, indented, if there is one: the same
/// for hosts and images.
fn header(out: &mut String, head: &Header<'_>, style: Style) {
    let status = match head.good {
        Some(true) => style.paint(tone::GOOD, head.status),
        Some(false) => style.paint(tone::BAD, head.status),
        None => style.paint(tone::CHANGED, head.status),
    };
    let mut place = shown(head.place).into_owned();
    for detail in &head.details {
        let _ = write!(place, "; {}", shown(detail));
    }
    let _ = writeln!(
        out,
        "{} {} ({place}): {status}",
        style.paint(tone::HEADING, "=="),
        style.paint(tone::HEADING, head.name),
    );
    if let Some(error) = head.error {
        let _ = writeln!(out, "   {}", indented(error));
    }
}

/// Host text on continuation lines, under a header or a result line.
fn indented(text: &str) -> String {
    shown(text).replace('\n', "\n   ")
}

fn actions(out: &mut String, actions: &[Action], style: Style) {
    for action in actions {
        let mark = match action.mark {
            Mark::Add => style.paint(tone::ADDED, "+"),
            Mark::Change => style.paint(tone::CHANGED, "~"),
            Mark::Remove => style.paint(tone::REMOVED, "-"),
            Mark::Warn => style.paint(tone::CHANGED, "!"),
        };
        let _ = writeln!(out, "   {mark} {}", shown(&action.text));
    }
}

/// The actions on managed files, the same for hosts and images.
fn file_actions(files: &[FileChange]) -> Vec<Action> {
    files
        .iter()
        .filter_map(|file| match file.action {
            FileAction::Create => Some(Action::new(
                Mark::Add,
                format!("create {} (mode 644, root)", file.path),
            )),
            FileAction::Update => Some(Action::new(Mark::Change, format!("update {}", file.path))),
            FileAction::FixMetadata => {
                let before = file
                    .before
                    .as_ref()
                    .map(|b| format!("{:o} {}:{}", b.mode, b.owner, b.group))
                    .unwrap_or_default();
                Some(Action::new(
                    Mark::Change,
                    format!(
                        "fix mode/owner of {} ({before} -> {:o} {}:{})",
                        file.path, file.after.mode, file.after.owner, file.after.group
                    ),
                ))
            }
            FileAction::Unchanged => None,
        })
        .collect()
}

/// A host's plan: the package, the files, the unit.
fn host_actions(plan: &HostPlan) -> Vec<Action> {
    let mut list = Vec::new();
    if let Some(install) = &plan.package {
        let removes = install
            .removes
            .as_ref()
            .map(|r| format!(" (removes {r}: both provide time-daemon)"))
            .unwrap_or_default();
        list.push(Action::new(
            Mark::Add,
            format!("install package {}{removes}", install.package),
        ));
    }
    list.extend(file_actions(&plan.files));
    let unit = &plan.unit;
    for (wanted, verb) in [
        (unit.enable, "enable"),
        (unit.restart, "restart"),
        (unit.start, "start"),
    ] {
        if wanted {
            list.push(Action::new(Mark::Change, format!("{verb} {}", unit.unit)));
        }
    }
    list
}

/// An image's plan: the files, the links that enable the daemon, the removals, the machine id.
fn image_actions(plan: &ImagePlan) -> Vec<Action> {
    let mut list = file_actions(&plan.files);
    for link in &plan.enable {
        let replaces = link
            .replaces
            .as_ref()
            .map(|r| format!(", was -> {r}"))
            .unwrap_or_default();
        list.push(Action::new(
            Mark::Add,
            format!(
                "link {} -> {} (enable {}{replaces})",
                link.link,
                link.target,
                plan.daemon.unit()
            ),
        ));
    }
    for removal in plan.disable.iter().chain(&plan.clock_state) {
        list.push(Action::new(
            Mark::Remove,
            format!("remove {} ({})", removal.path, removal.why),
        ));
    }
    if let MachineId::Populated { id, reset } = &plan.machine_id {
        list.push(if *reset {
            Action::new(
                Mark::Change,
                format!(
                    "empty /etc/machine-id (was {id}; each clone makes its own at first boot)"
                ),
            )
        } else {
            Action::new(
                Mark::Warn,
                format!(
                    "/etc/machine-id is populated ({id}): every clone would share it; pass --reset-machine-id to empty it"
                ),
            )
        });
    }
    list
}

/// A unified diff, coloured by line. Split on `\n` only: a `\r` in a host's file is shown, not
/// swallowed as part of a line ending.
fn diff(out: &mut String, text: &str, style: Style) {
    for line in text.split_terminator('\n') {
        let line = shown(line);
        let painted = if line.starts_with("+++") || line.starts_with("---") {
            style.paint(tone::HEADING, &line)
        } else if line.starts_with('+') {
            style.paint(tone::ADDED, &line)
        } else if line.starts_with('-') {
            style.paint(tone::REMOVED, &line)
        } else if line.starts_with("@@") {
            style.paint(tone::HUNK, &line)
        } else {
            line.into_owned()
        };
        out.push_str(&painted);
        out.push('\n');
    }
}

/// One section of a plan: the header, the actions, the diffs; a blank line after diffs, so the
/// next header stands apart.
fn section(
    out: &mut String,
    head: &Header<'_>,
    list: &[Action],
    files: &[FileChange],
    style: Style,
) {
    header(out, head, style);
    actions(out, list, style);
    let before = out.len();
    for file in files {
        diff(out, &file.diff, style);
    }
    if out.len() > before {
        out.push('\n');
    }
}

impl<'a> Header<'a> {
    /// A header whose details are what is known of the OS and the daemon.
    fn new(
        name: &'a str,
        place: &'a str,
        os: Option<&str>,
        daemon: Option<(Daemon, DaemonVersion)>,
        (status, good): (&'static str, Option<bool>),
        error: Option<&'a str>,
    ) -> Header<'a> {
        let details = os
            .filter(|os| !os.is_empty())
            .map(str::to_owned)
            .into_iter()
            .chain(daemon.map(|(daemon, version)| format!("{daemon} {version}")))
            .collect();
        Header {
            name,
            place,
            details,
            status,
            good,
            error,
        }
    }
}

fn host_header(result: &HostResult) -> Header<'_> {
    let status = match result.status {
        HostStatus::Change => ("change", None),
        HostStatus::Applied => ("applied", Some(true)),
        HostStatus::Unchanged => ("unchanged", Some(true)),
        HostStatus::Unreachable => ("UNREACHABLE", Some(false)),
        HostStatus::Failed => ("FAILED", Some(false)),
    };
    let mut head = Header::new(
        &result.name,
        &result.address,
        result.os.as_deref(),
        result.plan.as_ref().map(|p| (p.daemon, p.version)),
        status,
        result.error.as_deref(),
    );
    let role = format!("{} {}", result.daemon.short_name(), result.role);
    head.details.insert(0, role);
    head
}

/// Drop the blank line the last section left: the summary brings its own.
fn end_sections(out: &mut String) {
    if out.ends_with("\n\n") {
        out.pop();
    }
}

/// The plan as people read it: per host, the actions then the diffs; a summary line last.
#[must_use]
pub(crate) fn plan_text(results: &[HostResult], style: Style) -> String {
    let mut out = String::new();
    for result in results {
        let (list, files) = match result.plan.as_ref().filter(|p| p.has_changes()) {
            Some(plan) => (host_actions(plan), plan.files.as_slice()),
            None => (Vec::new(), &[][..]),
        };
        section(&mut out, &host_header(result), &list, files, style);
    }
    end_sections(&mut out);
    let s = Summary::of(results);
    let _ = writeln!(
        out,
        "\nPlan: {} to change, {} unchanged, {} unreachable, {} failed.",
        plural(s.change, "host"),
        s.unchanged,
        s.unreachable,
        s.failed
    );
    out
}

/// `ok NAME: what was done`, or `FAILED NAME: why`, with the details indented under it.
fn result_line(out: &mut String, good: bool, word: &str, name: &str, text: &str, style: Style) {
    let word = style.paint(if good { tone::GOOD } else { tone::BAD }, word);
    let _ = writeln!(out, "{word} {name}: {}", indented(text));
}

/// What apply did, per host; a summary line last.
#[must_use]
pub(crate) fn apply_text(results: &[HostResult], style: Style) -> String {
    let mut out = String::new();
    for result in results {
        match (&result.status, &result.apply) {
            (HostStatus::Applied, Some(report)) => {
                result_line(
                    &mut out,
                    true,
                    "ok",
                    &result.name,
                    &report.done.join("; "),
                    style,
                );
                for backup in &report.backups {
                    let _ = writeln!(out, "   backup: {}", shown(backup));
                }
            }
            (HostStatus::Unchanged, _) => {
                result_line(&mut out, true, "ok", &result.name, "unchanged", style);
            }
            (status, _) => {
                let word = if *status == HostStatus::Unreachable {
                    "UNREACHABLE"
                } else {
                    "FAILED"
                };
                let error = result.error.as_deref().unwrap_or("");
                result_line(&mut out, false, word, &result.name, error, style);
            }
        }
    }
    let s = Summary::of(results);
    let _ = writeln!(
        out,
        "\nApply: {} changed, {} unchanged, {} unreachable, {} failed.",
        plural(s.applied, "host"),
        s.unchanged,
        s.unreachable,
        s.failed
    );
    out
}

/// Every command's JSON document: the version, the command, what the command was asked
/// (e.g. `max_skew_seconds`), its items (`hosts` or `images`) and a summary of their statuses.
#[derive(Serialize)]
struct Envelope<'a, C: Serialize, I: Serialize, S: Serialize> {
    format_version: u32,
    command: &'a str,
    #[serde(flatten)]
    context: C,
    #[serde(flatten)]
    items: I,
    summary: S,
}

#[derive(Serialize)]
struct NoContext {}

#[derive(Serialize)]
struct Hosts<'a, T> {
    hosts: &'a [T],
}

#[derive(Serialize)]
struct Images<'a> {
    images: &'a [ImageResult],
}

fn document(envelope: &impl Serialize) -> String {
    // Every field is a plain value: serializing cannot fail.
    let mut text = serde_json::to_string_pretty(envelope).unwrap_or_default();
    text.push('\n');
    text
}

/// The machine-readable document of `plan` and `apply` (schema in the README).
#[must_use]
pub(crate) fn json(command: &str, results: &[HostResult]) -> String {
    document(&Envelope {
        format_version: JSON_FORMAT_VERSION,
        command,
        context: NoContext {},
        items: Hosts { hosts: results },
        summary: Summary::of(results),
    })
}

#[derive(Serialize)]
struct ApplyContext<'a> {
    /// The record this apply wrote (`--record`), null when none was.
    record: Option<&'a std::path::Path>,
}

/// `apply --format json`: as [`json`], with the path of the record written.
#[must_use]
pub(crate) fn apply_json(results: &[HostResult], record: Option<&std::path::Path>) -> String {
    document(&Envelope {
        format_version: JSON_FORMAT_VERSION,
        command: "apply",
        context: ApplyContext { record },
        items: Hosts { hosts: results },
        summary: Summary::of(results),
    })
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:+.6}"))
}

/// Counts of checked hosts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct CheckSummary {
    pub(crate) ok: usize,
    pub(crate) findings: usize,
    pub(crate) unreachable: usize,
    pub(crate) failed: usize,
}

impl CheckSummary {
    #[must_use]
    pub(crate) fn of(checks: &[HostCheck]) -> CheckSummary {
        let count = |status| checks.iter().filter(|c| c.status == status).count();
        CheckSummary {
            ok: count(CheckStatus::Ok),
            findings: count(CheckStatus::Findings),
            unreachable: count(CheckStatus::Unreachable),
            failed: count(CheckStatus::Failed),
        }
    }
}

/// The check as a table: one row per host, findings last; a summary line.
#[must_use]
pub(crate) fn check_text(checks: &[HostCheck], max_skew: f64, style: Style) -> String {
    let mut rows = vec![[
        "HOST".to_owned(),
        "ROLE".to_owned(),
        "OFFSET(s)".to_owned(),
        "+/-(s)".to_owned(),
        "VS SERVER(s)".to_owned(),
        "SYNC".to_owned(),
        "SERVER".to_owned(),
        "VERDICT".to_owned(),
    ]];
    for c in checks {
        rows.push([
            c.name.clone(),
            c.role.to_owned(),
            seconds(c.offset_seconds),
            c.uncertainty_seconds
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.6}")),
            seconds(c.offset_to_server_seconds),
            c.synchronized
                .map_or("-", |s| if s { "yes" } else { "no" })
                .to_owned(),
            c.server
                .as_deref()
                .map_or_else(|| "-".to_owned(), |s| shown(s).into_owned()),
            // One line per host: the table's rows are its structure.
            shown(&c.verdict()).replace('\n', " "),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i == 7 {
                line.push_str(cell);
            } else {
                let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
            }
        }
        let line = line.trim_end();
        let painted = match (n, checks.get(n.wrapping_sub(1)).map(|c| c.status)) {
            (0, _) => style.paint(tone::HEADING, line),
            (_, Some(CheckStatus::Ok)) => line.to_owned(),
            _ => style.paint(tone::BAD, line),
        };
        out.push_str(&painted);
        out.push('\n');
    }
    let s = CheckSummary::of(checks);
    let _ = writeln!(
        out,
        "\nCheck: {} ok, {} with findings, {} unreachable, {} failed (max skew {max_skew} s).",
        plural(s.ok, "host"),
        s.findings,
        s.unreachable,
        s.failed,
    );
    out
}

#[derive(Serialize)]
struct CheckContext {
    max_skew_seconds: f64,
}

/// `check --format json`.
#[must_use]
pub(crate) fn check_json(checks: &[HostCheck], max_skew: f64) -> String {
    document(&Envelope {
        format_version: JSON_FORMAT_VERSION,
        command: "check",
        context: CheckContext {
            max_skew_seconds: max_skew,
        },
        items: Hosts { hosts: checks },
        summary: CheckSummary::of(checks),
    })
}

fn image_header(result: &ImageResult) -> Header<'_> {
    let status = match result.status {
        ImageStatus::Change => ("change", None),
        ImageStatus::Baked => ("baked", Some(true)),
        ImageStatus::Unchanged => ("unchanged", Some(true)),
        ImageStatus::Failed => ("FAILED", Some(false)),
    };
    Header::new(
        &result.name,
        &result.path,
        result.os.as_deref(),
        result.plan.as_ref().map(|p| (p.daemon, p.version)),
        status,
        result.error.as_deref(),
    )
}

/// Counts of images by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct BakeSummary {
    pub(crate) change: usize,
    pub(crate) baked: usize,
    pub(crate) unchanged: usize,
    pub(crate) failed: usize,
}

impl BakeSummary {
    #[must_use]
    pub(crate) fn of(results: &[ImageResult]) -> BakeSummary {
        let count = |status| results.iter().filter(|r| r.status == status).count();
        BakeSummary {
            change: count(ImageStatus::Change),
            baked: count(ImageStatus::Baked),
            unchanged: count(ImageStatus::Unchanged),
            failed: count(ImageStatus::Failed),
        }
    }
}

/// What bake would do, per image: actions, then diffs; a summary line last.
#[must_use]
pub(crate) fn bake_plan_text(results: &[ImageResult], style: Style) -> String {
    let mut out = String::new();
    for result in results {
        let (list, files) = match &result.plan {
            Some(plan) => (image_actions(plan), plan.files.as_slice()),
            None => (Vec::new(), &[][..]),
        };
        section(&mut out, &image_header(result), &list, files, style);
    }
    end_sections(&mut out);
    let s = BakeSummary::of(results);
    let _ = writeln!(
        out,
        "\nBake plan: {} to change, {} unchanged, {} failed.",
        plural(s.change, "image"),
        s.unchanged,
        s.failed,
    );
    out
}

/// What bake did, per image; a summary line last.
#[must_use]
pub(crate) fn bake_done_text(results: &[ImageResult], style: Style) -> String {
    let mut out = String::new();
    for result in results {
        match (&result.status, &result.report) {
            (ImageStatus::Baked, Some(report)) => {
                let mut done = Vec::new();
                for (verb, paths) in [
                    ("wrote", &report.written),
                    ("linked", &report.linked),
                    ("removed", &report.removed),
                ] {
                    if !paths.is_empty() {
                        done.push(format!("{verb} {}", paths.join(", ")));
                    }
                }
                let text = format!("{} ({:.1} s)", done.join("; "), result.seconds);
                result_line(&mut out, true, "ok", &result.name, &text, style);
                for backup in &report.backups {
                    let _ = writeln!(out, "   backup: {}", shown(backup));
                }
            }
            (ImageStatus::Unchanged | ImageStatus::Change, _) => {
                let text = format!("unchanged ({:.1} s)", result.seconds);
                result_line(&mut out, true, "ok", &result.name, &text, style);
            }
            _ => {
                let error = result.error.as_deref().unwrap_or("");
                result_line(&mut out, false, "FAILED", &result.name, error, style);
            }
        }
    }
    let s = BakeSummary::of(results);
    let _ = writeln!(
        out,
        "\nBake: {} baked, {} unchanged, {} failed.",
        plural(s.baked, "image"),
        s.unchanged,
        s.failed,
    );
    out
}

#[derive(Serialize)]
struct BakeContext {
    dry_run: bool,
}

/// `bake --format json`.
#[must_use]
pub(crate) fn bake_json(results: &[ImageResult], dry_run: bool) -> String {
    document(&Envelope {
        format_version: JSON_FORMAT_VERSION,
        command: "bake",
        context: BakeContext { dry_run },
        items: Images { images: results },
        summary: BakeSummary::of(results),
    })
}

#[cfg(test)]
mod tests {
    //! Every text and JSON output from fixture results: a server to change, a client to
    //! update, an unchanged host, an unreachable one, a sudo refusal, and a hostile host whose
    //! os-release, file and error text carry terminal escape sequences.

    use std::collections::BTreeMap;

    use super::*;
    use crate::clock::{DaemonView, Finding};
    use crate::host::apply::ApplyReport;
    use crate::host::facts::{FileFacts, PathFacts};
    use crate::image::bake::{BakeReport, LinkChange, Removal};
    use crate::image::path::GuestPath;
    use crate::outcome::ErrorKind;
    use crate::plan::{PackageInstall, UnitChange, file_changes};
    use crate::render::DesiredFile;

    const PLAIN: Style = Style { color: false };

    fn change(host: &str, path: &str, before: Option<(&str, u32)>, after: &str) -> FileChange {
        let found = BTreeMap::from([(
            path.to_owned(),
            before.map_or(PathFacts::Absent, |(content, mode)| {
                PathFacts::File(FileFacts {
                    content: content.as_bytes().to_vec(),
                    mode,
                    owner: "root".into(),
                    group: "adm".into(),
                })
            }),
        )]);
        let wanted = [DesiredFile {
            path: path.to_owned(),
            content: after.to_owned(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
        }];
        file_changes(host, &wanted, &found).unwrap().remove(0)
    }

    fn plan(host: &str, daemon: Daemon, files: Vec<FileChange>, restart: bool) -> HostPlan {
        HostPlan {
            host: host.to_owned(),
            daemon,
            version: match daemon {
                Daemon::Chrony => DaemonVersion { major: 4, minor: 3 },
                Daemon::Timesyncd => DaemonVersion {
                    major: 245,
                    minor: 4,
                },
            },
            files,
            package: None,
            unit: UnitChange {
                unit: daemon.unit().to_owned(),
                enable: false,
                restart,
                start: false,
            },
        }
    }

    fn row(name: &str, address: &str, daemon: Daemon, status: HostStatus) -> HostResult {
        HostResult {
            name: name.to_owned(),
            address: address.to_owned(),
            role: if daemon == Daemon::Chrony {
                "server"
            } else {
                "client"
            },
            daemon,
            os: Some("Debian GNU/Linux 12 (bookworm)".to_owned()),
            status,
            error: None,
            error_kind: None,
            plan: None,
            apply: None,
        }
    }

    fn failed(mut row: HostResult, status: HostStatus, kind: ErrorKind, error: &str) -> HostResult {
        row.os = None;
        row.status = status;
        row.error = Some(error.to_owned());
        row.error_kind = Some(kind);
        row
    }

    /// A plan over six hosts.
    fn planned() -> Vec<HostResult> {
        let mut server = row(
            "zcloud",
            "192.168.6.200",
            Daemon::Chrony,
            HostStatus::Change,
        );
        let mut server_plan = plan(
            "zcloud",
            Daemon::Chrony,
            vec![change(
                "zcloud",
                "/etc/chrony/chrony.conf",
                None,
                "pool ntp.ubuntu.com iburst\nallow 192.168.6.0/24\nlocal stratum 10\n",
            )],
            true,
        );
        server_plan.package = Some(PackageInstall {
            package: "chrony".into(),
            removes: Some("systemd-timesyncd".into()),
        });
        server_plan.unit.enable = true;
        server.plan = Some(server_plan);
        let mut client = row(
            "z-b-data-1",
            "192.168.6.204",
            Daemon::Timesyncd,
            HostStatus::Change,
        );
        client.os = Some("Ubuntu 20.04.6 LTS".to_owned());
        client.plan = Some(plan(
            "z-b-data-1",
            Daemon::Timesyncd,
            vec![change(
                "z-b-data-1",
                "/etc/systemd/timesyncd.conf",
                Some(("[Time]\n#NTP=\n", 0o600)),
                "[Time]\nNTP=192.168.6.200\n",
            )],
            true,
        ));
        let mut unchanged = row(
            "z-b-data-2",
            "192.168.6.205",
            Daemon::Timesyncd,
            HostStatus::Unchanged,
        );
        unchanged.plan = Some(plan("z-b-data-2", Daemon::Timesyncd, Vec::new(), false));
        let unreachable = failed(
            row(
                "z-b-data-3",
                "192.168.6.206",
                Daemon::Timesyncd,
                HostStatus::Unreachable,
            ),
            HostStatus::Unreachable,
            ErrorKind::Unreachable,
            "cannot reach jump host zcloud for z-b-data-3: connecting to 192.168.6.200:22 timed out after 10s",
        );
        let sudo = failed(
            row(
                "z-b-data-4",
                "192.168.6.207",
                Daemon::Timesyncd,
                HostStatus::Failed,
            ),
            HostStatus::Failed,
            ErrorKind::SudoRefused,
            "sudo denied: huatai may not run commands as root on z-b-data-4 (huatai is not in the sudoers file.)",
        );
        let mut hostile = row(
            "evil",
            "192.168.6.66",
            Daemon::Timesyncd,
            HostStatus::Change,
        );
        hostile.os = Some("Evil Linux\x1b[2J\x1b[H\x07".to_owned());
        hostile.plan = Some(plan(
            "evil",
            Daemon::Timesyncd,
            vec![change(
                "evil",
                "/etc/systemd/timesyncd.conf",
                Some((
                    "[Time]\r\n\x1b]0;pwned\x07\x1b[1A\x1b[2K\u{202e}NTP=1.2.3.4\n",
                    0o644,
                )),
                "[Time]\nNTP=192.168.6.200\n",
            )],
            true,
        ));
        vec![server, client, unchanged, unreachable, sudo, hostile]
    }

    #[test]
    fn plan_text() {
        insta::assert_snapshot!(super::plan_text(&planned(), PLAIN));
    }

    #[test]
    fn plan_text_in_colour_uses_the_named_styles() {
        let hosts = &planned()[1..3];
        insta::assert_snapshot!(shown(&super::plan_text(hosts, Style { color: true })));
    }

    #[test]
    fn plan_json() {
        insta::assert_snapshot!(json("plan", &planned()));
    }

    fn applied() -> Vec<HostResult> {
        let mut rows = planned();
        rows[0].status = HostStatus::Applied;
        rows[0].apply = Some(ApplyReport {
            done: vec![
                "installed chrony (removed systemd-timesyncd)".into(),
                "wrote /etc/chrony/chrony.conf".into(),
                "enabled chrony.service".into(),
                "restarted chrony.service".into(),
            ],
            backups: Vec::new(),
            rolled_back: false,
        });
        rows[1].status = HostStatus::Applied;
        rows[1].apply = Some(ApplyReport {
            done: vec![
                "wrote /etc/systemd/timesyncd.conf".into(),
                "restarted systemd-timesyncd.service".into(),
            ],
            backups: vec!["/etc/systemd/timesyncd.conf.clockprov-20261125T141608Z.bak".into()],
            rolled_back: false,
        });
        rows[5] = failed(
            rows[5].clone(),
            HostStatus::Failed,
            ErrorKind::RemoteCommandFailed,
            "systemd-timesyncd.service is not active after the restart (failed); restored the previous files: Process: 582 ExecStart=/lib/systemd/systemd-timesyncd \x1b[31m(code=exited, status=1/FAILURE)\x1b[0m\r\nline two",
        );
        rows
    }

    #[test]
    fn apply_text() {
        insta::assert_snapshot!(super::apply_text(&applied(), PLAIN));
    }

    #[test]
    fn apply_json() {
        let record = std::path::Path::new(
            "/root/.local/state/clockprov/records/apply-20261125T141608Z.json",
        );
        insta::assert_snapshot!(super::apply_json(&applied(), Some(record)));
    }

    fn check(name: &str, host: u8, role: &'static str, status: CheckStatus) -> HostCheck {
        HostCheck {
            name: name.to_owned(),
            address: format!("192.168.6.{host}"),
            role,
            status,
            error: None,
            error_kind: None,
            offset_seconds: Some(0.001_234),
            uncertainty_seconds: Some(0.000_8),
            offset_to_server_seconds: None,
            synchronized: Some(true),
            server: Some("local".to_owned()),
            unit: Some("chrony.service".to_owned()),
            unit_state: Some("active".to_owned()),
            daemon: Some(DaemonView {
                synchronized: true,
                server: Some("local".to_owned()),
                offset_seconds: Some(0.000_01),
                stratum: Some(10),
                leap_status: Some("Normal".to_owned()),
            }),
            findings: Vec::new(),
        }
    }

    fn checks() -> Vec<HostCheck> {
        let server = check("zcloud", 200, "server", CheckStatus::Ok);
        let mut ok = check("z-b-data-1", 204, "client", CheckStatus::Ok);
        ok.offset_to_server_seconds = Some(0.006_305);
        ok.server = Some("192.168.6.200".to_owned());
        let mut skewed = check("z-b-data-2", 205, "client", CheckStatus::Findings);
        skewed.offset_seconds = Some(-5.001_324);
        skewed.offset_to_server_seconds = Some(-4.999_904);
        skewed.synchronized = Some(false);
        skewed.server = None;
        skewed.findings = vec![
            Finding::NotSynchronized,
            Finding::Skew {
                offset_seconds: -4.999_904,
                max_seconds: 0.05,
            },
        ];
        let mut unreachable = check("z-b-data-3", 206, "client", CheckStatus::Unreachable);
        unreachable.error =
            Some("cannot connect to 192.168.6.206:22: No route to host (os error 113)".into());
        unreachable.error_kind = Some(ErrorKind::Unreachable);
        unreachable.offset_seconds = None;
        unreachable.uncertainty_seconds = None;
        unreachable.synchronized = None;
        unreachable.server = None;
        unreachable.unit = None;
        unreachable.unit_state = None;
        unreachable.daemon = None;
        let mut hostile = check("evil", 66, "client", CheckStatus::Findings);
        hostile.server = Some("\x1b[2J\x1b[Hntp.evil".to_owned());
        hostile.findings = vec![Finding::WrongServer {
            server: hostile.server.clone(),
            expected: vec!["192.168.6.200".to_owned()],
        }];
        vec![server, ok, skewed, unreachable, hostile]
    }

    #[test]
    fn check_text() {
        insta::assert_snapshot!(super::check_text(&checks(), 0.05, PLAIN));
    }

    #[test]
    fn check_json() {
        insta::assert_snapshot!(super::check_json(&checks(), 0.05));
    }

    fn images() -> Vec<ImageResult> {
        let file = change(
            "golden",
            "/etc/systemd/timesyncd.conf",
            Some(("[Time]\n#NTP=\n", 0o644)),
            "[Time]\nNTP=192.168.6.200\n",
        );
        let plan = ImagePlan {
            image: "golden".into(),
            daemon: Daemon::Timesyncd,
            version: DaemonVersion {
                major: 252,
                minor: 39,
            },
            files: vec![file],
            enable: vec![LinkChange {
                link: GuestPath::new("/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service").unwrap(),
                target: GuestPath::new("/lib/systemd/system/systemd-timesyncd.service").unwrap(),
                replaces: None,
            }],
            disable: vec![Removal {
                path: GuestPath::new("/etc/systemd/system/multi-user.target.wants/chrony.service").unwrap(),
                why: "enables chrony.service, which would fight systemd-timesyncd.service over the clock".into(),
            }],
            clock_state: Vec::new(),
            machine_id: MachineId::Populated {
                id: "6c61626d616368696e65000000000000".into(),
                reset: true,
            },
        };
        let golden = ImageResult {
            name: "golden".into(),
            path: "/var/lib/libvirt/images/golden.qcow2".into(),
            status: ImageStatus::Change,
            os: Some("Debian GNU/Linux 12 (bookworm)".into()),
            plan: Some(plan),
            report: None,
            error: None,
            error_kind: None,
            seconds: 18.4,
        };
        let metadata = change(
            "chroot",
            "/etc/systemd/timesyncd.conf",
            Some(("[Time]\nNTP=192.168.6.200\n", 0o600)),
            "[Time]\nNTP=192.168.6.200\n",
        );
        let chroot = ImageResult {
            name: "chroot".into(),
            path: "/srv/chroot".into(),
            status: ImageStatus::Change,
            os: Some("Ubuntu 20.04.6 LTS".into()),
            plan: Some(ImagePlan {
                image: "chroot".into(),
                files: vec![metadata],
                enable: Vec::new(),
                disable: Vec::new(),
                machine_id: MachineId::Fresh,
                ..golden.plan.clone().unwrap()
            }),
            ..golden.clone()
        };
        let lost = ImageResult {
            name: "lost".into(),
            path: "/nowhere.qcow2".into(),
            status: ImageStatus::Failed,
            os: None,
            plan: None,
            report: None,
            error: Some("/nowhere.qcow2: no such file or directory".into()),
            error_kind: Some(ErrorKind::NotFound),
            seconds: 0.0,
        };
        vec![golden, chroot, lost]
    }

    fn baked() -> Vec<ImageResult> {
        let mut images = images();
        images[0].status = ImageStatus::Baked;
        images[0].seconds = 45.5;
        images[0].report = Some(BakeReport {
            written: vec![
                "/etc/systemd/timesyncd.conf".into(),
                "/etc/machine-id".into(),
            ],
            backups: vec!["/etc/systemd/timesyncd.conf.clockprov-20261125T165154Z.bak".into()],
            linked: vec![
                "/etc/systemd/system/sysinit.target.wants/systemd-timesyncd.service".into(),
            ],
            removed: vec!["/etc/systemd/system/multi-user.target.wants/chrony.service".into()],
        });
        images[1].status = ImageStatus::Failed;
        images[1].error = Some("/etc/systemd/timesyncd.conf changed in the image since it was read; nothing more was written".into());
        images[1].error_kind = Some(ErrorKind::Drift);
        images
    }

    #[test]
    fn bake_plan_text() {
        insta::assert_snapshot!(super::bake_plan_text(&images(), PLAIN));
    }

    #[test]
    fn bake_done_text() {
        insta::assert_snapshot!(super::bake_done_text(&baked(), PLAIN));
    }

    #[test]
    fn bake_json() {
        insta::assert_snapshot!(super::bake_json(&baked(), false));
    }

    /// The keys of a JSON object, sorted.
    fn keys(value: &serde_json::Value) -> Vec<String> {
        let mut keys: Vec<String> = value
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    #[test]
    fn the_readmes_json_examples_have_the_documents_fields() {
        // Each example in the README's JSON section is valid JSON with exactly the fields of
        // the document it shows, at the top and for each item: the documentation cannot drift.
        let readme = include_str!("../README.md");
        let section = &readme[readme.find("### JSON (`--format json`)").unwrap()..];
        let section = &section[..section.find("\n## ").unwrap()];
        let examples: Vec<serde_json::Value> = section
            .split("```json\n")
            .skip(1)
            .map(|block| serde_json::from_str(&block[..block.find("```").unwrap()]).unwrap())
            .collect();
        let record = std::path::Path::new("/r.json");
        let documents = [
            json("plan", &planned()),
            super::apply_json(&applied(), Some(record)),
            super::check_json(&checks(), 0.05),
            super::bake_json(&baked(), false),
        ];
        assert_eq!(examples.len(), documents.len(), "one example per command");
        for document in documents {
            let document: serde_json::Value = serde_json::from_str(&document).unwrap();
            let command = &document["command"];
            let example = examples
                .iter()
                .find(|e| &e["command"] == command)
                .unwrap_or_else(|| panic!("no README example for {command}"));
            assert_eq!(keys(example), keys(&document), "{command}");
            assert_eq!(
                keys(&example["summary"]),
                keys(&document["summary"]),
                "{command}"
            );
            let items = if command == "bake" { "images" } else { "hosts" };
            for item in example[items].as_array().unwrap() {
                assert_eq!(keys(item), keys(&document[items][0]), "{command}: {item}");
            }
        }
    }

    #[test]
    fn control_characters_from_hosts_are_shown_not_obeyed() {
        assert_eq!(shown("plain\ttext\n"), "plain\ttext\n");
        assert_eq!(
            shown("\x1b[2J\r\x07\x7f\u{9b}"),
            "\\x1b[2J\\r\\x07\\x7f\\u{9b}"
        );
        assert_eq!(shown("a\u{202e}b"), "a\\u{202e}b");
        for text in [
            super::plan_text(&planned(), PLAIN),
            super::apply_text(&applied(), PLAIN),
            super::check_text(&checks(), 0.05, PLAIN),
        ] {
            assert!(
                !text.contains(|c: char| c.is_control() && c != '\n'),
                "a raw control character: {text:?}"
            );
        }
    }
}
