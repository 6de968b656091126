//! `clockprov check`: measure every host's clock and judge the fleet. Read-only.

use crate::check::{self, CheckStatus, ControllerClock};
use crate::cli::{CheckArgs, Format};
use crate::clock::Limits;
use crate::report::{self, CheckContext};
use crate::value::DurationValue;

use super::{EXIT_CHANGES, EXIT_ERROR, EXIT_OK, prepare, print_stdout, stdout_style};

/// Exit code: no error and no finding, but some host could not be judged (inconclusive).
pub(crate) const EXIT_INCONCLUSIVE: u8 = 3;

pub(crate) fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    // check renders nothing: no --templates (the inventory's own `templates:` must still exist).
    let prepared = prepare(&args.fleet, None)?;
    let controller = ControllerClock::read();
    let limits = Limits {
        max_skew: args.max_skew.seconds(),
        max_server_offset: args.max_server_offset.seconds(),
        controller_synchronized: controller.synchronized,
    };
    let checks = prepared.runtime.block_on(check::check_fleet(
        prepared.connector.clone(),
        &prepared.hosts,
        &prepared.all_hosts,
        &prepared.options,
        prepared.options.progress("checking"),
        usize::from(args.samples),
        &limits,
    ));
    let context = CheckContext {
        max_skew_seconds: limits.max_skew,
        max_server_offset_seconds: limits.max_server_offset,
        controller_clock: controller,
        checked_at_unix_seconds: check::unix_now(),
    };
    match args.fleet.format {
        Format::Text => print_stdout(&report::check_text(&checks, &context, stdout_style()))?,
        Format::Json => print_stdout(&report::check_json(&checks, &context))?,
        Format::Prometheus => print_stdout(&report::check_prometheus(&checks, &context))?,
        Format::Nagios => {
            let warning = args.warning.map_or(limits.max_skew, DurationValue::seconds);
            let critical = args.critical.map_or(2.0 * warning, DurationValue::seconds);
            let (line, code) = report::check_nagios(&checks, &context, warning, critical);
            print_stdout(&line)?;
            return Ok(code);
        }
    }
    let any = |status| checks.iter().any(|c| c.status == status);
    Ok(
        if any(CheckStatus::Unreachable) || any(CheckStatus::Failed) {
            EXIT_ERROR
        } else if any(CheckStatus::Findings) {
            EXIT_CHANGES
        } else if any(CheckStatus::Inconclusive) {
            EXIT_INCONCLUSIVE
        } else {
            EXIT_OK
        },
    )
}
