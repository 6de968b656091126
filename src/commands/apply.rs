//! `clockprov apply`: the plan, then the changes, host by host; optionally wait for sync.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;

use crate::check::{self, CheckStatus, ControllerClock, HostCheck};
use crate::cli::{ApplyArgs, Format};
use crate::clock::Limits;
use crate::host::apply::ApplyOptions;
use crate::inventory::Host;
use crate::operations::{self, HostResult, HostStatus, Reviewed, Summary};
use crate::planfile::PlanFile;
use crate::record::{self, Record, Recorder};
use crate::report;

use super::{
    EXIT_ERROR, EXIT_OK, Prepared, ask, note, plan_results, prepare, prepare_at, print_stdout,
    stdout_style,
};

fn confirm(hosts: usize) -> anyhow::Result<bool> {
    ask(&format!(
        "Apply these changes to {hosts} host{}?",
        if hosts == 1 { "" } else { "s" }
    ))
}

/// Where this apply's record goes, made ready before any host is contacted; None with
/// `--no-record`.
fn recorder(args: &ApplyArgs) -> anyhow::Result<Option<Recorder>> {
    if args.no_record {
        return Ok(None);
    }
    let dir = match &args.record {
        Some(dir) => dir.clone(),
        None => record::default_dir().ok_or_else(|| {
            anyhow::anyhow!(
                "no place for apply's record: neither $XDG_STATE_HOME nor $HOME is set; pass --record DIR or --no-record"
            )
        })?,
    };
    Recorder::open(dir).map(Some)
}

/// Write the record of an apply that started at `started`; its path, or None when it could not
/// be written. The hosts are changed already: the failure is said on stderr (and makes the exit
/// code 1), and the run still reports what it did.
fn write_record(
    recorder: &Recorder,
    prepared: &Prepared,
    started: SystemTime,
    results: &[HostResult],
) -> Option<PathBuf> {
    let record = Record::of(
        &prepared.inventory,
        prepared.inventory_source.as_bytes(),
        (started, SystemTime::now()),
        results,
    );
    match recorder.write(&record, started) {
        Ok(path) => Some(path),
        Err(e) => {
            eprintln!("error: {e:#}");
            None
        }
    }
}

/// How each host's transaction runs (`--keep-backups`, `--lock-wait`).
fn apply_options(args: &ApplyArgs) -> ApplyOptions {
    ApplyOptions {
        keep_backups: args.keep_backups,
        lock_wait: args.lock_wait.0,
        backup_time: std::time::SystemTime::now(),
    }
}

/// What was applied, on stdout, with the record's path.
fn print_applied(
    args: &ApplyArgs,
    results: &[HostResult],
    written: Option<&Path>,
) -> anyhow::Result<()> {
    match args.fleet.format {
        Format::Text => {
            let mut text = format!("\n{}", report::apply_text(results, stdout_style()));
            if let Some(path) = written {
                let _ = writeln!(text, "Record: {}", path.display());
            }
            print_stdout(&text)
        }
        Format::Json | Format::Prometheus | Format::Nagios => {
            print_stdout(&report::apply_json(results, written))
        }
    }
}

pub(crate) fn run(args: &ApplyArgs) -> anyhow::Result<u8> {
    args.fleet.format.refuse_check_only("apply")?;
    if let Some(plan) = &args.plan {
        return reviewed(args, plan);
    }
    let mut prepared = prepare(&args.fleet, args.templates.clone())?;
    // Each host's facts shell waits to run its transaction: no second channel or login shell.
    prepared.options.keep_shells = true;
    // A host's connection closes once apply is done with it, unless --wait-sync reads it again.
    prepared.options.release_done = args.wait_sync.is_none();
    let recorder = recorder(args)?;
    if args.yes {
        return auto_approved(args, &prepared, recorder.as_ref());
    }
    let results = plan_results(&prepared);
    let changes = changes(&results);
    if args.fleet.format == Format::Text {
        print_stdout(&report::plan_text(&results, stdout_style()))?;
    }
    let mut written = Written::default();
    let results = if changes == 0 {
        results
    } else {
        if !confirm(changes)? {
            // Saying no is a decision, not a failure.
            eprintln!("Apply cancelled; nothing was changed.");
            return Ok(EXIT_OK);
        }
        let started = SystemTime::now();
        let results = prepared.runtime.block_on(operations::apply_hosts(
            prepared.connector.clone(),
            results,
            &prepared.options,
            apply_options(args),
        ));
        written = Written::of(recorder.as_ref(), &prepared, started, &results);
        results
    };
    finish(args, &prepared, &results, &written)
}

/// `apply --yes`: nothing is asked, so no host waits for the others' plans: each is applied as
/// soon as its own plan is made (`operations::plan_and_apply_hosts`). Its output is the same as
/// without `--yes`, the plan and then what was applied, printed once every host is done.
fn auto_approved(
    args: &ApplyArgs,
    prepared: &Prepared,
    recorder: Option<&Recorder>,
) -> anyhow::Result<u8> {
    let started = SystemTime::now();
    let (planned, results) = prepared.runtime.block_on(operations::plan_and_apply_hosts(
        prepared.connector.clone(),
        prepared.renderer.clone(),
        prepared.hosts.clone(),
        &prepared.options,
        apply_options(args),
    ));
    if args.fleet.format == Format::Text {
        print_stdout(&report::plan_text(&planned, stdout_style()))?;
    }
    let written = if changes(&planned) == 0 {
        Written::default()
    } else {
        Written::of(recorder, prepared, started, &results)
    };
    finish(args, prepared, &results, &written)
}

/// The hosts whose plan changes something.
fn changes(planned: &[HostResult]) -> usize {
    planned
        .iter()
        .filter(|r| r.status == HostStatus::Change)
        .count()
}

/// The apply's record: where it was written, or that writing it failed (no recorder, or no
/// change: neither).
#[derive(Default)]
struct Written {
    path: Option<PathBuf>,
    failed: bool,
}

impl Written {
    fn of(
        recorder: Option<&Recorder>,
        prepared: &Prepared,
        started: SystemTime,
        results: &[HostResult],
    ) -> Written {
        match recorder {
            Some(recorder) => {
                let path = write_record(recorder, prepared, started, results);
                Written {
                    failed: path.is_none(),
                    path,
                }
            }
            None => Written::default(),
        }
    }
}

/// After the transactions: the kept connections closed, what was applied printed, the exit code
/// (an error on any host, or a record that could not be written), then `--wait-sync`.
fn finish(
    args: &ApplyArgs,
    prepared: &Prepared,
    results: &[HostResult],
    written: &Written,
) -> anyhow::Result<u8> {
    prepared.runtime.block_on(prepared.connector.release_kept());
    print_applied(args, results, written.path.as_deref())?;
    let code = if Summary::of(results).has_errors() || written.failed {
        EXIT_ERROR
    } else {
        EXIT_OK
    };
    Ok(wait_sync(args, prepared, results, code))
}

/// `apply PLAN`: the saved plan, host by host, where the host is still as it was reviewed. It
/// asks nothing: the plan was reviewed when it was saved (Terraform's convention).
fn reviewed(args: &ApplyArgs, path: &Path) -> anyhow::Result<u8> {
    let plan = PlanFile::load(path)?;
    let inventory = plan.check_inventory(path, args.fleet.inventory.as_deref())?;
    let mut prepared = prepare_at(&args.fleet, &inventory, None, None)?;
    prepared.options.release_done = args.wait_sync.is_none();
    let mut reviewed = Vec::new();
    for saved in plan.hosts {
        let host = prepared
            .hosts
            .iter()
            .find(|h| h.name.as_str() == saved.name)
            .with_context(|| {
                format!(
                    "{}: host {} is not in the inventory",
                    path.display(),
                    saved.name
                )
            })?
            .clone();
        reviewed.push(Reviewed { host, saved });
    }
    let hosts: Vec<_> = reviewed.iter().map(|r| r.host.clone()).collect();
    let recorder = recorder(args)?;
    eprintln!("Applying the reviewed plan {}.", path.display());
    let started = SystemTime::now();
    let results = prepared.runtime.block_on(operations::apply_reviewed(
        prepared.connector.clone(),
        reviewed,
        &prepared.options,
        apply_options(args),
    ));
    let written = Written::of(recorder.as_ref(), &prepared, started, &results);
    // --wait-sync waits for the plan's hosts.
    let prepared = Prepared { hosts, ..prepared };
    finish(args, &prepared, &results, &written)
}

/// `--wait-sync`: after applying, wait until the hosts are in sync; `code` is apply's. A host
/// whose apply failed (or that was unreachable) is already an error: it is not waited for.
fn wait_sync(args: &ApplyArgs, prepared: &Prepared, results: &[HostResult], mut code: u8) -> u8 {
    if let Some(within) = args.wait_sync {
        let failed: Vec<&str> = results
            .iter()
            .filter(|r| matches!(r.status, HostStatus::Failed | HostStatus::Unreachable))
            .map(|r| r.name.as_str())
            .collect();
        if !failed.is_empty() {
            note(&format!(
                "wait-sync: not waiting for {} (apply did not reach or failed there)",
                failed
                    .iter()
                    .map(|n| report::shown(n))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let waited: Vec<Host> = prepared
            .hosts
            .iter()
            .filter(|h| !failed.contains(&h.name.as_str()))
            .cloned()
            .collect();
        if waited.is_empty() {
            return code;
        }
        let limits = Limits {
            max_skew: args.max_skew.seconds(),
            max_server_offset: check::DEFAULT_MAX_SERVER_OFFSET.as_secs_f64(),
            controller_synchronized: ControllerClock::read().synchronized,
        };
        let checks = prepared.runtime.block_on(check::wait_for_sync(
            prepared.connector.clone(),
            &waited,
            &prepared.all_hosts,
            &prepared.options,
            &limits,
            within.0,
            |checks, elapsed| wait_progress(checks, elapsed, within.0),
        ));
        let waiting: Vec<String> = checks
            .iter()
            .filter(|c| !c.status.is_settled())
            .map(|c| format!("{} ({})", c.name, report::shown(&c.verdict())))
            .collect();
        for c in checks.iter().filter(|c| c.status == CheckStatus::Warning) {
            eprintln!(
                "warning: {}: {}",
                report::shown(&c.name),
                report::shown(&c.verdict())
            );
        }
        if waiting.is_empty() {
            note(&format!(
                "wait-sync: all {} hosts synchronized, within {} s of their server",
                checks.len(),
                args.max_skew.seconds()
            ));
        } else {
            eprintln!(
                "error: not synchronized after {} s: {}",
                within.0.as_secs(),
                waiting.join(", ")
            );
            code = EXIT_ERROR;
        }
    }
    code
}

/// One line per polling round on stderr: who is still waiting, and for what.
fn wait_progress(checks: &[HostCheck], elapsed: std::time::Duration, within: std::time::Duration) {
    let ok = checks.iter().filter(|c| c.status.is_settled()).count();
    let waiting: Vec<String> = checks
        .iter()
        .filter(|c| !c.status.is_settled())
        .map(|c| format!("{}: {}", c.name, report::shown(&c.verdict())))
        .collect();
    let mut line = format!(
        "wait-sync {:>3}s/{}s: {ok}/{} hosts in sync",
        elapsed.as_secs(),
        within.as_secs(),
        checks.len()
    );
    if !waiting.is_empty() {
        let _ = write!(line, "; waiting for {}", waiting.join(", "));
    }
    note(&line);
}
