//! `clockprov show PLAN`: a saved plan, as `plan` prints it or as the JSON file itself.

use std::path::Path;

use crate::cli::{Format, ShowArgs};
use crate::planfile::PlanFile;

use super::{EXIT_OK, print_stdout, stdout_style};

pub(crate) fn run(args: &ShowArgs) -> anyhow::Result<u8> {
    args.format.refuse_check_only("show")?;
    let plan = PlanFile::load(&args.plan)?;
    match args.format {
        Format::Text => print_stdout(&plan.text(Path::new(&args.plan), stdout_style()))?,
        Format::Json | Format::Prometheus | Format::Nagios => print_stdout(&plan.to_json())?,
    }
    Ok(EXIT_OK)
}
