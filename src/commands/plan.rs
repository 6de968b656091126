//! `clockprov plan`: read every host, render, print the diffs and actions; change nothing.

use crate::cli::{Format, PlanArgs};
use crate::operations::Summary;
use crate::planfile::PlanFile;
use crate::report;

use super::{EXIT_CHANGES, EXIT_ERROR, EXIT_OK, plan_results, prepare, print_stdout, stdout_style};

pub(crate) fn run(args: &PlanArgs) -> anyhow::Result<u8> {
    args.fleet.format.refuse_check_only("plan")?;
    let mut prepared = prepare(&args.fleet, args.templates.clone())?;
    // Each host's connection closes once its facts are read: a large fleet holds --forks.
    prepared.options.release_done = true;
    let results = plan_results(&prepared);
    match args.fleet.format {
        Format::Text => print_stdout(&report::plan_text(&results, stdout_style()))?,
        Format::Json | Format::Prometheus | Format::Nagios => {
            print_stdout(&report::json("plan", &results))?;
        }
    }
    let summary = Summary::of(&results);
    if let Some(out) = &args.out {
        if summary.has_errors() {
            // A saved plan is a promise about every host it was asked for.
            eprintln!(
                "error: some hosts could not be planned: the plan was not saved to {} (fix them, or leave them out with --limit)",
                out.display()
            );
        } else {
            PlanFile::of(&prepared.inventory, &prepared.inventory_source, &results).write(out)?;
            eprintln!(
                "Saved the plan to {}: review it (clockprov show {0}), then `clockprov apply {0}`.",
                out.display()
            );
        }
    }
    Ok(if summary.has_errors() {
        EXIT_ERROR
    } else if args.detailed_exitcode && summary.change > 0 {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}
