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

use crate::ceph::{CephView, MonitorView};
use crate::check::{CheckStatus, ControllerClock, HostCheck};
use crate::daemon::{Daemon, DaemonVersion};
use crate::effective::Effective;
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
    /// Not an action: what the host will have (its effective servers).
    Note,
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
            Mark::Note => "=".to_owned(),
        };
        let _ = writeln!(out, "   {mark} {}", shown(&action.text));
    }
}

/// The actions on managed files, the same for hosts and images.
/// `restores`: a host's daemon, whose main file a plan may give back its vendor's text (not an
/// image's: bake does not migrate).
fn file_actions(restores: Option<Daemon>, files: &[FileChange]) -> Vec<Action> {
    files
        .iter()
        .filter_map(|file| match file.action {
            FileAction::Update
                if restores.is_some_and(|d| crate::layout::is_vendor_restore(d, file)) =>
            {
                let how = if restores == Some(Daemon::Chrony) {
                    format!(
                        "the text its package shipped, {}, with clockprov's managed lines",
                        crate::layout::CHRONY_VENDOR_COPY
                    )
                } else {
                    "as its package shipped it; clockprov's servers are in its drop-in".to_owned()
                };
                Some(Action::new(
                    Mark::Change,
                    format!("restore vendor file {} ({how})", file.path),
                ))
            }
            FileAction::Create => {
                let after = &file.after;
                // `root` for root:root, the common case; the pair when they differ (an NTS key:
                // 640 root:_chrony).
                let owner = if after.owner == after.group {
                    after.owner.clone()
                } else {
                    format!("{}:{}", after.owner, after.group)
                };
                Some(Action::new(
                    Mark::Add,
                    format!("create {} (mode {:o}, {owner})", file.path, after.mode),
                ))
            }
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
    list.extend(file_actions(Some(plan.daemon), &plan.files));
    list.extend(
        plan.switch_off
            .iter()
            .map(|step| Action::new(Mark::Change, crate::vendor_sources::describe(step))),
    );
    let unit = &plan.unit;
    for (wanted, verb) in [
        (unit.enable, "enable"),
        (unit.restart, "restart"),
        (unit.start, "start"),
    ] {
        if wanted {
            let why = if verb == "restart" && unit.pending && !plan.changes_configuration() {
                " (restart pending from an interrupted apply)"
            } else {
                ""
            };
            list.push(Action::new(
                Mark::Change,
                format!("{verb} {}{why}", unit.unit),
            ));
        }
    }
    list
}

/// The servers the daemon will use, when files besides clockprov's shape them, and what the
/// inventory did not ask for. (Only clockprov's file: its diff says it all.)
fn effective_actions(effective: &Effective) -> Vec<Action> {
    if !effective.is_shaped_by_others() {
        return Vec::new();
    }
    let servers: Vec<&str> = effective
        .servers
        .iter()
        .map(|s| s.server.as_str())
        .collect();
    let what = if effective.fallback {
        "FallbackNTP servers"
    } else {
        "servers"
    };
    let servers = if servers.is_empty() {
        "none".to_owned()
    } else {
        servers.join(" ")
    };
    let also = if effective.dropins.is_empty() {
        String::new()
    } else {
        format!(" (also read: {})", effective.dropins.join(", "))
    };
    let mut list = vec![Action::new(
        Mark::Note,
        format!(
            "{} will use {what}: {servers}{also}",
            effective.daemon.short_name()
        ),
    )];
    list.extend(
        effective
            .warnings
            .iter()
            .map(|w| Action::new(Mark::Warn, format!("warning: {w}"))),
    );
    list
}

/// An image's plan: the files, the links that enable the daemon, the removals, the machine id.
fn image_actions(plan: &ImagePlan) -> Vec<Action> {
    let mut list = file_actions(None, &plan.files);
    list.extend(
        plan.switch_off
            .iter()
            .map(|step| Action::new(Mark::Change, crate::vendor_sources::describe(step))),
    );
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
    // A client whose daemon is its OS's default is named by its role alone until it is read.
    let role = match result.daemon {
        Some(daemon) => format!("{} {}", daemon.short_name(), result.role),
        None => result.role.to_owned(),
    };
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
        let (mut list, files) = match result.plan.as_ref().filter(|p| p.has_changes()) {
            Some(plan) => (host_actions(plan), plan.files.as_slice()),
            None => (Vec::new(), &[][..]),
        };
        if let Some(effective) = &result.effective {
            list.extend(effective_actions(effective));
        }
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
                for pruned in &report.pruned {
                    let _ = writeln!(out, "   pruned: {}", shown(pruned));
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
    pub(crate) warning: usize,
    pub(crate) findings: usize,
    pub(crate) inconclusive: usize,
    pub(crate) unreachable: usize,
    pub(crate) failed: usize,
}

impl CheckSummary {
    #[must_use]
    pub(crate) fn of(checks: &[HostCheck]) -> CheckSummary {
        let count = |status| checks.iter().filter(|c| c.status == status).count();
        CheckSummary {
            ok: count(CheckStatus::Ok),
            warning: count(CheckStatus::Warning),
            findings: count(CheckStatus::Findings),
            inconclusive: count(CheckStatus::Inconclusive),
            unreachable: count(CheckStatus::Unreachable),
            failed: count(CheckStatus::Failed),
        }
    }
}

/// What a check was judged against, and when: the context of every check output.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct CheckContext {
    pub(crate) max_skew_seconds: f64,
    pub(crate) max_server_offset_seconds: f64,
    /// The controller's own clock (read locally): server offsets are judged only when it is
    /// synchronized.
    pub(crate) controller_clock: ControllerClock,
    /// When the check ended (Unix seconds, the controller's clock).
    pub(crate) checked_at_unix_seconds: f64,
}

/// The check as a table: one row per host, findings last; a summary line.
#[must_use]
pub(crate) fn check_text(
    checks: &[HostCheck],
    context: &CheckContext,
    ceph: Option<&CephView>,
    style: Style,
) -> String {
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
            (_, Some(CheckStatus::Warning | CheckStatus::Inconclusive)) => {
                style.paint(tone::CHANGED, line)
            }
            _ => style.paint(tone::BAD, line),
        };
        out.push_str(&painted);
        out.push('\n');
    }
    nts_text(&mut out, checks);
    let s = CheckSummary::of(checks);
    let _ = writeln!(
        out,
        "\nCheck: {} ok, {} warning, {} with findings, {} inconclusive, {} unreachable, {} failed \
         (max skew {} s, max server offset {} s; {}).",
        plural(s.ok, "host"),
        s.warning,
        s.findings,
        s.inconclusive,
        s.unreachable,
        s.failed,
        context.max_skew_seconds,
        context.max_server_offset_seconds,
        context.controller_clock.describe(),
    );
    if let Some(ceph) = ceph {
        ceph_text(&mut out, ceph, style);
    }
    out
}

/// Each chrony source that uses authentication (NTS or a key), per host, as `chronyc -N
/// authdata` reported it; nothing when no source does.
fn nts_text(out: &mut String, checks: &[HostCheck]) {
    let rows: Vec<(&str, &crate::clock::SourceAuth)> = checks
        .iter()
        .flat_map(|c| {
            c.daemon
                .iter()
                .flat_map(|d| d.authentication.iter())
                .filter(|a| a.mode != "-")
                .map(|a| (c.name.as_str(), a))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    out.push_str("\nAuthentication (chronyc -N authdata):\n");
    for (host, source) in rows {
        let _ = writeln!(
            out,
            "  {host}: {} {} {}",
            shown(&source.source),
            shown(&source.mode),
            if source.authenticated {
                "authenticated".to_owned()
            } else {
                format!(
                    "NOT authenticated ({} NTS-KE attempts, {} cookies)",
                    source.nts_ke_attempts, source.cookies
                )
            }
        );
    }
}

/// A monitor's verdict: how Ceph's skew compares with clockprov's.
fn monitor_verdict(m: &MonitorView) -> String {
    let mut verdict = match (m.agree, m.clockprov_skew_seconds) {
        (Some(true), _) => "agree".to_owned(),
        (Some(false), Some(ours)) => format!(
            "DISAGREE: differ by {:.6} s, more than the bound",
            (ours - m.ceph_skew_seconds).abs()
        ),
        _ => "not measured by clockprov".to_owned(),
    };
    if m.leader {
        verdict.push_str(" (leader)");
    }
    verdict
}

/// `check --ceph`: Ceph's view, after the table: its health, its clock-skew warning's lines,
/// and each monitor's skew beside clockprov's.
fn ceph_text(out: &mut String, ceph: &CephView, style: Style) {
    let report = match ceph {
        CephView::Error { queried, error } => {
            let line = format!("Ceph (asked on {}): {}", shown(queried), shown(error));
            let _ = writeln!(
                out,
                "\n{}",
                style.paint(tone::BAD, &line.replace('\n', " "))
            );
            return;
        }
        CephView::Report(report) => report,
    };
    let mut head = format!(
        "Ceph (asked on {}): {}",
        shown(&report.queried),
        shown(&report.health)
    );
    if let Some(skew) = &report.clock_skew {
        let _ = write!(
            head,
            ", MON_CLOCK_SKEW ({}): {}",
            shown(&skew.severity),
            shown(&skew.summary)
        );
    }
    let head = head.replace('\n', " ");
    let tone_of = |bad: bool| if bad { tone::BAD } else { tone::HEADING };
    let _ = writeln!(out, "\n{}", style.paint(tone_of(report.warns()), &head));
    if let Some(skew) = &report.clock_skew {
        for line in &skew.detail {
            let _ = writeln!(out, "  {}", shown(line).replace('\n', " "));
        }
    }
    let mut rows = vec![[
        "MONITOR".to_owned(),
        "HOST".to_owned(),
        "CEPH SKEW(s)".to_owned(),
        "LATENCY(s)".to_owned(),
        "CLOCKPROV(s)".to_owned(),
        "BOUND(s)".to_owned(),
        "CEPH SAYS".to_owned(),
        "VERDICT".to_owned(),
    ]];
    for m in &report.monitors {
        rows.push([
            format!("mon.{}", shown(&m.monitor)),
            m.host
                .as_deref()
                .map_or_else(|| "-".to_owned(), |h| shown(h).into_owned()),
            format!("{:+.6}", m.ceph_skew_seconds),
            format!("{:.6}", m.ceph_latency_seconds),
            seconds(m.clockprov_skew_seconds),
            m.bound_seconds
                .map_or_else(|| "-".to_owned(), |b| format!("{b:.6}")),
            shown(&m.ceph_health).into_owned(),
            monitor_verdict(m),
        ]);
    }
    let widths: Vec<usize> = (0..8)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    for (n, row) in rows.iter().enumerate() {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<width$}  ", width = widths[i]);
        }
        let line = line.trim_end().replace('\n', " ");
        let painted = match n.checked_sub(1).and_then(|i| report.monitors.get(i)) {
            None => style.paint(tone::HEADING, &line),
            Some(m) if m.agree == Some(false) => style.paint(tone::BAD, &line),
            Some(m) if m.ceph_health != "HEALTH_OK" => style.paint(tone::CHANGED, &line),
            Some(_) => line,
        };
        out.push_str(&painted);
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "(skews: the monitor's clock minus the leader's; they disagree beyond clockprov's \
         uncertainty for both hosts plus three times Ceph's latency.)"
    );
}

/// `check --format json`.
#[must_use]
pub(crate) fn check_json(
    checks: &[HostCheck],
    context: &CheckContext,
    ceph: Option<&CephView>,
) -> String {
    /// The check's context, and Ceph's view when asked for (`--ceph`): an addition to version 1.
    #[derive(Serialize)]
    struct WithCeph<'a> {
        #[serde(flatten)]
        context: &'a CheckContext,
        #[serde(skip_serializing_if = "Option::is_none")]
        ceph: Option<&'a CephView>,
    }
    document(&Envelope {
        format_version: JSON_FORMAT_VERSION,
        command: "check",
        context: WithCeph { context, ceph },
        items: Hosts { hosts: checks },
        summary: CheckSummary::of(checks),
    })
}

/// A Prometheus label value: backslash, double quote and newline escaped.
fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `check --format prometheus`: the text exposition format, for `node_exporter`'s textfile
/// collector. Every metric is `clockprov_`-prefixed (no clash with `node_exporter`'s
/// `node_timex_*` or `chrony_exporter`'s `chrony_*`), in seconds, labelled host/role/server
/// (`server`: the inventory server a client is judged against; empty for servers).
#[must_use]
pub(crate) fn check_prometheus(
    checks: &[HostCheck],
    context: &CheckContext,
    ceph: Option<&CephView>,
) -> String {
    type Metric = (
        &'static str,
        &'static str,
        fn(&HostCheck, &CheckContext) -> Option<f64>,
    );
    let metrics: [Metric; 9] = [
        (
            "offset_seconds",
            "Host clock minus the controller's clock, in seconds (positive: the host is ahead).",
            |c, _| c.offset_seconds,
        ),
        (
            "offset_to_server_seconds",
            "Client clock minus its NTP server's clock, both measured from the controller (positive: the client is ahead).",
            |c, _| c.offset_to_server_seconds,
        ),
        (
            "uncertainty_seconds",
            "Uncertainty of the offset that the host is judged by (half the round trips), in seconds.",
            |c, _| c.uncertainty_seconds,
        ),
        (
            "synchronized",
            "1 when the host's time daemon is running and says it is synchronized.",
            |c, _| c.synchronized.map(|s| if s { 1.0 } else { 0.0 }),
        ),
        ("stratum", "NTP stratum the time daemon reports.", |c, _| {
            c.daemon.as_ref().and_then(|d| d.stratum).map(f64::from)
        }),
        (
            "server_isolated",
            "1 for a server serving its own clock (local stratum, no upstream reached).",
            |c, _| {
                (c.role == "server" && c.status != CheckStatus::Unreachable).then(|| {
                    if c.findings
                        .iter()
                        .any(|f| matches!(f, crate::clock::Finding::Isolated { .. }))
                    {
                        1.0
                    } else {
                        0.0
                    }
                })
            },
        ),
        (
            "reachable",
            "1 when clockprov could connect to the host.",
            |c, _| {
                Some(if c.status == CheckStatus::Unreachable {
                    0.0
                } else {
                    1.0
                })
            },
        ),
        (
            "last_check_timestamp_seconds",
            "When clockprov last checked the host (Unix time, the controller's clock).",
            |_, context| Some(context.checked_at_unix_seconds),
        ),
        (
            "check_success",
            "1 when the host's verdict is ok (or only a warning, such as an isolated server).",
            |c, _| Some(if c.status.is_settled() { 1.0 } else { 0.0 }),
        ),
    ];
    let mut out = String::new();
    for (name, help, value) in metrics {
        let _ = writeln!(out, "# HELP clockprov_{name} {help}");
        let _ = writeln!(out, "# TYPE clockprov_{name} gauge");
        for c in checks {
            if let Some(v) = value(c, context).filter(|v| v.is_finite()) {
                let _ = writeln!(
                    out,
                    "clockprov_{name}{{host=\"{}\",role=\"{}\",server=\"{}\"}} {v}",
                    label_value(&c.name),
                    c.role,
                    label_value(c.judged_against.as_deref().unwrap_or("")),
                );
            }
        }
    }
    if let Some(ceph) = ceph {
        ceph_prometheus(&mut out, ceph);
    }
    out
}

/// `check --ceph` in Prometheus: `clockprov_ceph_*` gauges, per monitor labelled
/// monitor/host (`host`: the inventory host it maps to; empty when none).
fn ceph_prometheus(out: &mut String, ceph: &CephView) {
    type Metric = (&'static str, &'static str, fn(&MonitorView) -> Option<f64>);
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let (queried, report) = match ceph {
        CephView::Report(r) => (r.queried.as_str(), Some(r)),
        CephView::Error { queried, .. } => (queried.as_str(), None),
    };
    let queried = label_value(queried);
    let cluster: [(&str, &str, Option<f64>); 2] = [
        (
            "up",
            "1 when Ceph answered clockprov's queries on the queried monitor host.",
            Some(flag(report.is_some())),
        ),
        (
            "clock_skew_warning",
            "1 when Ceph raises MON_CLOCK_SKEW (ceph health detail).",
            report.map(|r| flag(r.warns())),
        ),
    ];
    for (name, help, value) in cluster {
        let _ = writeln!(out, "# HELP clockprov_ceph_{name} {help}");
        let _ = writeln!(out, "# TYPE clockprov_ceph_{name} gauge");
        if let Some(v) = value {
            let _ = writeln!(out, "clockprov_ceph_{name}{{queried=\"{queried}\"}} {v}");
        }
    }
    let metrics: [Metric; 6] = [
        (
            "skew_seconds",
            "Ceph's skew for the monitor: its clock minus the leader's, in seconds (ceph time-sync-status).",
            |m| Some(m.ceph_skew_seconds),
        ),
        (
            "latency_seconds",
            "Ceph's time-check latency to the monitor, in seconds (ceph time-sync-status).",
            |m| Some(m.ceph_latency_seconds),
        ),
        (
            "monitor_healthy",
            "1 when Ceph judges the monitor's clock HEALTH_OK.",
            |m| {
                Some(if m.ceph_health == "HEALTH_OK" {
                    1.0
                } else {
                    0.0
                })
            },
        ),
        (
            "measured_skew_seconds",
            "clockprov's measurement of the same skew: the monitor's offset minus the leader's, in seconds.",
            |m| m.clockprov_skew_seconds,
        ),
        (
            "skew_bound_seconds",
            "Largest difference between Ceph's skew and clockprov's that is agreement, in seconds.",
            |m| m.bound_seconds,
        ),
        (
            "skew_agree",
            "1 when Ceph's skew and clockprov's agree within the bound.",
            |m| m.agree.map(|a| if a { 1.0 } else { 0.0 }),
        ),
    ];
    for (name, help, value) in metrics {
        let _ = writeln!(out, "# HELP clockprov_ceph_{name} {help}");
        let _ = writeln!(out, "# TYPE clockprov_ceph_{name} gauge");
        for m in report.map_or(&[][..], |r| &r.monitors) {
            if let Some(v) = value(m).filter(|v| v.is_finite()) {
                let _ = writeln!(
                    out,
                    "clockprov_ceph_{name}{{queried=\"{queried}\",monitor=\"{}\",host=\"{}\"}} {v}",
                    label_value(&m.monitor),
                    label_value(m.host.as_deref().unwrap_or("")),
                );
            }
        }
    }
}

/// A Nagios/Icinga service state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum NagiosState {
    Ok,
    Warning,
    Unknown,
    Critical,
}

impl NagiosState {
    /// The plugin's exit code.
    #[must_use]
    pub(crate) fn code(self) -> u8 {
        match self {
            NagiosState::Ok => 0,
            NagiosState::Warning => 1,
            NagiosState::Critical => 2,
            NagiosState::Unknown => 3,
        }
    }

    fn word(self) -> &'static str {
        match self {
            NagiosState::Ok => "OK",
            NagiosState::Warning => "WARNING",
            NagiosState::Critical => "CRITICAL",
            NagiosState::Unknown => "UNKNOWN",
        }
    }
}

/// The offset a host is judged by, for thresholds: a client's to its server; a server's to
/// the controller, when that is judged (not isolated, controller synchronized).
fn judged_offset(c: &HostCheck, context: &CheckContext) -> Option<f64> {
    if c.role == "server" {
        let isolated = c
            .findings
            .iter()
            .any(|f| matches!(f, crate::clock::Finding::Isolated { .. }));
        c.offset_seconds
            .filter(|_| !isolated && context.controller_clock.synchronized)
    } else {
        c.offset_to_server_seconds
    }
}

/// One host's Nagios state and what to say about it.
fn nagios_host(
    c: &HostCheck,
    context: &CheckContext,
    warning: f64,
    critical: f64,
) -> (NagiosState, String) {
    use crate::clock::{Finding, Severity};
    match c.status {
        CheckStatus::Unreachable | CheckStatus::Failed | CheckStatus::Inconclusive => {
            return (NagiosState::Unknown, c.verdict());
        }
        _ => {}
    }
    // Offsets are judged by --warning/--critical here; every other problem is critical.
    let other: Vec<String> = c
        .findings
        .iter()
        .filter(|f| {
            f.severity() == Severity::Problem
                && !matches!(f, Finding::Skew { .. } | Finding::ServerOffset { .. })
        })
        .map(ToString::to_string)
        .collect();
    if !other.is_empty() {
        return (NagiosState::Critical, other.join("; "));
    }
    if let Some(offset) = judged_offset(c, context) {
        if offset.abs() > critical {
            return (
                NagiosState::Critical,
                format!("offset {offset:+.6} s beyond {critical} s"),
            );
        }
        if offset.abs() > warning {
            return (
                NagiosState::Warning,
                format!("offset {offset:+.6} s beyond {warning} s"),
            );
        }
    }
    if c.status == CheckStatus::Warning {
        return (NagiosState::Warning, c.verdict());
    }
    (NagiosState::Ok, "ok".to_owned())
}

/// Ceph's view as a Nagios state: its clock-skew warning is WARNING (CRITICAL when Ceph says
/// `HEALTH_ERR`), a disagreement with clockprov WARNING, no view UNKNOWN.
fn ceph_nagios(ceph: &CephView) -> (NagiosState, String) {
    let report = match ceph {
        CephView::Error { error, .. } => return (NagiosState::Unknown, error.clone()),
        CephView::Report(report) => report,
    };
    let mut state = NagiosState::Ok;
    let mut why = Vec::new();
    if let Some(skew) = &report.clock_skew {
        state = if skew.severity == "HEALTH_ERR" {
            NagiosState::Critical
        } else {
            NagiosState::Warning
        };
        why.push(format!("MON_CLOCK_SKEW {}", skew.summary));
    }
    for m in report.monitors.iter().filter(|m| m.agree == Some(false)) {
        state = state.max(NagiosState::Warning);
        why.push(format!("mon.{} {}", m.monitor, monitor_verdict(m)));
    }
    (state, why.join(", "))
}

/// A perfdata label: single-quoted, quotes doubled, no `=`.
fn perf_label(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''").replace('=', "_"))
}

/// `check --format nagios`: one status line, the hosts not OK named in it, perfdata for each
/// judged offset (`'HOST offset'=VALUEs;WARN;CRIT`). The fleet's state is the worst host's,
/// CRITICAL > UNKNOWN > WARNING > OK (an unreachable host is UNKNOWN). Returns the line and
/// the exit code.
#[must_use]
pub(crate) fn check_nagios(
    checks: &[HostCheck],
    context: &CheckContext,
    ceph: Option<&CephView>,
    warning: f64,
    critical: f64,
) -> (String, u8) {
    let judged: Vec<(NagiosState, String)> = checks
        .iter()
        .map(|c| nagios_host(c, context, warning, critical))
        .collect();
    let ceph_state = ceph.map(ceph_nagios);
    let state = judged
        .iter()
        .map(|(s, _)| *s)
        .chain(ceph_state.as_ref().map(|(s, _)| *s))
        .max()
        .unwrap_or(NagiosState::Unknown);
    let count = |s| judged.iter().filter(|(j, _)| *j == s).count();
    let mut line = format!(
        "CLOCKPROV {} - {}: {} critical, {} warning, {} unknown, {} ok",
        state.word(),
        plural(checks.len(), "host"),
        count(NagiosState::Critical),
        count(NagiosState::Warning),
        count(NagiosState::Unknown),
        count(NagiosState::Ok),
    );
    for (c, (s, why)) in checks.iter().zip(&judged) {
        if *s != NagiosState::Ok {
            let _ = write!(line, "; {} {}: {}", c.name, s.word(), why);
        }
    }
    if let Some((s, why)) = &ceph_state
        && *s != NagiosState::Ok
    {
        let _ = write!(line, "; ceph {}: {}", s.word(), why);
    }
    // One line: a host's text never breaks it (nor the perfdata separator).
    let mut line = shown(&line).replace(['\n', '|'], " ");
    let perf: Vec<String> = checks
        .iter()
        .filter_map(|c| {
            judged_offset(c, context).map(|v| {
                format!(
                    "{}={v:.6}s;{warning};{critical}",
                    perf_label(&format!("{} offset", c.name))
                )
            })
        })
        .collect();
    let mut perf = perf;
    if let Some(CephView::Report(report)) = ceph {
        perf.extend(report.monitors.iter().map(|m| {
            format!(
                "{}={:.6}s",
                perf_label(&format!("ceph mon.{} skew", m.monitor)),
                m.ceph_skew_seconds
            )
        }));
    }
    if !perf.is_empty() {
        line.push_str(" | ");
        line.push_str(&perf.join(" "));
    }
    line.push('\n');
    (line, state.code())
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
    use crate::check::judge_fleet;
    use crate::clock::{ClockReading, DaemonView, Limits, Offset};
    use crate::host::apply::ApplyReport;
    use crate::host::facts::{FileFacts, PathFacts};
    use crate::image::bake::{BakeReport, LinkChange, Removal};
    use crate::image::path::GuestPath;
    use crate::outcome::ErrorKind;
    use crate::outcome::{HostError, Outcome};
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
            kind: crate::render::FileKind::Config,
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
            switch_off: Vec::new(),
            unit: UnitChange {
                unit: daemon.unit().to_owned(),
                enable: false,
                restart,
                start: false,
                pending: false,
                active_before: true,
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
            daemon: Some(daemon),
            os: Some("Debian GNU/Linux 12 (bookworm)".to_owned()),
            status,
            error: None,
            error_kind: None,
            plan: None,
            effective: None,
            apply: None,
            facts: None,
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
    /// What a daemon will use: `(server, file)`s, read besides clockprov's file: `dropins`;
    /// every server from a drop-in is one the inventory did not name.
    fn effective(daemon: Daemon, servers: &[(&str, &str)], dropins: &[&str]) -> Effective {
        Effective {
            daemon,
            servers: servers
                .iter()
                .map(|(server, file)| crate::effective::Source {
                    server: (*server).to_owned(),
                    file: (*file).to_owned(),
                })
                .collect(),
            fallback: false,
            dropins: dropins.iter().map(|d| (*d).to_owned()).collect(),
            warnings: servers
                .iter()
                .filter(|(_, file)| dropins.contains(file))
                .map(|(server, file)| {
                    format!("server {server} (from {file}) is not in the inventory")
                })
                .collect(),
        }
    }

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
            vec![
                change(
                    "z-b-data-1",
                    crate::layout::TIMESYNCD_DROPIN,
                    Some(("[Time]\nNTP=\nNTP=192.168.6.1\n", 0o600)),
                    "[Time]\nNTP=\nNTP=192.168.6.200\n",
                ),
                // The migration: the main file clockprov once wrote whole, given back.
                change(
                    "z-b-data-1",
                    "/etc/systemd/timesyncd.conf",
                    Some(("# Managed by clockprov\n[Time]\nNTP=192.168.6.1\n", 0o644)),
                    "[Time]\n#NTP=\n",
                ),
            ],
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
                crate::layout::TIMESYNCD_DROPIN,
                Some((
                    "[Time]\r\n\x1b]0;pwned\x07\x1b[1A\x1b[2K\u{202e}NTP=1.2.3.4\n",
                    0o644,
                )),
                "[Time]\nNTP=192.168.6.200\n",
            )],
            true,
        ));
        with_effective(vec![server, client, unchanged, unreachable, sudo, hostile])
    }

    /// The servers zcloud's and z-b-data-1's daemons will use: a drop-in read after clockprov's
    /// adds its provider's server to z-b-data-1's.
    fn with_effective(mut rows: Vec<HostResult>) -> Vec<HostResult> {
        rows[0].effective = Some(effective(
            Daemon::Chrony,
            &[("ntp.ubuntu.com", "/etc/chrony/chrony.conf")],
            &[],
        ));
        let cloud = "/etc/systemd/timesyncd.conf.d/zzz-cloud.conf";
        rows[1].effective = Some(effective(
            Daemon::Timesyncd,
            &[
                ("192.168.6.200", crate::layout::TIMESYNCD_DROPIN),
                ("169.254.169.123", cloud),
            ],
            &[cloud],
        ));
        rows
    }

    #[test]
    fn plan_text() {
        insta::assert_snapshot!(super::plan_text(&planned(), PLAIN));
    }

    #[test]
    fn a_switched_off_vendor_source_is_a_change_that_restarts() {
        // An Ubuntu 26.04 chrony client whose only change is its pools file; the effective
        // servers after the step (the pools' gone).
        let mut client = row(
            "data-26",
            "192.168.6.207",
            Daemon::Chrony,
            HostStatus::Change,
        );
        client.role = "client";
        client.os = Some("Ubuntu 26.04.1 LTS".into());
        let mut client_plan = plan("data-26", Daemon::Chrony, Vec::new(), true);
        client_plan
            .switch_off
            .push(crate::vendor_sources::SwitchOff {
                path: "/etc/chrony/sources.d/ubuntu-ntp-pools.sources".into(),
                to: "/etc/chrony/sources.d/ubuntu-ntp-pools.sources.clockprov-off".into(),
                sha256: "d".repeat(64),
                replaces_sha256: None,
                after_install: false,
            });
        assert!(client_plan.has_changes() && client_plan.changes_configuration());
        client.plan = Some(client_plan);
        insta::assert_snapshot!(super::plan_text(&[client.clone()], PLAIN), @r"
        == data-26 (192.168.6.207; chrony client; Ubuntu 26.04.1 LTS; chrony 4.3): change
           ~ switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources (renamed to ubuntu-ntp-pools.sources.clockprov-off: chrony reads only *.sources; rename it back to undo)
           ~ restart chrony.service

        Plan: 1 host to change, 0 unchanged, 0 unreachable, 0 failed.
        ");
        let json: serde_json::Value = serde_json::to_value(client.plan.as_ref().unwrap()).unwrap();
        assert_eq!(
            json["switch_off"][0]["to"],
            "/etc/chrony/sources.d/ubuntu-ntp-pools.sources.clockprov-off"
        );
        // Only a step after a package install says so (plans made before it read the same).
        assert_eq!(json["switch_off"][0].get("after_install"), None, "{json:#}");
    }

    #[test]
    fn a_chrony_install_shows_the_step_for_the_pools_file_it_will_create() {
        // An Ubuntu 26.04 timesyncd client swapped to chrony: the file is not there yet.
        let mut client = row(
            "data-26",
            "192.168.6.207",
            Daemon::Chrony,
            HostStatus::Change,
        );
        client.role = "client";
        client.os = Some("Ubuntu 26.04.1 LTS".into());
        let mut client_plan = plan("data-26", Daemon::Chrony, Vec::new(), true);
        client_plan.package = Some(crate::plan::PackageInstall {
            package: "chrony".into(),
            removes: Some("systemd-timesyncd".into()),
        });
        client_plan.unit.enable = true;
        client_plan
            .switch_off
            .push(crate::vendor_sources::SwitchOff {
                path: "/etc/chrony/sources.d/ubuntu-ntp-pools.sources".into(),
                to: "/etc/chrony/sources.d/ubuntu-ntp-pools.sources.clockprov-off".into(),
                sha256: crate::vendor_sources::ABSENT.into(),
                replaces_sha256: None,
                after_install: true,
            });
        client.plan = Some(client_plan);
        insta::assert_snapshot!(super::plan_text(&[client.clone()], PLAIN), @r"
        == data-26 (192.168.6.207; chrony client; Ubuntu 26.04.1 LTS; chrony 4.3): change
           + install package chrony (removes systemd-timesyncd: both provide time-daemon)
           ~ switch off vendor source /etc/chrony/sources.d/ubuntu-ntp-pools.sources if installing chrony creates it (Ubuntu's package does; renamed to ubuntu-ntp-pools.sources.clockprov-off right after the install: chrony reads only *.sources; rename it back to undo)
           ~ enable chrony.service
           ~ restart chrony.service

        Plan: 1 host to change, 0 unchanged, 0 unreachable, 0 failed.
        ");
        let json: serde_json::Value = serde_json::to_value(client.plan.as_ref().unwrap()).unwrap();
        assert_eq!(json["switch_off"][0]["after_install"], true, "{json:#}");
        assert_eq!(json["switch_off"][0]["sha256"], "absent", "{json:#}");
    }

    #[test]
    fn a_new_file_shows_the_mode_and_owner_it_gets() {
        let key = FileChange {
            path: "/etc/chrony/nts/clockprov.key".into(),
            action: FileAction::Create,
            before: None,
            after: DesiredFile {
                path: "/etc/chrony/nts/clockprov.key".into(),
                content: String::new(),
                mode: 0o640,
                owner: "root".into(),
                group: "_chrony".into(),
                kind: crate::render::FileKind::Secret,
            },
            diff: String::new(),
        };
        let texts: Vec<String> = file_actions(Some(Daemon::Chrony), &[key])
            .into_iter()
            .map(|a| a.text)
            .collect();
        assert_eq!(
            texts,
            ["create /etc/chrony/nts/clockprov.key (mode 640, root:_chrony)"]
        );
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
            pruned: Vec::new(),
            not_created: Vec::new(),
            rolled_back: false,
        });
        rows[1].status = HostStatus::Applied;
        rows[1].apply = Some(ApplyReport {
            done: vec![
                "wrote /etc/systemd/timesyncd.conf".into(),
                "restarted systemd-timesyncd.service".into(),
            ],
            backups: vec!["/etc/systemd/timesyncd.conf.clockprov-20261125T141608Z.bak".into()],
            pruned: Vec::new(),
            not_created: Vec::new(),
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

    const INVENTORY: &str = "\
ntp_servers:
  zcloud:
    address: 192.168.6.200
    local_stratum: 10
    allow: [192.168.6.0/24]
clients:
  z-b-data-1: { address: 192.168.6.204 }
  z-b-data-2: { address: 192.168.6.205 }
  z-b-data-3: { address: 192.168.6.206 }
  z-b-data-4: { address: 192.168.6.207 }
  z-b-data-5: { address: 192.168.6.208 }
  z-b-data-6: { address: 192.168.6.209 }
  z-evil: { address: 192.168.6.66 }
";

    fn fleet() -> Vec<crate::inventory::Host> {
        crate::inventory::Inventory::parse(std::path::Path::new("inv.yaml"), INVENTORY)
            .unwrap()
            .hosts
    }

    fn reading(
        offset: f64,
        uncertainty: f64,
        daemon: Daemon,
        state: &str,
        view: DaemonView,
    ) -> Outcome<ClockReading> {
        Outcome::Done(ClockReading {
            offset: Offset {
                offset,
                uncertainty,
            },
            unit: daemon.unit().to_owned(),
            unit_state: state.to_owned(),
            view,
        })
    }

    fn synced_to(server: &str, offset: f64) -> DaemonView {
        DaemonView {
            synchronized: true,
            server: Some(server.to_owned()),
            offset_seconds: Some(offset),
            stratum: Some(11),
            leap_status: Some("normal".to_owned()),
            authentication: Vec::new(),
        }
    }

    /// One fleet judged from fixture readings: the server isolated (0.7 s from the
    /// controller), and clients ok, skewed, stopped, unsynchronized, unreachable, too uncertain
    /// to judge, and a hostile one.
    fn readings() -> Vec<Outcome<ClockReading>> {
        let isolated = DaemonView {
            synchronized: true,
            server: Some("local".to_owned()),
            offset_seconds: Some(0.000_01),
            stratum: Some(10),
            leap_status: Some("normal".to_owned()),
            authentication: Vec::new(),
        };
        let ts = Daemon::Timesyncd;
        vec![
            reading(0.700_000, 0.000_4, Daemon::Chrony, "active", isolated),
            reading(
                0.706_305,
                0.000_4,
                ts,
                "active",
                synced_to("192.168.6.200", 0.000_2),
            ),
            reading(
                3.701_324,
                0.000_4,
                ts,
                "active",
                synced_to("192.168.6.200", 0.013_9),
            ),
            // Stopped: nothing was asked, so the daemon has no view.
            reading(0.701_100, 0.000_4, ts, "inactive", DaemonView::default()),
            reading(
                0.699_000,
                0.000_4,
                ts,
                "active",
                DaemonView {
                    leap_status: Some("not-synchronized".to_owned()),
                    ..DaemonView::default()
                },
            ),
            Outcome::Unreachable(HostError::new(
                ErrorKind::Unreachable,
                "cannot connect to 192.168.6.208:22: No route to host (os error 113)",
            )),
            reading(
                0.710_000,
                0.080_000,
                ts,
                "active",
                synced_to("192.168.6.200", 0.001),
            ),
            reading(
                0.701_234,
                0.000_4,
                ts,
                "active",
                synced_to("\x1b[2J\x1b[Hntp.evil", 0.0),
            ),
        ]
    }

    const CONTEXT: CheckContext = CheckContext {
        max_skew_seconds: 0.05,
        max_server_offset_seconds: 0.1,
        controller_clock: ControllerClock {
            synchronized: true,
            max_error_seconds: Some(0.016),
        },
        checked_at_unix_seconds: 1_764_083_718.5,
    };

    fn limits(context: &CheckContext) -> Limits {
        Limits {
            max_skew: context.max_skew_seconds,
            max_server_offset: context.max_server_offset_seconds,
            controller_synchronized: context.controller_clock.synchronized,
        }
    }

    fn checks() -> Vec<HostCheck> {
        judge_fleet(&fleet(), &readings(), &limits(&CONTEXT))
    }

    /// The server unreachable, and synchronized to an upstream under an unsynchronized
    /// controller: never ok by omission, never judged against a clock that is no reference.
    fn checks_without_server() -> (Vec<HostCheck>, Vec<HostCheck>, CheckContext) {
        let hosts = &fleet()[..3];
        let mut readings = readings();
        readings.truncate(3);
        readings[0] = Outcome::Unreachable(HostError::new(
            ErrorKind::Unreachable,
            "cannot connect to 192.168.6.200:22: Connection refused (os error 111)",
        ));
        let unmeasured = judge_fleet(hosts, &readings, &limits(&CONTEXT));
        let unsynced = CheckContext {
            controller_clock: ControllerClock {
                synchronized: false,
                max_error_seconds: Some(16.0),
            },
            ..CONTEXT
        };
        readings[0] = reading(
            0.9,
            0.000_4,
            Daemon::Chrony,
            "active",
            synced_to("203.0.113.7", 0.000_03),
        );
        let upstream = judge_fleet(hosts, &readings, &limits(&unsynced));
        (unmeasured, upstream, unsynced)
    }

    #[test]
    fn check_text() {
        insta::assert_snapshot!(super::check_text(&checks(), &CONTEXT, None, PLAIN));
    }

    /// NTS clients as chrony 4.8 reported them on the VM lab: one authenticated, one with a
    /// CA that did not sign the server's certificate.
    #[test]
    fn check_reports_each_sources_nts_authentication() {
        let source = "ntp_servers:\n  zcloud:\n    address: 192.168.6.200\n    local_stratum: 10\n    allow: [192.168.6.0/24]\n    nts: { certificate: server.crt, key: server.key }\nclients:\n  good: { address: 192.168.6.226, daemon: chrony, nts: { trusted_certs: ca.crt } }\n  wrong-ca: { address: 192.168.6.227, daemon: chrony, nts: true }\n";
        let hosts =
            crate::inventory::Inventory::parse(&crate::nts::tests::fixture("inv.yaml"), source)
                .unwrap()
                .hosts;
        let authenticated = |csv: &str| DaemonView {
            authentication: crate::clock::parse_authdata(csv),
            ..synced_to("192.168.6.200", 0.000_02)
        };
        let readings = vec![
            reading(
                0.0,
                0.000_4,
                Daemon::Chrony,
                "active",
                synced_to("203.0.113.7", 0.0),
            ),
            reading(
                0.000_1,
                0.000_4,
                Daemon::Chrony,
                "active",
                authenticated(include_str!("../tests/fixtures/nts/chronyc/csv-ok.txt")),
            ),
            reading(
                0.000_1,
                0.000_4,
                Daemon::Chrony,
                "active",
                authenticated(include_str!(
                    "../tests/fixtures/nts/chronyc/csv-wrong-ca.txt"
                )),
            ),
        ];
        let checks = judge_fleet(&hosts, &readings, &limits(&CONTEXT));
        let text = super::check_text(&checks, &CONTEXT, None, PLAIN);
        let from = text.find("good").unwrap();
        insta::assert_snapshot!(&text[from..text.find("\nCheck:").unwrap()], @r"
        good      client  +0.000100  0.000800  +0.000100     yes   192.168.6.200  ok
        wrong-ca  client  +0.000100  0.000800  +0.000100     yes   192.168.6.200  NTS: 192.168.6.200 not authenticated by NTS (no key: NTS-KE failed, 1 attempt, 0 cookies)

        Authentication (chronyc -N authdata):
          good: 192.168.6.200 NTS authenticated
          wrong-ca: 192.168.6.200 NTS NOT authenticated (1 NTS-KE attempts, 0 cookies)
        ");
        let json: serde_json::Value =
            serde_json::from_str(&super::check_json(&checks, &CONTEXT, None)).unwrap();
        let auth = |i: usize| json["hosts"][i]["daemon"]["authentication"][0].clone();
        assert_eq!(auth(1)["authenticated"], true, "{json}");
        assert_eq!(auth(1)["mode"], "NTS");
        assert_eq!(auth(2)["authenticated"], false);
        assert_eq!(json["hosts"][2]["status"], "findings");
        assert_eq!(json["hosts"][0]["daemon"].get("authentication"), None);
    }

    #[test]
    fn check_json() {
        insta::assert_snapshot!(super::check_json(&checks(), &CONTEXT, None));
    }

    #[test]
    fn check_text_without_a_measured_server() {
        let (unmeasured, upstream, unsynced) = checks_without_server();
        insta::assert_snapshot!(format!(
            "{}\n{}",
            super::check_text(&unmeasured, &CONTEXT, None, PLAIN),
            super::check_text(&upstream, &unsynced, None, PLAIN)
        ));
    }

    #[test]
    fn check_prometheus() {
        insta::assert_snapshot!(super::check_prometheus(&checks(), &CONTEXT, None));
    }

    /// The Ceph lab (tests/lab/lab.sh up --ceph) with mon.z-b-data-2 stepped 4 s: what Ceph
    /// printed (tests/fixtures/ceph/skewed-*.json) beside what `lab.sh offset` measured then.
    fn ceph_lab(state: &str) -> (Vec<HostCheck>, CephView) {
        const LAB: &str = "\
ntp_servers:
  zcloud: { address: 192.168.6.200, local_stratum: 10, allow: [192.168.6.0/24] }
clients:
  z-b-data-1: { address: 192.168.6.204 }
  z-b-data-2: { address: 192.168.6.205 }
  z-b-data-3: { address: 192.168.6.206 }
";
        let hosts = crate::inventory::Inventory::parse(std::path::Path::new("inv.yaml"), LAB)
            .unwrap()
            .hosts;
        let ts = Daemon::Timesyncd;
        let skewed = state == "skewed";
        let two = if skewed { 4.000_779 } else { 0.000_779 };
        let readings = vec![
            reading(
                0.0,
                0.002,
                Daemon::Chrony,
                "active",
                synced_to("local", 0.0),
            ),
            reading(
                0.001_536,
                0.003_937,
                ts,
                "active",
                synced_to("192.168.6.200", 0.0),
            ),
            reading(
                two,
                0.002_578,
                ts,
                "active",
                synced_to("192.168.6.200", 0.0),
            ),
            reading(
                -0.004_102,
                0.006_119,
                ts,
                "active",
                synced_to("192.168.6.200", 0.0),
            ),
        ];
        let checks = judge_fleet(&hosts, &readings, &limits(&CONTEXT));
        let fixture = |name: &str| {
            let path = format!(
                "{}/tests/fixtures/ceph/{state}-{name}.json",
                env!("CARGO_MANIFEST_DIR")
            );
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
        };
        let report = crate::ceph::compare(
            "z-b-data-1",
            &crate::ceph::parse_time_sync_status(&fixture("time-sync-status")).unwrap(),
            &crate::ceph::parse_health_detail(&fixture("health-detail")).unwrap(),
            &crate::ceph::parse_quorum_status(&fixture("quorum-status")).unwrap(),
            &crate::check::measured(&checks),
        );
        (checks, CephView::Report(report))
    }

    #[test]
    fn check_ceph_skewed() {
        let (checks, ceph) = ceph_lab("skewed");
        let CephView::Report(report) = &ceph else {
            unreachable!()
        };
        assert!(report.warns() && !report.disagrees(), "{report:#?}");
        let two = &report.monitors[1];
        assert_eq!(two.host.as_deref(), Some("z-b-data-2"));
        assert_eq!(two.agree, Some(true));
        insta::assert_snapshot!(super::check_text(&checks, &CONTEXT, Some(&ceph), PLAIN));
        insta::assert_snapshot!(super::check_json(&checks, &CONTEXT, Some(&ceph)));
        insta::assert_snapshot!(super::check_prometheus(&checks, &CONTEXT, Some(&ceph)));
        let (line, code) = super::check_nagios(&checks, &CONTEXT, Some(&ceph), 0.05, 0.1);
        insta::assert_snapshot!(line);
        assert_eq!(code, 2, "z-b-data-2's own skew is critical: {line}");
        // Ceph's warning alone is a WARNING, even where clockprov finds nothing.
        let (line, code) = super::check_nagios(&checks[..2], &CONTEXT, Some(&ceph), 0.05, 0.1);
        assert_eq!(code, 1, "{line}");
        assert!(
            line.contains("ceph WARNING: MON_CLOCK_SKEW clock skew detected on mon.z-b-data-2"),
            "{line}"
        );
    }

    #[test]
    fn check_ceph_healthy_and_disagreeing() {
        let (checks, ceph) = ceph_lab("healthy");
        let CephView::Report(report) = &ceph else {
            unreachable!()
        };
        assert!(!report.warns() && !report.disagrees(), "{report:#?}");
        insta::assert_snapshot!(super::check_text(&checks, &CONTEXT, Some(&ceph), PLAIN));
        // The clients only: the isolated server is a WARNING of its own.
        let (line, code) = super::check_nagios(&checks[1..], &CONTEXT, Some(&ceph), 0.05, 0.1);
        assert_eq!(code, 0, "{line}");
        // Ceph's skewed figures beside a fleet clockprov finds in step: a disagreement.
        let report = crate::ceph::compare(
            "z-b-data-1",
            &crate::ceph::parse_time_sync_status(
                &std::fs::read_to_string(format!(
                    "{}/tests/fixtures/ceph/skewed-time-sync-status.json",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap(),
            )
            .unwrap(),
            &crate::ceph::parse_health_detail("{\"status\":\"HEALTH_OK\",\"checks\":{}}").unwrap(),
            &crate::ceph::parse_quorum_status(
                &std::fs::read_to_string(format!(
                    "{}/tests/fixtures/ceph/skewed-quorum-status.json",
                    env!("CARGO_MANIFEST_DIR")
                ))
                .unwrap(),
            )
            .unwrap(),
            &crate::check::measured(&checks),
        );
        assert!(report.disagrees(), "{report:#?}");
        let ceph = CephView::Report(report);
        let text = super::check_text(&checks, &CONTEXT, Some(&ceph), PLAIN);
        assert!(text.contains("DISAGREE: differ by 3.94"), "{text}");
        let (line, code) = super::check_nagios(&checks[1..], &CONTEXT, Some(&ceph), 0.05, 0.1);
        assert_eq!(code, 1, "{line}");
        let metrics = super::check_prometheus(&checks, &CONTEXT, Some(&ceph));
        assert!(metrics.contains("clockprov_ceph_skew_agree{queried=\"z-b-data-1\",monitor=\"z-b-data-2\",host=\"z-b-data-2\"} 0\n"), "{metrics}");
        // No view at all: said, and UNKNOWN.
        let error = CephView::Error {
            queried: "z-b-data-1".into(),
            error: "the host has no `ceph` command".into(),
        };
        let text = super::check_text(&checks, &CONTEXT, Some(&error), PLAIN);
        assert!(
            text.ends_with("\nCeph (asked on z-b-data-1): the host has no `ceph` command\n"),
            "{text}"
        );
        assert_eq!(
            super::check_nagios(&checks, &CONTEXT, Some(&error), 0.05, 0.1).1,
            3
        );
    }

    #[test]
    fn check_nagios() {
        let (line, code) = super::check_nagios(&checks(), &CONTEXT, None, 0.05, 0.1);
        insta::assert_snapshot!(format!("exit {code}\n{line}"));
        // Host by host: the exit code of each kind of host.
        let all = checks();
        let code_of = |i: usize| super::check_nagios(&all[i..=i], &CONTEXT, None, 0.05, 0.1).1;
        assert_eq!(code_of(0), 1, "isolated server: WARNING");
        assert_eq!(code_of(1), 0, "ok");
        assert_eq!(code_of(2), 2, "skewed: CRITICAL");
        assert_eq!(code_of(3), 2, "stopped: CRITICAL");
        assert_eq!(code_of(4), 2, "unsynchronized: CRITICAL");
        assert_eq!(code_of(5), 3, "unreachable: UNKNOWN");
        assert_eq!(code_of(6), 3, "inconclusive: UNKNOWN");
        assert_eq!(
            super::check_nagios(&all[1..=1], &CONTEXT, None, 0.001, 0.1).1,
            1,
            "beyond --warning"
        );
    }

    /// No column or field contradicts another, whatever the host's state.
    #[test]
    fn check_output_never_contradicts_itself() {
        let (unmeasured, upstream, _) = checks_without_server();
        for c in checks().iter().chain(&unmeasured).chain(&upstream) {
            let running = c.unit_state.as_deref() == Some("active");
            if c.synchronized == Some(true) {
                assert!(running, "SYNC yes beside a stopped daemon: {c:?}");
            }
            if c.status == CheckStatus::Ok {
                assert!(c.findings.is_empty(), "{c:?}");
                if c.role == "client" {
                    assert!(
                        c.offset_to_server_seconds.is_some(),
                        "ok by omission: {c:?}"
                    );
                    assert_eq!(c.synchronized, Some(true), "{c:?}");
                }
            }
            // One sign: a daemon's offset agrees in sign with clockprov's own measurement
            // whenever both are clearly away from zero.
            if let (Some(ours), Some(theirs)) = (
                c.offset_to_server_seconds,
                c.daemon.as_ref().and_then(|d| d.offset_seconds),
            ) && ours.abs() > 0.01
                && theirs.abs() > 0.01
            {
                assert!(
                    ours.is_sign_positive() == theirs.is_sign_positive(),
                    "{c:?}"
                );
            }
            if let Some(leap) = c.daemon.as_ref().and_then(|d| d.leap_status.as_deref()) {
                assert!(
                    [
                        "normal",
                        "insert-second",
                        "delete-second",
                        "not-synchronized"
                    ]
                    .contains(&leap),
                    "{leap}"
                );
            }
        }
        assert!(
            unmeasured[1..]
                .iter()
                .all(|c| c.status == CheckStatus::Inconclusive),
            "{unmeasured:?}"
        );
    }

    fn images() -> Vec<ImageResult> {
        let file = change(
            "golden",
            crate::layout::TIMESYNCD_DROPIN,
            None,
            "[Time]\nNTP=\nNTP=192.168.6.200\n",
        );
        let plan = ImagePlan {
            image: "golden".into(),
            daemon: Daemon::Timesyncd,
            version: DaemonVersion {
                major: 252,
                minor: 39,
            },
            files: vec![file],
            switch_off: Vec::new(),
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
            crate::layout::TIMESYNCD_DROPIN,
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
            super::check_json(&checks(), &CONTEXT, None),
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
            super::check_text(&checks(), &CONTEXT, None, PLAIN),
        ] {
            assert!(
                !text.contains(|c: char| c.is_control() && c != '\n'),
                "a raw control character: {text:?}"
            );
        }
    }
}
