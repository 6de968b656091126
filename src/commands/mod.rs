//! The commands: thin wrappers that load the inventory, run the fleet operations and decide the
//! exit code. Errors reach the user through anyhow, printed with their causes.

mod apply;
mod bake;
mod check;
mod completions;
mod import;
mod man;
mod plan;
mod render;
mod show;
mod validate;

use std::collections::HashSet;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use clap::Parser as _;

use crate::cli::{Cli, Command, FleetArgs};
use crate::fleet::RunOptions;
use crate::glob::Limit;
use crate::inventory::{Host, Inventory};
use crate::operations::{self, HostResult};
use crate::progress;
use crate::render::Renderer;
use crate::report::Style;
use crate::ssh::connector::Connector;
use crate::ssh::secret::Secrets;
use crate::value::HostRef;

/// Exit codes, Terraform's convention: 0 success (no changes), 1 error, 2 changes / findings.
pub(crate) const EXIT_OK: u8 = 0;
pub(crate) const EXIT_ERROR: u8 = 1;
pub(crate) const EXIT_CHANGES: u8 = 2;

/// Parse the command line, run the command, print errors, return the exit code.
#[must_use]
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // Usage errors exit 1, so that 2 keeps meaning "changes" for --detailed-exitcode.
            return ExitCode::from(if e.use_stderr() { EXIT_ERROR } else { EXIT_OK });
        }
    };
    init_logging(&cli);
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    // Progress only where someone watches it, and never with -q.
    progress::init(std::io::stderr().is_terminal() && !cli.quiet);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// `-q`: only errors on stderr (no progress, no wait-sync rounds, no notes).
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// A note for people on stderr, unless `-q`.
fn note(text: &str) {
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        progress::suspend(|| eprintln!("{text}"));
    }
}

fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

fn init_logging(cli: &Cli) {
    let level = match (cli.quiet, cli.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, _) => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("CLOCKPROV_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("clockprov={level},warn")));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter)
        .with_ansi(std::io::stderr().is_terminal() && !no_color())
        .without_time()
        .with_target(false)
        .init();
}

/// Writes log lines to stderr with the progress bar cleared meanwhile, so that neither
/// overwrites the other.
struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        progress::suspend(|| std::io::stderr().write(buf))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Run one parsed command.
///
/// # Errors
/// Bad input (inventory, templates, arguments) or a failure that concerns the whole run.
pub(crate) fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Plan(args) => plan::run(&args),
        Command::Apply(args) => apply::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Bake(args) => bake::run(&args),
        Command::Render(args) => render::run(&args),
        Command::Show(args) => show::run(&args),
        Command::Import(source) => import::run(&source),
        Command::Completions(args) => completions::run(&args),
        Command::Man => man::run(),
        Command::Validate(args) => validate::run(&args),
    }
}

fn stdout_style() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && !no_color(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    crate::fleet::runtime().context("starting the async runtime")
}

/// Everything a fleet command needs before it contacts any host.
struct Prepared {
    connector: Arc<Connector>,
    renderer: Arc<Renderer>,
    hosts: Vec<Host>,
    /// The inventory's text as read (its digest goes into apply's record).
    inventory_source: String,
    /// Every host of the inventory, `--limit` or not: check measures a limited client's server.
    all_hosts: Vec<Host>,
    options: RunOptions,
    /// One runtime for the whole command: the connections' tasks live in it between phases.
    runtime: tokio::runtime::Runtime,
    /// The inventory's file (for `plan --out` and apply's record).
    inventory: PathBuf,
    /// The connector's name for [`prepare_at`]'s `reach` host, when asked for.
    reach: Option<String>,
}

/// `-i FILE` (or `$CLOCKPROV_INVENTORY`), which every fleet command but `apply PLAN` needs.
fn inventory_arg(args: &FleetArgs) -> anyhow::Result<&Path> {
    args.inventory.as_deref().context(
        "no inventory: give -i FILE or set CLOCKPROV_INVENTORY (format: README.md, \"Inventory reference\")",
    )
}

/// Load the inventory, select the hosts and set up their connections (nothing is contacted);
/// `templates` is `--templates` for the commands that render.
fn prepare(args: &FleetArgs, templates: Option<PathBuf>) -> anyhow::Result<Prepared> {
    prepare_at(args, inventory_arg(args)?, templates, None)
}

/// [`prepare`] with the inventory at `path`; `reach` is a command's extra host (`--ceph HOST`,
/// named by `flag` in errors): an inventory host or one outside it, reached as the inventory's
/// hosts are and never measured. Its name for [`Connector::session`] is [`Prepared::reach`].
fn prepare_at(
    args: &FleetArgs,
    path: &Path,
    templates: Option<PathBuf>,
    reach: Option<(&str, &HostRef)>,
) -> anyhow::Result<Prepared> {
    // Before any socket: one per host is held until the command's last phase.
    crate::nofile::raise_to_hard_limit();
    // Started first: nothing is read or asked before we know we can run at all.
    let runtime = runtime()?;
    let inventory = Inventory::load(path)?;
    let renderer = Arc::new(renderer_for(&inventory, templates)?);
    let names: Vec<&str> = inventory.host_names().collect();
    let limit = limit(&args.limit, &names, "host", path)?;
    // Refused before anything is contacted: a mistyped name is not an unreachable host.
    let outside = match reach {
        Some((flag, host)) => host.outside(names.iter().copied()).map_err(|why| {
            anyhow::anyhow!("{flag} {}: {why}", crate::report::shown(&host.to_string()))
        })?,
        None => None,
    };
    // The shard is cut from the whole inventory, so that --limit never moves a host to another.
    let shard: Option<HashSet<&str>> = args
        .shard
        .map(|shard| shard.select(&names).into_iter().collect());
    let hosts: Vec<Host> = inventory
        .hosts
        .iter()
        .filter(|h| limit.selects(h.name.as_str()))
        .filter(|h| shard.as_ref().is_none_or(|s| s.contains(h.name.as_str())))
        .cloned()
        .collect();
    if hosts.is_empty() {
        if names.is_empty() {
            bail!("{}: the inventory has no hosts", path.display());
        }
        let mut cut = Vec::new();
        if !limit.is_empty() {
            cut.push(format!("--limit {}", args.limit.join(",")));
        }
        if let Some(shard) = args.shard {
            cut.push(format!("--shard {shard}"));
        }
        bail!(
            "{} leaves no host of {} ({} hosts)",
            cut.join(" with "),
            path.display(),
            names.len()
        );
    }
    let options = RunOptions {
        forks: usize::from(args.forks),
        connect_timeout: args.connect_timeout.map(|d| d.0),
        command_timeout: args.command_timeout.map(|d| d.0),
        max_output: args.max_output,
        progress: true,
        max_file_size: args.max_file_size,
        keep_shells: false,
        release_done: false,
        keep_open: None,
    };
    let secrets = Secrets::from_environment(args.become_password_file.as_deref())?;
    let connector = Arc::new(Connector::with_secrets(
        &inventory,
        &options,
        &secrets,
        outside.as_slice(),
    )?);
    let reach = reach.map(|(_, host)| {
        outside
            .as_ref()
            .map_or_else(|| host.to_string(), ToString::to_string)
    });
    Ok(Prepared {
        connector,
        renderer,
        hosts,
        inventory_source: inventory.source.clone(),
        all_hosts: inventory.hosts.clone(),
        options,
        runtime,
        inventory: path.to_owned(),
        reach,
    })
}

/// The `--limit` selection among `names` (hosts or images). A pattern that matches none of them
/// is an error, with the closest name: a typo must not silently shrink the run.
fn limit(
    patterns: &[String],
    names: &[&str],
    what: &str,
    inventory: &Path,
) -> anyhow::Result<Limit> {
    let limit = Limit::new(patterns);
    let unmatched = limit.unmatched(names);
    if unmatched.is_empty() {
        return Ok(limit);
    }
    let problems: Vec<String> = unmatched
        .iter()
        .map(|pattern| {
            format!(
                "--limit {pattern} matches no {what} of {}{}",
                inventory.display(),
                crate::suggest::did_you_mean(pattern, names.iter().copied())
            )
        })
        .collect();
    let mut listed = names
        .iter()
        .take(12)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 12 {
        listed.push_str(", ...");
    } else if names.is_empty() {
        listed.push_str("none");
    }
    bail!("{} ({what}s: {listed})", problems.join("; "))
}

fn renderer_for(inventory: &Inventory, from_cli: Option<PathBuf>) -> anyhow::Result<Renderer> {
    let dir = from_cli.or_else(|| {
        inventory
            .file
            .templates
            .as_ref()
            .map(|t| inventory.resolve_path(t))
    });
    if let Some(dir) = &dir
        && !dir.is_dir()
    {
        bail!("templates directory {} does not exist", dir.display());
    }
    Ok(Renderer::new(dir.as_deref())?)
}

fn plan_results(prepared: &Prepared) -> Vec<HostResult> {
    prepared.runtime.block_on(operations::plan_hosts(
        prepared.connector.clone(),
        prepared.renderer.clone(),
        prepared.hosts.clone(),
        &prepared.options,
    ))
}

fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    out.flush().context("writing to stdout")
}

fn ask(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to change anything without confirmation: stdin is not a terminal; pass --yes"
        );
    }
    eprint!("{question} [y/N] ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(is_yes(&answer))
}

/// `y` or `yes`, in any case; anything else (Enter included) is no.
fn is_yes(answer: &str) -> bool {
    let answer = answer.trim();
    answer.eq_ignore_ascii_case("y") || answer.eq_ignore_ascii_case("yes")
}
