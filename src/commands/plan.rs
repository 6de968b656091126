//! `clockprov plan`: read every host, render, print the diffs and actions; change nothing.

use crate::cli::{Format, PlanArgs};
use crate::operations::Summary;
use crate::report;

use super::{EXIT_CHANGES, EXIT_ERROR, EXIT_OK, plan_results, prepare, print_stdout, stdout_style};

pub(crate) fn run(args: &PlanArgs) -> anyhow::Result<u8> {
    args.fleet.format.refuse_check_only("plan")?;
    let prepared = prepare(&args.fleet, args.templates.clone())?;
    let results = plan_results(&prepared);
    match args.fleet.format {
        Format::Text => print_stdout(&report::plan_text(&results, stdout_style()))?,
        Format::Json | Format::Prometheus | Format::Nagios => {
            print_stdout(&report::json("plan", &results))?;
        }
    }
    let summary = Summary::of(&results);
    Ok(if summary.has_errors() {
        EXIT_ERROR
    } else if args.detailed_exitcode && summary.change > 0 {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}
