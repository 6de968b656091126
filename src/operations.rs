//! What `plan` and `apply` do to the fleet: per host, connect, read its facts, render and plan;
//! then carry out the plans. Each is one task per host through [`fleet::for_each`]; a host's
//! row ([`HostResult`]) is what the report prints and what `--format json` holds.

use std::sync::Arc;

use serde::Serialize;

use crate::daemon::{Daemon, Family};
use crate::effective::Effective;
use crate::fleet::{self, Item, RunOptions};
use crate::host::apply::{ApplyOptions, ApplyReport, apply_host};
use crate::host::facts::{self, FactsRequest, HostFacts};
use crate::inventory::Host;
use crate::outcome::{ErrorKind, HostError, Outcome};
use crate::plan::{FileAction, HostPlan, plan};
use crate::planfile::SavedHost;
use crate::progress::Status;
use crate::render::{RenderInputs, Renderer};
use crate::ssh::connector::Connector;
use crate::ssh::sudo::{BecomeError, Privileged};

/// How a host's run ended: after a plan `change` or `unchanged`; after an apply, a host that
/// was changed is `applied` (a program reads what happened, not what was planned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStatus {
    Change,
    Applied,
    Unchanged,
    Unreachable,
    Failed,
}

/// One host's row: its plan, and what apply did, or why it could not.
#[derive(Debug, Clone, Serialize)]
pub struct HostResult {
    pub name: String,
    pub address: String,
    /// `server` or `client`, as everywhere in JSON.
    pub role: &'static str,
    /// The daemon it runs (for the text header): known before its facts are read unless it is
    /// a client left to its OS's default.
    #[serde(skip)]
    pub daemon: Option<Daemon>,
    pub os: Option<String>,
    pub status: HostStatus,
    pub error: Option<String>,
    /// What kind of failure `error` is, for programs.
    pub error_kind: Option<ErrorKind>,
    pub plan: Option<HostPlan>,
    /// The servers the daemon will use once the plan is applied, drop-ins included.
    pub effective: Option<Effective>,
    pub apply: Option<ApplyReport>,
    /// The facts the plan was made from (for `plan --out`).
    #[serde(skip)]
    pub facts: Option<HostFacts>,
}

impl HostResult {
    fn new(host: &Host, status: HostStatus) -> HostResult {
        HostResult {
            name: host.name.to_string(),
            address: host.address.to_string(),
            role: host.role.word(),
            daemon: host.chosen_daemon(),
            os: None,
            status,
            error: None,
            error_kind: None,
            plan: None,
            effective: None,
            apply: None,
            facts: None,
        }
    }

    /// The row once its host's run is over: `done` fills it in from what the run returned; an
    /// unreachable or failed host gets its error (plan and both kinds of apply share this).
    fn settled<T>(
        self,
        outcome: Outcome<T>,
        done: impl FnOnce(HostResult, T) -> HostResult,
    ) -> HostResult {
        match outcome {
            Outcome::Done(value) => done(self, value),
            Outcome::Unreachable(error) => self.failed(HostStatus::Unreachable, error),
            Outcome::Failed(error) => self.failed(HostStatus::Failed, error),
        }
    }

    /// The row once its host is planned: its plan, and `change` or `unchanged`.
    fn planned(self, outcome: Outcome<Planned>) -> HostResult {
        self.settled(
            outcome,
            |row,
             Planned {
                 os,
                 plan,
                 effective,
                 facts,
             }| HostResult {
                daemon: Some(plan.daemon),
                status: if plan.has_changes() {
                    HostStatus::Change
                } else {
                    HostStatus::Unchanged
                },
                os: Some(os),
                plan: Some(plan),
                effective: Some(effective),
                facts: Some(facts),
                ..row
            },
        )
    }

    /// A planned row once its transaction is over: `applied` with its report, or its error.
    fn applied(self, outcome: Outcome<ApplyReport>) -> HostResult {
        self.settled(outcome, |row, report| HostResult {
            status: HostStatus::Applied,
            apply: Some(report),
            ..row
        })
    }

    /// The row with `error` and the status it implies.
    fn failed(self, status: HostStatus, error: HostError) -> HostResult {
        HostResult {
            status,
            error: Some(error.message),
            error_kind: Some(error.kind),
            ..self
        }
    }
}

/// How much of a host's stderr a message relays (the start says what went wrong; a host that
/// prints megabytes must not make a message of them).
const STDERR_SHOWN: usize = 1000;

/// The first `limit` characters of `text`, saying how much was left out.
fn clipped(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{} … ({} more bytes)", &text[..end], text.len() - end),
        None => text.to_owned(),
    }
}

/// What planning one host found.
struct Planned {
    os: String,
    plan: HostPlan,
    effective: Effective,
    facts: HostFacts,
}

/// Connect to `hosts`, read their facts, render and plan each, `options.forks` at a time.
pub async fn plan_hosts(
    connector: Arc<Connector>,
    renderer: Arc<Renderer>,
    hosts: Vec<Host>,
    options: &RunOptions,
) -> Vec<HostResult> {
    plan_fleet(connector, renderer, hosts, options, None)
        .await
        .0
}

/// `apply --yes`: each host planned and, where its plan changes something, applied at once over
/// the same connection (its kept facts shell), `options.forks` hosts at a time. Nothing is asked,
/// so no host waits for the others' plans, and a host's connection is held only for its own
/// plan and transaction: a fleet holds about `--forks` connections, not one per host to change.
/// A host's plan depends on its own facts alone, so none is made differently than with the
/// barrier (plan all, ask, apply all).
///
/// Returns the rows as planned (what `plan` would print) and as applied.
pub async fn plan_and_apply_hosts(
    connector: Arc<Connector>,
    renderer: Arc<Renderer>,
    hosts: Vec<Host>,
    options: &RunOptions,
    apply: ApplyOptions,
) -> (Vec<HostResult>, Vec<HostResult>) {
    plan_fleet(connector, renderer, hosts, options, Some(apply)).await
}

/// Plan every host and, with `apply`, run each host's change as soon as its plan is made. The
/// rows as planned, and (with `apply` only) as applied.
async fn plan_fleet(
    connector: Arc<Connector>,
    renderer: Arc<Renderer>,
    hosts: Vec<Host>,
    options: &RunOptions,
    apply: Option<ApplyOptions>,
) -> (Vec<HostResult>, Vec<HostResult>) {
    let rows: Vec<HostResult> = hosts
        .iter()
        .map(|h| HostResult::new(h, HostStatus::Failed))
        .collect();
    let applying = apply.is_some();
    let read = FactsRead {
        max_file_size: options.max_file_size,
        // The transaction runs in the facts shell: one login, no second channel.
        keep_shell: options.keep_shells || applying,
    };
    let release_done = options.release_done;
    let title = if applying { "applying" } else { "planning" };
    let outcomes = fleet::for_each(
        hosts,
        options.forks,
        options.progress(title),
        move |host, status| {
            let (connector, renderer) = (connector.clone(), renderer.clone());
            async move {
                let name = host.name.as_str();
                let planned = plan_host(&connector, &renderer, &host, read, &status).await;
                let changes = planned.as_ref().is_ok_and(|p| p.plan.has_changes());
                let applied = match (&planned, &apply) {
                    (Ok(planned), Some(apply)) if changes => Some(Outcome::of(
                        apply_change(
                            &connector,
                            name,
                            &planned.plan,
                            apply,
                            release_done,
                            &status,
                        )
                        .await,
                    )),
                    _ => {
                        // Done with the host, unless its kept shell is to run a change later
                        // (plan's rows for an apply that asks first).
                        if release_done && !(read.keep_shell && changes) {
                            connector.release(name).await;
                        }
                        None
                    }
                };
                planned.map(|planned| (planned, applied))
            }
        },
    )
    .await;
    let mut planned_rows = Vec::with_capacity(rows.len());
    let mut applied_rows = Vec::with_capacity(if applying { rows.len() } else { 0 });
    for (row, outcome) in rows.into_iter().zip(outcomes) {
        // The plan's outcome, and apart from it the transaction's (for hosts that had one).
        let (outcome, applied) = match outcome {
            Outcome::Done((planned, applied)) => (Outcome::Done(planned), applied),
            Outcome::Unreachable(e) => (Outcome::Unreachable(e), None),
            Outcome::Failed(e) => (Outcome::Failed(e), None),
        };
        let row = row.planned(outcome);
        if applying {
            applied_rows.push(match applied {
                Some(applied) => row.clone().applied(applied),
                None => row.clone(),
            });
        }
        planned_rows.push(row);
    }
    (planned_rows, applied_rows)
}

async fn plan_host(
    connector: &Connector,
    renderer: &Renderer,
    host: &Host,
    read: FactsRead,
    status: &Status,
) -> Result<Planned, HostError> {
    let facts = read_facts(connector, host, read, status).await?;
    status.set("planning");
    let daemon = host.daemon(&facts.os.id, &facts.os.version_id);
    crate::daemon::check_available(daemon, &facts.os.id, &facts.os.pretty_name)?;
    let inputs = RenderInputs {
        os_id: &facts.os.id,
        daemon,
        version: facts.version_for(daemon),
    };
    crate::nts::check_host(host, inputs, &facts.os.pretty_name)?;
    let desired = renderer.render(host, inputs)?;
    let (desired, migration_warning) = crate::layout::with_migration(desired, &facts)?;
    let plan = plan(host.name.as_str(), &desired, &facts)?;
    log_plan(&plan);
    // What the daemon reads once applied: the vendor sources switched off are gone.
    let mut effective = crate::effective::of(
        &desired,
        &crate::vendor_sources::applied(&facts, &plan.switch_off),
    );
    effective.warnings.extend(migration_warning);
    for warning in &effective.warnings {
        tracing::info!("effective: {}", crate::report::shown(warning));
    }
    Ok(Planned {
        os: facts.os.pretty_name.clone(),
        plan,
        effective,
        facts,
    })
}

/// The plan's actions in the log (`-v`), one line each.
fn log_plan(plan: &HostPlan) {
    let changing = plan
        .files
        .iter()
        .filter(|f| f.action != FileAction::Unchanged);
    for file in changing {
        tracing::info!("plan: {} {}", file.action.word(), file.path);
    }
    if let Some(install) = &plan.package {
        tracing::info!("plan: install {}", install.package);
    }
    for step in &plan.switch_off {
        tracing::info!("plan: switch off {}", step.path);
    }
    for (wanted, verb) in [
        (plan.unit.enable, "enable"),
        (plan.unit.restart, "restart"),
        (plan.unit.start, "start"),
    ] {
        if wanted {
            tracing::info!("plan: {verb} {}", plan.unit.unit);
        }
    }
}

/// How a host's facts are read.
#[derive(Debug, Clone, Copy)]
struct FactsRead {
    /// `--max-file-size`.
    max_file_size: u64,
    /// Keep the facts shell for the transaction (apply).
    keep_shell: bool,
}

/// Connect to `host` and read what it has of what its daemon needs.
/// Refused when the system is not one clockprov knows: its layout would half-work.
async fn read_facts(
    connector: &Connector,
    host: &Host,
    read: FactsRead,
    status: &Status,
) -> Result<HostFacts, HostError> {
    let name = host.name.as_str();
    status.set("connecting");
    let session = connector.session(name).await?;
    status.set("reading facts");
    let started = std::time::Instant::now();
    let root = Privileged {
        session: &session,
        privilege: connector.privilege(name),
    };
    // Both daemons' files and units in both layouts: which apply is known only from the
    // system the facts name (a client may be left to its OS's default), and it is one read.
    // A host with NTS: its material in both layouts too.
    let nts_paths: Vec<String> = [Family::Debian, Family::RedHat]
        .into_iter()
        .flat_map(|family| crate::render::nts_paths(&host.nts, family))
        .collect();
    // And the vendor's copy of chrony.conf that Debian's and Ubuntu's package keep: the text a
    // main file clockprov wrote whole is given back (src/layout.rs).
    // The vendor sources a chrony host switches off, and their switched-off names.
    let vendor_paths = crate::vendor_sources::fact_paths();
    let paths: Vec<&str> = Daemon::every_config_path()
        .into_iter()
        .chain([crate::layout::CHRONY_VENDOR_COPY])
        .chain(nts_paths.iter().map(String::as_str))
        .chain(vendor_paths.iter().map(String::as_str))
        .collect();
    let held_marker = facts::held_marker();
    let request = FactsRequest {
        paths: &paths,
        units: &Daemon::every_unit(),
        dropins: &crate::effective::EVERY_DROPIN_DIR,
        max_file_size: read.max_file_size,
        held_marker: &held_marker,
    };
    let script = facts::script(&request)?;
    let read_once = || async {
        root.run_script_keeping_shell(&script, &held_marker, read.keep_shell)
            .await
            .map_err(|e| match e {
                BecomeError::Ssh(e) => HostError::from(e).context("reading facts"),
                // sudo's refusals say what they are about.
                e => HostError::from(e),
            })
    };
    let mut out = read_once().await?;
    let mut parsed = facts::parse(&out.stdout, &request);
    if parsed.is_err() {
        // A file replaced between the script's `stat` and its read (an apply running on the
        // host at this moment) breaks the framing: read once more before calling the host bad.
        tracing::debug!("facts did not parse; reading them again");
        out = read_once().await?;
        parsed = facts::parse(&out.stdout, &request);
    }
    let facts = parsed.map_err(|e| {
        let error = HostError::from(e).context("reading facts");
        let stderr = out.stderr_text();
        if stderr.is_empty() {
            error
        } else {
            HostError::new(
                error.kind,
                format!("{}: {}", error.message, clipped(&stderr, STDERR_SHOWN)),
            )
        }
    })?;
    let daemon = host.daemon(&facts.os.id, &facts.os.version_id);
    tracing::info!(
        "facts: {} bytes in {:.0} ms ({}, {daemon} {})",
        out.stdout.len(),
        started.elapsed().as_secs_f64() * 1000.0,
        crate::report::shown(&facts.os.pretty_name),
        facts.version_for(daemon)
    );
    // Refused before anything is rendered: a system whose layout we do not know would half-work.
    crate::daemon::check_supported(&facts.os.id, &facts.os.version_id, &facts.os.pretty_name)?;
    Ok(facts)
}

/// A host of a saved plan, and the inventory's entry for it (how to reach it).
pub(crate) struct Reviewed {
    pub(crate) host: Host,
    pub(crate) saved: SavedHost,
}

impl Item for Reviewed {
    fn label(&self) -> String {
        self.saved.name.clone()
    }
}

/// Apply a saved plan (`apply PLAN`): each host with changes is read again and its reviewed plan
/// carried out only if its facts are still those it was made from; else it is refused, naming
/// what changed, and the others go on. Hosts without changes are not contacted.
pub(crate) async fn apply_reviewed(
    connector: Arc<Connector>,
    reviewed: Vec<Reviewed>,
    options: &RunOptions,
    apply: ApplyOptions,
) -> Vec<HostResult> {
    let mut rows: Vec<HostResult> = reviewed.iter().map(|r| r.saved.row()).collect();
    let (positions, changes): (Vec<usize>, Vec<Reviewed>) = reviewed
        .into_iter()
        .enumerate()
        .filter(|(_, r)| r.saved.plan.changes)
        .unzip();
    // The shell that reads a host's facts again runs its transaction too.
    let read = FactsRead {
        max_file_size: options.max_file_size,
        keep_shell: true,
    };
    let release_done = options.release_done;
    let outcomes = fleet::for_each(
        changes,
        options.forks,
        options.progress("applying"),
        move |reviewed, status| {
            let connector = connector.clone();
            async move {
                let outcome =
                    apply_one_reviewed(&connector, &reviewed, read, &apply, &status).await;
                if release_done {
                    connector.release(&reviewed.saved.name).await;
                }
                outcome
            }
        },
    )
    .await;
    for (position, outcome) in positions.into_iter().zip(outcomes) {
        let row = &mut rows[position];
        *row = row
            .clone()
            .settled(outcome, |row, (plan, report)| HostResult {
                status: HostStatus::Applied,
                plan: Some(plan),
                apply: Some(report),
                ..row
            });
    }
    rows
}

/// One host of [`apply_reviewed`]: read again, verified against the reviewed plan, applied.
async fn apply_one_reviewed(
    connector: &Connector,
    reviewed: &Reviewed,
    read: FactsRead,
    apply: &ApplyOptions,
    status: &Status,
) -> Result<(HostPlan, ApplyReport), HostError> {
    let facts = read_facts(connector, &reviewed.host, read, status).await?;
    let plan = reviewed.saved.verify(&facts, &reviewed.host.nts).map_err(|changes| {
        HostError::new(
            ErrorKind::Drift,
            format!(
                "refused: the host changed since the plan was reviewed: {}; nothing was done (make the plan again)",
                changes.join("; ")
            ),
        )
    })?;
    status.set("applying");
    let session = connector.session(&reviewed.saved.name).await?;
    let root = Privileged {
        session: &session,
        privilege: connector.privilege(&reviewed.saved.name),
    };
    let report = apply_host(&root, &plan, apply).await?;
    Ok((plan, report))
}

/// A host to apply: its name and its plan.
struct Change {
    name: String,
    plan: HostPlan,
}

impl Item for Change {
    fn label(&self) -> String {
        self.name.clone()
    }
}

/// Apply every planned change, `options.forks` hosts at a time, over the connections opened
/// for planning. Hosts without changes are left alone.
pub async fn apply_hosts(
    connector: Arc<Connector>,
    results: Vec<HostResult>,
    options: &RunOptions,
    apply: ApplyOptions,
) -> Vec<HostResult> {
    let (positions, changes): (Vec<usize>, Vec<Change>) = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.status == HostStatus::Change)
        .filter_map(|(i, r)| {
            let plan = r.plan.clone()?;
            Some((
                i,
                Change {
                    name: r.name.clone(),
                    plan,
                },
            ))
        })
        .unzip();
    let release_done = options.release_done;
    let outcomes = fleet::for_each(
        changes,
        options.forks,
        options.progress("applying"),
        move |change, status| {
            let connector = connector.clone();
            async move {
                apply_change(
                    &connector,
                    &change.name,
                    &change.plan,
                    &apply,
                    release_done,
                    &status,
                )
                .await
            }
        },
    )
    .await;
    let mut results = results;
    for (position, outcome) in positions.into_iter().zip(outcomes) {
        let row = &mut results[position];
        *row = row.clone().applied(outcome);
    }
    results
}

/// One host's transaction over its connection (the kept facts shell), then, with
/// `release_done`, the connection closed.
async fn apply_change(
    connector: &Connector,
    name: &str,
    plan: &HostPlan,
    apply: &ApplyOptions,
    release_done: bool,
    status: &Status,
) -> Result<ApplyReport, HostError> {
    status.set("connecting");
    let session = connector.session(name).await?;
    status.set("applying");
    let root = Privileged {
        session: &session,
        privilege: connector.privilege(name),
    };
    tracing::info!("applying the plan");
    let report = apply_host(&root, plan, apply).await;
    if release_done {
        connector.release(name).await;
    }
    let report = report?;
    for step in &report.done {
        tracing::info!("applied: {}", crate::report::shown(step));
    }
    for backup in &report.backups {
        tracing::info!("backup: {}", crate::report::shown(backup));
    }
    for pruned in &report.pruned {
        tracing::info!("pruned: {}", crate::report::shown(pruned));
    }
    Ok(report)
}

/// Counts of hosts by status, for summaries and exit codes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub change: usize,
    pub applied: usize,
    pub unchanged: usize,
    pub unreachable: usize,
    pub failed: usize,
}

impl Summary {
    #[must_use]
    pub fn of(results: &[HostResult]) -> Summary {
        let mut summary = Summary::default();
        for r in results {
            match r.status {
                HostStatus::Change => summary.change += 1,
                HostStatus::Applied => summary.applied += 1,
                HostStatus::Unchanged => summary.unchanged += 1,
                HostStatus::Unreachable => summary.unreachable += 1,
                HostStatus::Failed => summary.failed += 1,
            }
        }
        summary
    }

    #[must_use]
    pub fn has_errors(&self) -> bool {
        self.unreachable + self.failed > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relayed_stderr_is_clipped_on_a_character_boundary() {
        assert_eq!(clipped("short", 10), "short");
        assert_eq!(clipped("ééééé", 2), "éé … (6 more bytes)");
    }
}
