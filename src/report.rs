//! What users see: plans and apply results as text (for people) or JSON (for programs).
//!
//! Pure functions from results to strings, so the output is snapshot-tested.

use std::fmt::Write as _;

use serde::Serialize;

use crate::check::{CheckStatus, HostCheck};
use crate::fleet::{HostResult, HostStatus, Summary};
use crate::image::bake::{ImagePlan, ImageResult, ImageStatus, MachineId};
use crate::plan::{FileAction, HostPlan};

/// The JSON document's schema version; bumped only on incompatible changes.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// ANSI colours, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("{n} {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn header(out: &mut String, result: &HostResult, style: Style) {
    let mut detail = vec![result.role.clone()];
    if let Some(os) = result.os.as_ref().filter(|os| !os.is_empty()) {
        detail.push(os.clone());
    }
    if let Some(plan) = &result.plan {
        detail.push(format!("{} {}", plan.daemon, plan.version));
    }
    let status = match result.status {
        HostStatus::Change => style.paint("33", "change"),
        HostStatus::Unchanged => style.paint("32", "unchanged"),
        HostStatus::Unreachable => style.paint("31", "UNREACHABLE"),
        HostStatus::Failed => style.paint("31", "FAILED"),
    };
    let _ = writeln!(
        out,
        "{} {} ({}; {}): {status}",
        style.paint("1", "=="),
        style.paint("1", &result.name),
        result.address,
        detail.join(", ")
    );
    if let Some(error) = &result.error {
        let _ = writeln!(out, "   {}", error.replace('\n', "\n   "));
    }
}

/// The actions of a plan, one per line, Terraform-style markers.
fn actions(out: &mut String, plan: &HostPlan, style: Style) {
    if let Some(install) = &plan.package {
        let removes = install
            .removes
            .as_ref()
            .map(|r| format!(" (removes {r}: both provide time-daemon)"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "   {} install package {}{removes}",
            style.paint("32", "+"),
            install.package
        );
    }
    for file in &plan.files {
        let line = match file.action {
            FileAction::Create => format!(
                "{} create {} (mode 644, root)",
                style.paint("32", "+"),
                file.path
            ),
            FileAction::Update => format!("{} update {}", style.paint("33", "~"), file.path),
            FileAction::FixMetadata => {
                let before = file
                    .before
                    .as_ref()
                    .map(|b| format!("{:o} {}:{}", b.mode, b.owner, b.group))
                    .unwrap_or_default();
                format!(
                    "{} fix mode/owner of {} ({before} -> 644 root:root)",
                    style.paint("33", "~"),
                    file.path
                )
            }
            FileAction::Unchanged => continue,
        };
        let _ = writeln!(out, "   {line}");
    }
    let unit = &plan.unit;
    for (wanted, verb) in [
        (unit.enable, "enable"),
        (unit.restart, "restart"),
        (unit.start, "start"),
    ] {
        if wanted {
            let _ = writeln!(out, "   {} {verb} {}", style.paint("33", "~"), unit.unit);
        }
    }
}

fn diff(out: &mut String, text: &str, style: Style) {
    for line in text.lines() {
        let painted = if line.starts_with("+++") || line.starts_with("---") {
            style.paint("1", line)
        } else if line.starts_with('+') {
            style.paint("32", line)
        } else if line.starts_with('-') {
            style.paint("31", line)
        } else if line.starts_with("@@") {
            style.paint("36", line)
        } else {
            line.to_owned()
        };
        out.push_str(&painted);
        out.push('\n');
    }
}

/// The plan as people read it: per host, the actions then the diffs; a summary line last.
#[must_use]
pub fn plan_text(results: &[HostResult], style: Style) -> String {
    let mut out = String::new();
    for result in results {
        header(&mut out, result, style);
        if let Some(plan) = result.plan.as_ref().filter(|p| p.has_changes()) {
            actions(&mut out, plan, style);
            for file in &plan.files {
                diff(&mut out, &file.diff, style);
            }
        }
    }
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

/// What apply did, per host; a summary line last.
#[must_use]
pub fn apply_text(results: &[HostResult], style: Style) -> String {
    let mut out = String::new();
    let mut changed = 0;
    for result in results {
        match (&result.status, &result.apply) {
            (HostStatus::Change, Some(report)) => {
                changed += 1;
                let _ = writeln!(
                    out,
                    "{} {}: {}",
                    style.paint("32", "ok"),
                    result.name,
                    report.done.join("; ")
                );
                for backup in &report.backups {
                    let _ = writeln!(out, "   backup: {backup}");
                }
            }
            (HostStatus::Unchanged, _) => {
                let _ = writeln!(
                    out,
                    "{} {}: unchanged",
                    style.paint("32", "ok"),
                    result.name
                );
            }
            (status, _) => {
                let word = if *status == HostStatus::Unreachable {
                    "UNREACHABLE"
                } else {
                    "FAILED"
                };
                let _ = writeln!(
                    out,
                    "{} {}: {}",
                    style.paint("31", word),
                    result.name,
                    result.error.as_deref().unwrap_or("").replace('\n', "\n   ")
                );
            }
        }
    }
    let s = Summary::of(results);
    let _ = writeln!(
        out,
        "\nApply: {} changed, {} unchanged, {} unreachable, {} failed.",
        plural(changed, "host"),
        s.unchanged,
        s.unreachable,
        s.failed
    );
    out
}

#[derive(Serialize)]
struct JsonDocument<'a> {
    format_version: u32,
    command: &'a str,
    hosts: &'a [HostResult],
    summary: Summary,
}

/// The machine-readable document (schema in the README).
///
/// # Panics
/// Never: every field serializes.
#[must_use]
pub fn json(command: &str, results: &[HostResult]) -> String {
    let document = JsonDocument {
        format_version: JSON_FORMAT_VERSION,
        command,
        hosts: results,
        summary: Summary::of(results),
    };
    let mut text = serde_json::to_string_pretty(&document).expect("results serialize");
    text.push('\n');
    text
}

fn seconds(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |v| format!("{v:+.6}"))
}

/// The check as a table: one row per host, findings last; a summary line.
#[must_use]
pub fn check_text(checks: &[HostCheck], max_skew: f64, style: Style) -> String {
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
        let verdict = c.verdict();
        rows.push([
            c.name.clone(),
            c.role.clone(),
            seconds(c.offset_seconds),
            c.uncertainty_seconds
                .map_or_else(|| "-".to_owned(), |v| format!("{v:.6}")),
            seconds(c.offset_to_server_seconds),
            c.synchronized
                .map_or("-", |s| if s { "yes" } else { "no" })
                .to_owned(),
            c.server.clone().unwrap_or_else(|| "-".to_owned()),
            verdict,
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
            (0, _) => style.paint("1", line),
            (_, Some(CheckStatus::Ok)) => line.to_owned(),
            _ => style.paint("31", line),
        };
        out.push_str(&painted);
        out.push('\n');
    }
    let count = |status| checks.iter().filter(|c| c.status == status).count();
    let _ = writeln!(
        out,
        "\nCheck: {} ok, {} with findings, {} unreachable, {} failed (max skew {max_skew} s).",
        plural(count(CheckStatus::Ok), "host"),
        count(CheckStatus::Findings),
        count(CheckStatus::Unreachable),
        count(CheckStatus::Failed),
    );
    out
}

#[derive(Serialize)]
struct CheckDocument<'a> {
    format_version: u32,
    command: &'a str,
    max_skew_seconds: f64,
    hosts: &'a [HostCheck],
}

/// `check --format json`.
///
/// # Panics
/// Never: every field serializes.
#[must_use]
pub fn check_json(checks: &[HostCheck], max_skew: f64) -> String {
    let document = CheckDocument {
        format_version: JSON_FORMAT_VERSION,
        command: "check",
        max_skew_seconds: max_skew,
        hosts: checks,
    };
    let mut text = serde_json::to_string_pretty(&document).expect("checks serialize");
    text.push('\n');
    text
}

fn image_header(out: &mut String, result: &ImageResult, style: Style) {
    let mut detail = vec![result.path.clone()];
    if let Some(os) = &result.os {
        detail.push(os.clone());
    }
    if let Some(plan) = &result.plan {
        detail.push(format!("{} {}", plan.daemon, plan.version));
    }
    let status = match result.status {
        ImageStatus::Change => style.paint("33", "change"),
        ImageStatus::Baked => style.paint("32", "baked"),
        ImageStatus::Unchanged => style.paint("32", "unchanged"),
        ImageStatus::Failed => style.paint("31", "FAILED"),
    };
    let _ = writeln!(
        out,
        "{} {} ({}): {status}",
        style.paint("1", "=="),
        style.paint("1", &result.name),
        detail.join("; ")
    );
    if let Some(error) = &result.error {
        let _ = writeln!(out, "   {}", error.replace('\n', "\n   "));
    }
}

fn image_actions(out: &mut String, plan: &ImagePlan, style: Style) {
    let add = style.paint("32", "+");
    let change = style.paint("33", "~");
    let remove = style.paint("31", "-");
    for file in &plan.files {
        let line = match file.action {
            FileAction::Create => format!("{add} create {} (mode 644, root)", file.path),
            FileAction::Update => format!("{change} update {}", file.path),
            FileAction::FixMetadata => format!("{change} fix mode/owner of {}", file.path),
            FileAction::Unchanged => continue,
        };
        let _ = writeln!(out, "   {line}");
    }
    for link in &plan.enable {
        let replaces = link
            .replaces
            .as_ref()
            .map(|r| format!(", was -> {r}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "   {add} link {} -> {} (enable {}{replaces})",
            link.link,
            link.target,
            plan.daemon.unit()
        );
    }
    for removal in plan.disable.iter().chain(&plan.clock_state) {
        let _ = writeln!(out, "   {remove} remove {} ({})", removal.path, removal.why);
    }
    if let MachineId::Populated { id, reset } = &plan.machine_id {
        if *reset {
            let _ = writeln!(
                out,
                "   {change} empty /etc/machine-id (was {id}; each clone makes its own at first boot)"
            );
        } else {
            let _ = writeln!(
                out,
                "   {} /etc/machine-id is populated ({id}): every clone would share it; pass --reset-machine-id to empty it",
                style.paint("33", "!")
            );
        }
    }
}

fn image_count(results: &[ImageResult], status: ImageStatus) -> usize {
    results.iter().filter(|r| r.status == status).count()
}

/// What bake would do, per image: actions, then diffs; a summary line last.
#[must_use]
pub fn bake_plan_text(results: &[ImageResult], style: Style) -> String {
    let mut out = String::new();
    for result in results {
        image_header(&mut out, result, style);
        if let Some(plan) = &result.plan {
            image_actions(&mut out, plan, style);
            for file in &plan.files {
                diff(&mut out, &file.diff, style);
            }
        }
    }
    let _ = writeln!(
        out,
        "\nBake plan: {} to change, {} unchanged, {} failed.",
        plural(image_count(results, ImageStatus::Change), "image"),
        image_count(results, ImageStatus::Unchanged),
        image_count(results, ImageStatus::Failed),
    );
    out
}

/// What bake did, per image; a summary line last.
#[must_use]
pub fn bake_done_text(results: &[ImageResult], style: Style) -> String {
    let mut out = String::new();
    for result in results {
        match (&result.status, &result.report) {
            (ImageStatus::Baked, Some(report)) => {
                let mut done = Vec::new();
                if !report.written.is_empty() {
                    done.push(format!("wrote {}", report.written.join(", ")));
                }
                if !report.linked.is_empty() {
                    done.push(format!("linked {}", report.linked.join(", ")));
                }
                if !report.removed.is_empty() {
                    done.push(format!("removed {}", report.removed.join(", ")));
                }
                let _ = writeln!(
                    out,
                    "{} {}: {} ({:.1} s)",
                    style.paint("32", "ok"),
                    result.name,
                    done.join("; "),
                    result.seconds
                );
                for backup in &report.backups {
                    let _ = writeln!(out, "   backup: {backup}");
                }
            }
            (ImageStatus::Unchanged | ImageStatus::Change, _) => {
                let _ = writeln!(
                    out,
                    "{} {}: unchanged ({:.1} s)",
                    style.paint("32", "ok"),
                    result.name,
                    result.seconds
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{} {}: {}",
                    style.paint("31", "FAILED"),
                    result.name,
                    result.error.as_deref().unwrap_or("").replace('\n', "\n   ")
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "\nBake: {} baked, {} unchanged, {} failed.",
        plural(image_count(results, ImageStatus::Baked), "image"),
        image_count(results, ImageStatus::Unchanged),
        image_count(results, ImageStatus::Failed),
    );
    out
}

#[derive(Serialize)]
struct BakeDocument<'a> {
    format_version: u32,
    command: &'a str,
    dry_run: bool,
    images: &'a [ImageResult],
}

/// `bake --format json`.
///
/// # Panics
/// Never: every field serializes.
#[must_use]
pub fn bake_json(results: &[ImageResult], dry_run: bool) -> String {
    let document = BakeDocument {
        format_version: JSON_FORMAT_VERSION,
        command: "bake",
        dry_run,
        images: results,
    };
    let mut text = serde_json::to_string_pretty(&document).expect("results serialize");
    text.push('\n');
    text
}
