//! `clockprov check`: measure every host's clock and judge the fleet. Read-only.

use crate::ceph::CephView;
use crate::check::{self, CheckStatus, ControllerClock};
use crate::cli::{CheckArgs, Format};
use crate::clock::Limits;
use crate::report::{self, CheckContext};
use crate::value::DurationValue;

use super::{
    EXIT_CHANGES, EXIT_ERROR, EXIT_OK, inventory_arg, prepare_at, print_stdout, stdout_style,
};

/// Exit code: no error and no finding, but some host could not be judged (inconclusive).
pub(crate) const EXIT_INCONCLUSIVE: u8 = 3;

pub(crate) fn run(args: &CheckArgs) -> anyhow::Result<u8> {
    // check renders nothing: no --templates (the inventory's own `templates:` must still exist).
    let reach = args.ceph.as_ref().map(|host| ("--ceph", host));
    let mut prepared = prepare_at(&args.fleet, inventory_arg(&args.fleet)?, None, reach)?;
    // Each host's connection closes once it is measured, but the monitor's: Ceph is asked after.
    prepared.options.release_done = true;
    prepared.options.keep_open.clone_from(&prepared.reach);
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
    // The monitor host is never measured (it may be outside the inventory): only asked.
    let ceph = prepared.reach.as_deref().map(|monitor| {
        match prepared
            .runtime
            .block_on(check::ceph_view(&prepared.connector, monitor, &checks))
        {
            Ok(report) => CephView::Report(report),
            Err(error) => CephView::Error {
                queried: monitor.to_owned(),
                error: error.message,
            },
        }
    });
    let ceph = ceph.as_ref();
    let context = CheckContext {
        max_skew_seconds: limits.max_skew,
        max_server_offset_seconds: limits.max_server_offset,
        controller_clock: controller,
        checked_at_unix_seconds: check::unix_now(),
    };
    match args.fleet.format {
        Format::Text => print_stdout(&report::check_text(&checks, &context, ceph, stdout_style()))?,
        Format::Json => print_stdout(&report::check_json(&checks, &context, ceph))?,
        Format::Prometheus => print_stdout(&report::check_prometheus(&checks, &context, ceph))?,
        Format::Nagios => {
            let warning = args.warning.map_or(limits.max_skew, DurationValue::seconds);
            let critical = args.critical.map_or(2.0 * warning, DurationValue::seconds);
            let (line, code) = report::check_nagios(&checks, &context, ceph, warning, critical);
            print_stdout(&line)?;
            return Ok(code);
        }
    }
    let any = |status| checks.iter().any(|c| c.status == status);
    // Ceph's own warning, or Ceph's view disagreeing with ours, is a finding; no view, an error.
    let ceph_error = matches!(ceph, Some(CephView::Error { .. }));
    let ceph_finding = matches!(ceph, Some(CephView::Report(r)) if r.warns() || r.disagrees());
    Ok(
        if any(CheckStatus::Unreachable) || any(CheckStatus::Failed) || ceph_error {
            EXIT_ERROR
        } else if any(CheckStatus::Findings) || ceph_finding {
            EXIT_CHANGES
        } else if any(CheckStatus::Inconclusive) {
            EXIT_INCONCLUSIVE
        } else {
            EXIT_OK
        },
    )
}
