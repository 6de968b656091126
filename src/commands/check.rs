//! `clockprov check`: measure every host's clock and judge the fleet.

use crate::check::{self, CheckStatus};
use crate::cli::{CheckArgs, Format};
use crate::report;

use super::{EXIT_CHANGES, EXIT_ERROR, EXIT_OK, prepare, print_stdout, stdout_style};

pub(crate) fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    // check renders nothing: no --templates (the inventory's own `templates:` must still exist).
    let prepared = prepare(&args.fleet, None)?;
    let max_skew = args.max_skew.seconds();
    let readings = prepared.runtime.block_on(check::read_clocks(
        prepared.connector.clone(),
        &prepared.hosts,
        &prepared.options,
        prepared.options.progress("checking"),
        usize::from(args.samples),
    ));
    let checks = check::judge_fleet(&prepared.hosts, &readings, max_skew);
    match args.fleet.format {
        Format::Text => print_stdout(&report::check_text(&checks, max_skew, stdout_style()))?,
        Format::Json => print_stdout(&report::check_json(&checks, max_skew))?,
    }
    Ok(
        if checks
            .iter()
            .any(|c| matches!(c.status, CheckStatus::Unreachable | CheckStatus::Failed))
        {
            EXIT_ERROR
        } else if checks.iter().any(|c| c.status == CheckStatus::Findings) {
            EXIT_CHANGES
        } else {
            EXIT_OK
        },
    )
}
