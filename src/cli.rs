//! Command-line arguments.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::shard::Shard;
use crate::value::{DurationValue, HostRef};

/// Where the inventory's format is described: the end of every `--help`.
const INVENTORY_HELP: &str = "\
The inventory (-i FILE, or $CLOCKPROV_INVENTORY) is a YAML file: `ssh:` connection defaults, \
`ntp_servers:` (chrony), `clients:` (systemd-timesyncd) and `images:` (for bake). Its format, \
field by field, with examples of every error message: README.md, section \"Inventory \
reference\"; a complete example: inventories/zcloud.yaml.";

const CHECK_HELP: &str = "\
Verdicts, one per host (the VERDICT column; `status` and `findings` in JSON):
  ok                     synchronized to a server the inventory names, within --max-skew of it
  isolated               (warning) a server serving its own clock, no upstream reached; its \
clients are judged against it
  skew ... exceeds ...   a client further than --max-skew from its server's clock
  offset from the controller ... exceeds --max-server-offset
                         a server synchronized to an upstream, far from the controller's \
(synchronized) clock
  not synchronized       the time daemon has not synchronized
  synchronized to X      synchronized, but to a server the inventory does not name
  ... is inactive        the time daemon is not running (it is not started to ask it)
  inconclusive: ...      the uncertainty exceeds the limit, or the client's server was not \
measured
  unreachable / failed   the host could not be reached, refused us, or could not be read

Exit codes: 0 every host ok (or only warnings); 1 an error (a host unreachable or failed, or \
bad input); 2 a finding on some host; 3 inconclusive (no error, no finding, but some host \
could not be judged). With --format nagios: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. check \
changes nothing on any host.

The inventory (-i FILE, or $CLOCKPROV_INVENTORY): README.md, section \"Inventory reference\".";

const APPLY_HELP: &str = "\
Per host, after the plan, one transaction in one remote script: take the host's lock \
(/run/lock/clockprov.lock; another apply there waits up to --lock-wait, then fails that host); \
refuse if a managed file changed since the plan read it, or if that cannot be checked (nothing \
is written on that host); install a missing daemon package; write each file atomically (a \
temporary file in the same directory, renamed over the old one), keeping the old file as a \
backup beside it (FILE.clockprov-<UTC time>.bak, the newest --keep-backups kept); enable the \
unit and restart it when its files changed; if it does not come back, restore the backups, undo \
the enable, restart it with the previous files (rollback), and report what failed and what runs \
now. An apply cut short (killed, disconnected, timed out) leaves every file whole, and the next \
plan restarts the unit it left unrestarted (\"restart pending from an interrupted apply\").

On a terminal, apply shows the plan and asks before changing anything (y or yes to go on; \
anything else changes nothing). Without a terminal it refuses unless --yes is given.

An apply that changes something writes a JSON record of what it did (each file's SHA-256 \
before and after, its backup, the steps, each host's outcome) into --record DIR, by default \
$XDG_STATE_HOME/clockprov/records or ~/.local/state/clockprov/records; --no-record for none. \
How to put a backup back by hand: README.md, section \"Records and backups\".

Exit codes: 0 every host is as the inventory says; 1 an error (bad input, or a host \
unreachable, refused or failed: the other hosts are still applied).

The inventory (-i FILE, or $CLOCKPROV_INVENTORY): README.md, section \"Inventory reference\".";

const VALIDATE_HELP: &str = "\
Exit codes: 0 the inventory is valid and every host and image renders; 1 it is not (every \
problem is listed on stderr as FILE:LINE:COLUMN: FIELD: what is wrong), or bad arguments.

Not checked, because they belong to the machine that runs clockprov: the key, known_hosts and \
OpenSSH config files the inventory names, and the image files. No host is contacted.

The inventory (-i FILE, or $CLOCKPROV_INVENTORY): README.md, section \"Inventory reference\".";

/// Ceph's `mon_clock_drift_allowed`.
const DEFAULT_MAX_SKEW: DurationValue = DurationValue(crate::check::DEFAULT_MAX_SKEW);
const DEFAULT_MAX_SERVER_OFFSET: DurationValue =
    DurationValue(crate::check::DEFAULT_MAX_SERVER_OFFSET);

#[derive(Debug, Parser)]
#[command(
    name = "clockprov",
    version,
    about = "Keep the clocks of a fleet of Linux hosts in step.",
    after_help = INVENTORY_HELP
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
    #[command(after_help = APPLY_HELP)]
    Apply(ApplyArgs),
    /// Measure every host's clock offset and sync state; flag skew as Ceph would. Read-only.
    // check reads clocks as the login user, never through sudo: the shared option is accepted
    // (one set of flags serves plan, apply and check) but not listed.
    #[command(after_help = CHECK_HELP, mut_arg("become_password_file", |a| a.hide(true)))]
    Check(CheckArgs),
    /// Write the client configuration into the inventory's golden images (qcow2/raw disk images,
    /// or root directories) so that clones boot synchronized. Shows the diff first.
    Bake(BakeArgs),
    /// Print the configuration files a host should have (rendered offline, no connection).
    Render(RenderArgs),
    /// Print a clockprov inventory (YAML) made from an Ansible inventory or an OpenSSH config,
    /// each value's source in a comment; what cannot be mapped is listed. Connects to nothing.
    #[command(subcommand)]
    Import(ImportSource),
    /// Print a plan saved by `plan --out` (what `apply PLAN` would do). Connects to nothing.
    Show(ShowArgs),
    /// Print a shell completion script on stdout (e.g. `clockprov completions bash >
    /// /etc/bash_completion.d/clockprov`).
    Completions(CompletionsArgs),
    /// Print the man page (roff) on stdout: `clockprov man | man -l -`.
    Man,
    /// Check an inventory offline, as its own CI would: parse it, check it as a whole, render
    /// every host and image for every supported system. Contacts nothing.
    #[command(after_help = VALIDATE_HELP)]
    Validate(ValidateArgs),
}

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
    /// check only: Prometheus text exposition (`node_exporter`'s textfile collector).
    Prometheus,
    /// check only: one Nagios/Icinga status line with perfdata; exit 0/1/2/3.
    Nagios,
}

impl Format {
    /// `prometheus` and `nagios` describe clocks: refused by the other commands.
    ///
    /// # Errors
    /// The format is check's only.
    pub fn refuse_check_only(self, command: &str) -> anyhow::Result<()> {
        match self {
            Format::Text | Format::Json => Ok(()),
            Format::Prometheus | Format::Nagios => anyhow::bail!(
                "--format {} is for check only; {command} writes text or json",
                if self == Format::Prometheus {
                    "prometheus"
                } else {
                    "nagios"
                }
            ),
        }
    }
}

#[derive(Debug, Args)]
pub struct FleetArgs {
    /// The inventory file (format: README.md, "Inventory reference"); for `apply PLAN`, the
    /// plan's own.
    #[arg(short, long, value_name = "FILE", env = "CLOCKPROV_INVENTORY")]
    pub inventory: Option<PathBuf>,
    /// Only these hosts: names or globs, comma-separated or repeated; `!pattern` excludes.
    #[arg(short, long, value_name = "PATTERN")]
    pub limit: Vec<String>,
    /// Only shard I of N: the hosts at positions I, I+N, I+2N, ... of the inventory's host names
    /// sorted; the N shards cover the fleet once (README, "Past one controller").
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// How many hosts to work on at once.
    #[arg(short, long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..))]
    pub forks: u16,
    /// Give up on a host that does not answer within this (e.g. 10s).
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<DurationValue>,
    /// Give up on a remote command that runs longer than this (package installs excepted).
    #[arg(long, value_name = "DURATION")]
    pub command_timeout: Option<DurationValue>,
    /// Fail a host whose remote command prints more than this (stdout and stderr together; e.g.
    /// 4MiB, 512KiB): a host cannot make clockprov hold more than this per command.
    #[arg(long, value_name = "SIZE", default_value_t = crate::ssh::transport::DEFAULT_MAX_OUTPUT)]
    pub max_output: crate::value::ByteSize,
    /// The sudo password for `become: sudo` hosts: the first line of FILE (else
    /// `CLOCKPROV_BECOME_PASSWORD`, else asked once on a terminal).
    #[arg(long, value_name = "FILE")]
    pub become_password_file: Option<PathBuf>,
    /// Plan and apply: a managed file bigger than this (bytes, or with K/KiB/M/MiB) fails its
    /// host; only this much of it is ever read.
    #[arg(long, value_name = "SIZE", default_value = "1MiB", value_parser = parse_size)]
    pub max_file_size: u64,
}

/// A size in bytes: `4096`, `512K`/`512KiB`, `1M`/`1MiB` (binary multiples either way).
fn parse_size(text: &str) -> Result<u64, String> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = text.get(digits.len()..).unwrap_or("");
    let multiple: u64 = match unit {
        "" | "B" => 1,
        "K" | "k" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => {
            return Err(format!(
                "unknown unit {unit:?} (use K, KiB, M, MiB, G or GiB)"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiple))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?} is not a size (e.g. 1MiB, 512K, 4096)"))
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// A directory whose chrony.conf.j2 / timesyncd.conf.j2 replace the built-in templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Exit 0 when nothing would change, 2 when something would, 1 on errors.
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Also save the plan to this file (JSON), for review and `apply PLAN`; not written when a
    /// host could not be planned.
    #[arg(long, value_name = "PLAN")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply this saved plan (`plan --out`) and nothing else: hosts whose facts changed since
    /// are refused. Takes the inventory the plan names (`-i` to give its new place).
    #[arg(value_name = "PLAN", conflicts_with_all = ["limit", "templates"])]
    pub plan: Option<PathBuf>,
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// A directory whose chrony.conf.j2 / timesyncd.conf.j2 replace the built-in templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// After applying, wait up to this long (e.g. 120s) until every host is synchronized to the
    /// server the inventory names and within --max-skew.
    #[arg(long, value_name = "DURATION")]
    pub wait_sync: Option<DurationValue>,
    /// The skew allowed while waiting: 0.05, 50ms or 1s alike.
    #[arg(long, default_value_t = DEFAULT_MAX_SKEW, value_name = "DURATION")]
    pub max_skew: DurationValue,
    /// Write a JSON record of what this apply did into DIR (default
    /// `$XDG_STATE_HOME/clockprov/records`, else `~/.local/state/clockprov/records`).
    #[arg(long, value_name = "DIR")]
    pub record: Option<PathBuf>,
    /// Write no record of this apply.
    #[arg(long, conflicts_with = "record")]
    pub no_record: bool,
    /// Backups kept per managed file (FILE.clockprov-<UTC time>.bak); older ones are removed
    /// after a verified restart.
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub keep_backups: u32,
    /// How long to wait for another apply running on the same host (its lock
    /// /run/lock/clockprov.lock) before failing that host.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub lock_wait: DurationValue,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub fleet: FleetArgs,
    /// Flag hosts whose clock is further than this from their server's (Ceph's
    /// `mon_clock_drift_allowed`): 0.05, 50ms or 1s alike.
    #[arg(long, default_value_t = DEFAULT_MAX_SKEW, value_name = "DURATION")]
    pub max_skew: DurationValue,
    /// Flag servers synchronized to an upstream whose clock is further than this from the
    /// controller's; judged only when the controller's own clock is synchronized.
    #[arg(long, default_value_t = DEFAULT_MAX_SERVER_OFFSET, value_name = "DURATION")]
    pub max_server_offset: DurationValue,
    /// Clock readings per host; the one with the smallest round trip is used.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u16).range(1..=100))]
    pub samples: u16,
    /// With --format nagios: WARNING beyond this offset (default: --max-skew).
    #[arg(long, value_name = "DURATION")]
    pub warning: Option<DurationValue>,
    /// With --format nagios: CRITICAL beyond this offset (default: twice the warning).
    #[arg(long, value_name = "DURATION")]
    pub critical: Option<DurationValue>,
    /// Also ask Ceph on this monitor host for its view of the monitors' clocks (`ceph
    /// time-sync-status`, `ceph health detail`), shown beside clockprov's own measurement: an
    /// inventory host's name, or a host outside the inventory, `[user@]address[:port]`,
    /// reached with the inventory's `ssh:` settings.
    #[arg(long, value_name = "HOST")]
    pub ceph: Option<HostRef>,
}

#[derive(Debug, Subcommand)]
pub enum ImportSource {
    /// An Ansible inventory, INI or YAML (groups, children, vars; `ansible_host`,
    /// `ansible_user`, `ansible_port`, `ansible_ssh_private_key_file`, `ansible_become`,
    /// `ProxyJump` in `ansible_ssh_common_args`).
    Ansible {
        /// The inventory file.
        #[arg(value_name = "INVENTORY")]
        inventory: PathBuf,
        #[command(flatten)]
        choice: ImportChoice,
    },
    /// An OpenSSH client config: each `Host` name without wildcards, with `HostName`, `User`,
    /// `Port`, `ProxyJump`, `IdentityFile` as `ssh NAME` would use them.
    SshConfig {
        /// The config file (default ~/.ssh/config).
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
        #[command(flatten)]
        choice: ImportChoice,
    },
}

/// What an imported inventory cannot say: which hosts serve time, and what.
#[derive(Debug, Args)]
pub struct ImportChoice {
    /// The hosts that serve time (chrony): names, groups (Ansible) or globs, comma-separated or
    /// repeated; `!pattern` excludes. The others become timesyncd clients.
    #[arg(long, value_name = "PATTERN", required = true)]
    pub servers: Vec<String>,
    /// Import only these hosts (names, groups or globs); default all.
    #[arg(long, value_name = "PATTERN")]
    pub hosts: Vec<String>,
    /// The servers' upstream: an NTP pool or server name (repeatable).
    #[arg(long, value_name = "HOST")]
    pub upstream: Vec<String>,
    /// The servers keep serving at this stratum without upstream (1 to 15).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=15))]
    pub local_stratum: Option<u8>,
    /// The networks the servers serve (repeatable); default each client's address.
    #[arg(long, value_name = "CIDR")]
    pub allow: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// The plan file (`plan --out`).
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
    /// Output format on stdout (json: the plan file itself).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// The inventory file (format: README.md, "Inventory reference").
    #[arg(short, long, value_name = "FILE", env = "CLOCKPROV_INVENTORY")]
    pub inventory: PathBuf,
    /// The host (an `ntp_servers` or clients name).
    pub host: String,
    /// Render for this distribution, as `ID:VERSION_ID` from os-release (supported: see
    /// `crate::daemon::SUPPORTED_SYSTEMS`).
    #[arg(long, default_value = "debian:12", value_name = "ID:VERSION", value_parser = supported_os)]
    pub os: String,
    /// Render for this daemon version (e.g. 3.5 for chrony on Ubuntu 20.04) instead of the
    /// distribution's.
    #[arg(long, value_name = "VERSION")]
    pub daemon_version: Option<String>,
    /// A directory whose templates replace the built-in ones.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// chrony: print the chrony.conf a host whose own file is FILE gets, as `plan` makes it
    /// (only the managed lines changed) instead of the whole rendering (what a host without
    /// one gets).
    #[arg(long, value_name = "FILE")]
    pub onto: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The inventory file (format: README.md, "Inventory reference").
    #[arg(short, long, value_name = "FILE", env = "CLOCKPROV_INVENTORY")]
    pub inventory: PathBuf,
    /// A directory whose chrony.conf.j2 / timesyncd.conf.j2 replace the built-in templates.
    #[arg(long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[allow(clippy::struct_excessive_bools)] // independent command-line switches
pub struct BakeArgs {
    /// The inventory file (format: README.md, "Inventory reference").
    #[arg(short, long, value_name = "FILE", env = "CLOCKPROV_INVENTORY")]
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
    /// Do not ask for confirmation (needed without a terminal).
    #[arg(short, long)]
    pub yes: bool,
    /// Empty a populated /etc/machine-id, so that each clone makes its own at first boot.
    #[arg(long)]
    pub reset_machine_id: bool,
}

/// `--os`: one of the systems clockprov knows the layout of.
fn supported_os(text: &str) -> Result<String, String> {
    if crate::daemon::is_supported_system(text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "not a supported system; supported: {}",
            crate::daemon::supported_systems()
        ))
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn sizes_take_binary_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        for bad in ["", "0", "1.5M", "1TB", "M", "-1"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        let Command::Plan(args) = Cli::try_parse_from(["clockprov", "plan", "-i", "x"])
            .unwrap()
            .command
        else {
            panic!()
        };
        assert_eq!(args.fleet.max_file_size, 1 << 20);
    }

    #[test]
    fn max_skew_defaults_to_cephs_threshold() {
        assert!((DEFAULT_MAX_SKEW.seconds() - 0.05).abs() < 1e-12);
        for (text, seconds) in [("50ms", 0.05), ("0.05", 0.05), ("1s", 1.0)] {
            let cli =
                Cli::try_parse_from(["clockprov", "check", "-i", "x", "--max-skew", text]).unwrap();
            let Command::Check(args) = cli.command else {
                panic!("check")
            };
            assert!((args.max_skew.seconds() - seconds).abs() < 1e-12, "{text}");
        }
    }

    #[test]
    fn record_options_exclude_each_other_and_check_lists_no_sudo_password() {
        let both = [
            "clockprov",
            "apply",
            "-i",
            "x",
            "--record",
            "d",
            "--no-record",
        ];
        assert!(Cli::try_parse_from(both).is_err());
        let cli = Cli::try_parse_from(["clockprov", "apply", "-i", "x", "--record", "d"]).unwrap();
        let Command::Apply(args) = cli.command else {
            panic!("apply")
        };
        assert_eq!(args.record, Some(PathBuf::from("d")));
        assert!(!args.no_record);
        let help = Cli::command()
            .find_subcommand_mut("check")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("--become-password-file"), "{help}");
    }

    #[test]
    fn check_renders_nothing_so_it_takes_no_templates() {
        let help = Cli::command()
            .find_subcommand_mut("check")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(!help.contains("--templates"), "{help}");
        assert!(help.contains("Exit codes: 0 every host ok"), "{help}");
    }
}
