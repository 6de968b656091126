//! `clockprov apply`: the plan, then the changes, host by host; optionally wait for sync.

use std::fmt::Write as _;

use crate::check::{self, CheckStatus, ControllerClock, HostCheck};
use crate::cli::{ApplyArgs, Format};
use crate::clock::Limits;
use crate::host::apply::ApplyOptions;
use crate::operations::{self, HostStatus, Summary};
use crate::report;

use super::{EXIT_ERROR, EXIT_OK, ask, plan_results, prepare, print_stdout, stdout_style};

fn confirm(hosts: usize) -> anyhow::Result<bool> {
    ask(&format!(
        "Apply these changes to {hosts} host{}?",
        if hosts == 1 { "" } else { "s" }
    ))
}

pub(crate) fn run(args: &ApplyArgs) -> anyhow::Result<u8> {
    args.fleet.format.refuse_check_only("apply")?;
    let prepared = prepare(&args.fleet, args.templates.clone())?;
    let results = plan_results(&prepared);
    let changes = results
        .iter()
        .filter(|r| r.status == HostStatus::Change)
        .count();
    if args.fleet.format == Format::Text {
        print_stdout(&report::plan_text(&results, stdout_style()))?;
    }
    let results = if changes == 0 {
        results
    } else {
        if !args.yes && !confirm(changes)? {
            // Saying no is a decision, not a failure.
            eprintln!("Apply cancelled; nothing was changed.");
            return Ok(EXIT_OK);
        }
        prepared.runtime.block_on(operations::apply_hosts(
            prepared.connector.clone(),
            results,
            &prepared.options,
            ApplyOptions {
                keep_backups: args.keep_backups,
                lock_wait: args.lock_wait.0,
            },
        ))
    };
    match args.fleet.format {
        Format::Text => print_stdout(&format!(
            "\n{}",
            report::apply_text(&results, stdout_style())
        ))?,
        Format::Json | Format::Prometheus | Format::Nagios => {
            print_stdout(&report::json("apply", &results))?;
        }
    }
    let mut code = if Summary::of(&results).has_errors() {
        EXIT_ERROR
    } else {
        EXIT_OK
    };
    if let Some(within) = args.wait_sync {
        let limits = Limits {
            max_skew: args.max_skew.seconds(),
            max_server_offset: check::DEFAULT_MAX_SERVER_OFFSET.as_secs_f64(),
            controller_synchronized: ControllerClock::read().synchronized,
        };
        let checks = prepared.runtime.block_on(check::wait_for_sync(
            prepared.connector.clone(),
            &prepared.hosts,
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
            eprintln!(
                "wait-sync: all {} hosts synchronized, within {} s of their server",
                checks.len(),
                args.max_skew.seconds()
            );
        } else {
            eprintln!(
                "error: not synchronized after {} s: {}",
                within.0.as_secs(),
                waiting.join(", ")
            );
            code = EXIT_ERROR;
        }
    }
    Ok(code)
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
    eprintln!("{line}");
}
