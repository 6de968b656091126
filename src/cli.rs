//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::value::DurationValue;

#[derive(Debug, Parser)]
#[command(
    name = "clockprov",
    version,
    about = "Keep the clocks of a fleet of Linux hosts in step."
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Read every host, render its configuration and show what apply would change. Changes nothing.
    Plan(PlanArgs),
    /// Plan, then write the files, install missing daemons and restart what changed.
    Apply(ApplyArgs),
    /// Measure every host's clock offset and sync state; flag skew as Ceph would.
    Check(CheckArgs),
    /// Write the client configuration into the inventory's golden images (qcow2/raw disk images,
    /// or root directories) so that clones boot synchronized. Shows the diff first.
    Bake(BakeArgs),
    /// Print the configuration files a host should have (rendered offline, no connection).
    Render(RenderArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The inventory file.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Only these hosts: names or globs, comma-separated or repeated; `!pattern` excludes.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Vec<String>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How many hosts to work on at once.
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,
    /// A directory whose chrony.conf.j2 / timesyncd.conf.j2 replace the built-in templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Give up on a host that does not answer within this (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<DurationValue>,
    /// Give up on a remote command that runs longer than this (package installs excepted).
    #[arg(long, value_name = "DURATION")]
    pub command_timeout: Option<DurationValue>,
    /// The sudo password for `become: sudo` hosts: the first line of FILE (else
    /// `CLOCKPROV_BECOME_PASSWORD`, else asked once on a terminal).
    #[arg(long, value_name = "FILE")]
    pub become_password_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Exit 0 when nothing would change, 2 when something would, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// After applying, wait up to this long (e.g. 120s) until every host is synchronized to the
    /// server the inventory names and within --max-skew.
    #[arg(long, value_name = "DURATION")]
    pub wait_sync: Option<DurationValue>,
    /// The skew allowed while waiting, in seconds.
    #[arg(long, default_value_t = crate::check::DEFAULT_MAX_SKEW, value_name = "SECONDS")]
    pub max_skew: f64,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Flag hosts whose clock is further than this from their server's, in seconds (Ceph's
    /// `mon_clock_drift_allowed`).
    #[arg(long, default_value_t = crate::check::DEFAULT_MAX_SKEW, value_name = "SECONDS")]
    pub max_skew: f64,
    /// Clock readings per host; the one with the smallest round trip is used.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub samples: u16,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The inventory file.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// The host (an `ntp_servers` or clients name).
    pub host: String,
    /// Render for this distribution, as `ID:VERSION_ID` from os-release.
    #[arg(long, default_value = "debian:12", value_name = "ID:VERSION")]
    pub os: String,
    /// Render for this daemon version (e.g. 3.5 for chrony on Ubuntu 20.04) instead of the
    /// distribution's.
    #[arg(long, value_name = "VERSION")]
    pub daemon_version: Option<String>,
    /// A directory whose templates replace the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches
pub struct BakeArgs {
    /// The inventory file.
    #[arg(short, long, value_name = "FILE")]
    pub inventory: PathBuf,
    /// Only these images: names or globs, comma-separated or repeated; `!pattern` excludes.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Vec<String>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How many images to open at once (each disk image starts a libguestfs appliance).
    #[arg(short, long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,
    /// A directory whose timesyncd.conf.j2 replaces the built-in template.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Show what would change (opening disk images read-only); change nothing.
    #[arg(long, conflicts_with = "yes")]
    pub dry_run: bool,
    /// With --dry-run: exit 2 when something would change.
    #[arg(long, requires = "dry_run")]
    pub detailed_exitcode: bool,
    /// Do not ask for confirmation.
    #[arg(short, long)]
    pub yes: bool,
    /// Empty a populated /etc/machine-id, so that each clone makes its own at first boot.
    #[arg(long)]
    pub reset_machine_id: bool,
}
