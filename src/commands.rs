//! The commands: thin wrappers that load the inventory, run the fleet operations and decide the
//! exit code. Errors reach the user through anyhow, printed with their causes.

use std::fmt::Write as _;
use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, anyhow, bail};
use clap::Parser as _;

use crate::bake::{self, BakeOptions, ImageResult, ImageStatus};
use crate::check::{self, CheckStatus, HostCheck};
use crate::cli::{
    ApplyArgs, BakeArgs, CheckArgs, Cli, Command, FleetArgs, Format, PlanArgs, RenderArgs,
};
use crate::daemon::{Daemon, DaemonVersion};
use crate::fleet::{self, Connector, HostResult, HostStatus, RunOptions, Summary};
use crate::glob::Limit;
use crate::inventory::{Host, Inventory};
use crate::render::{RenderInputs, Renderer};
use crate::report::{self, Style};
use crate::secret::Secrets;

/// Exit codes, Terraform's convention: 0 success (no changes), 1 error, 2 changes / findings.
pub const EXIT_OK: u8 = 0;
pub const EXIT_ERROR: u8 = 1;
pub const EXIT_CHANGES: u8 = 2;

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
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
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
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !no_color())
        .without_time()
        .with_target(false)
        .init();
}

/// Run one parsed command.
///
/// # Errors
/// Bad input (inventory, templates, arguments) or a failure that concerns the whole run.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Plan(args) => plan(&args),
        Command::Apply(args) => apply(&args),
        Command::Check(args) => check(&args),
        Command::Bake(args) => bake(&args),
        Command::Render(args) => render(&args),
    }
}

fn stdout_style() -> Style {
    Style {
        color: std::io::stdout().is_terminal() && !no_color(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Everything a fleet command needs before it contacts any host.
struct Prepared {
    connector: Arc<Connector>,
    renderer: Arc<Renderer>,
    hosts: Vec<Host>,
    options: RunOptions,
    /// One runtime for the whole command: the connections' tasks live in it between phases.
    runtime: tokio::runtime::Runtime,
}

fn prepare(args: &FleetArgs) -> anyhow::Result<Prepared> {
    let inventory = Inventory::load(&args.inventory)?;
    let renderer = Arc::new(renderer_for(&inventory, args.templates.clone())?);
    let limit = Limit::new(&args.limit);
    let hosts: Vec<Host> = inventory
        .hosts
        .iter()
        .filter(|h| limit.selects(h.name.as_str()))
        .cloned()
        .collect();
    if hosts.is_empty() {
        if limit.is_empty() {
            bail!("{}: the inventory has no hosts", args.inventory.display());
        }
        bail!(
            "--limit {} matches no host of {}",
            args.limit.join(","),
            args.inventory.display()
        );
    }
    let options = RunOptions {
        forks: usize::from(args.forks),
        connect_timeout: args.connect_timeout.map(|d| d.0),
        command_timeout: args.command_timeout.map(|d| d.0),
        progress: true,
    };
    let secrets = Secrets::from_environment(args.become_password_file.as_deref())?;
    let connector = Arc::new(Connector::with_secrets(&inventory, &options, &secrets)?);
    Ok(Prepared {
        connector,
        renderer,
        hosts,
        options,
        runtime: runtime()?,
    })
}

fn renderer_for(inventory: &Inventory, from_cli: Option<PathBuf>) -> anyhow::Result<Renderer> {
    let dir = from_cli.or_else(|| {
        inventory.file.templates.as_ref().map(|t| {
            let path = t.expand();
            if path.is_absolute() {
                path
            } else {
                inventory.base_dir().join(path)
            }
        })
    });
    if let Some(dir) = &dir
        && !dir.is_dir()
    {
        bail!("templates directory {} does not exist", dir.display());
    }
    Ok(Renderer::new(dir.as_deref())?)
}

fn plan_results(prepared: &Prepared) -> Vec<HostResult> {
    prepared.runtime.block_on(fleet::plan_hosts(
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

fn plan(args: &PlanArgs) -> anyhow::Result<u8> {
    let prepared = prepare(&args.fleet)?;
    let results = plan_results(&prepared);
    match args.fleet.format {
        Format::Text => print_stdout(&report::plan_text(&results, stdout_style()))?,
        Format::Json => print_stdout(&report::json("plan", &results))?,
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

fn confirm(hosts: usize) -> anyhow::Result<bool> {
    ask(&format!(
        "Apply these changes to {hosts} host{}?",
        if hosts == 1 { "" } else { "s" }
    ))
}

fn ask(question: &str) -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "refusing to change anything without confirmation: stdin is not a terminal; pass --yes"
        );
    }
    eprint!("{question} Type 'yes' to go on: ");
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(answer.trim().eq_ignore_ascii_case("yes"))
}

fn apply(args: &ApplyArgs) -> anyhow::Result<u8> {
    let prepared = prepare(&args.fleet)?;
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
            return Err(anyhow!("apply cancelled; nothing was changed"));
        }
        let rt = runtime()?;
        rt.block_on(fleet::apply_hosts(
            prepared.connector.clone(),
            results,
            &prepared.options,
        ))
    };
    match args.fleet.format {
        Format::Text => print_stdout(&format!(
            "\n{}",
            report::apply_text(&results, stdout_style())
        ))?,
        Format::Json => print_stdout(&report::json("apply", &results))?,
    }
    let mut code = if Summary::of(&results).has_errors() {
        EXIT_ERROR
    } else {
        EXIT_OK
    };
    if let Some(within) = args.wait_sync {
        let checks = prepared.runtime.block_on(check::wait_for_sync(
            prepared.connector.clone(),
            &prepared.hosts,
            &prepared.options,
            args.max_skew,
            within.0,
            |checks, elapsed| wait_progress(checks, elapsed, within.0),
        ));
        let waiting: Vec<String> = checks
            .iter()
            .filter(|c| c.status != CheckStatus::Ok)
            .map(|c| format!("{} ({})", c.name, c.verdict()))
            .collect();
        if waiting.is_empty() {
            eprintln!(
                "wait-sync: all {} hosts synchronized, within {} s of their server",
                checks.len(),
                args.max_skew
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
    let ok = checks
        .iter()
        .filter(|c| c.status == CheckStatus::Ok)
        .count();
    let waiting: Vec<String> = checks
        .iter()
        .filter(|c| c.status != CheckStatus::Ok)
        .map(|c| format!("{}: {}", c.name, c.verdict()))
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

fn check(args: &CheckArgs) -> anyhow::Result<u8> {
    let prepared = prepare(&args.fleet)?;
    let readings = prepared.runtime.block_on(check::read_clocks(
        prepared.connector.clone(),
        &prepared.hosts,
        &prepared.options,
        usize::from(args.samples),
    ));
    let checks = check::judge_fleet(&prepared.hosts, &readings, args.max_skew);
    match args.fleet.format {
        Format::Text => print_stdout(&report::check_text(&checks, args.max_skew, stdout_style()))?,
        Format::Json => print_stdout(&report::check_json(&checks, args.max_skew))?,
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

fn render(args: &RenderArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(&args.inventory)?;
    let renderer = renderer_for(&inventory, args.templates.clone())?;
    let host = inventory
        .hosts
        .iter()
        .find(|h| h.name.as_str() == args.host)
        .ok_or_else(|| {
            anyhow!(
                "no host named {:?} in {}",
                args.host,
                args.inventory.display()
            )
        })?;
    let (os_id, os_version) = args
        .os
        .split_once(':')
        .ok_or_else(|| anyhow!("--os takes ID:VERSION_ID, e.g. ubuntu:20.04 or debian:12"))?;
    let daemon = if host.is_server() {
        Daemon::Chrony
    } else {
        Daemon::Timesyncd
    };
    let version = match &args.daemon_version {
        Some(v) => DaemonVersion::from_debian(v)
            .ok_or_else(|| anyhow!("--daemon-version {v:?} is not a version"))?,
        None => daemon.distribution_default(os_id, os_version),
    };
    let desired = renderer.render(host, RenderInputs { os_id, version })?;
    for file in &desired.files {
        tracing::info!("{}:{}", host.name, file.path);
        print_stdout(&file.content)?;
    }
    Ok(EXIT_OK)
}

fn bake(args: &BakeArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(&args.inventory)?;
    let renderer = renderer_for(&inventory, args.templates.clone())?;
    let limit = Limit::new(&args.limit);
    let images: Vec<_> = inventory
        .file
        .images
        .iter()
        .filter(|(name, _)| limit.selects(name.as_str()))
        .collect();
    if images.is_empty() {
        if inventory.file.images.is_empty() {
            bail!("{}: the inventory has no images", args.inventory.display());
        }
        bail!(
            "--limit {} matches no image of {}",
            args.limit.join(","),
            args.inventory.display()
        );
    }
    // Decide before any appliance starts: nothing is opened for writing that cannot be written.
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        bail!(
            "refusing to bake without confirmation: stdin is not a terminal; pass --yes (or --dry-run)"
        );
    }
    let options = BakeOptions {
        reset_machine_id: args.reset_machine_id,
    };
    let forks = usize::from(args.forks);
    // Opening a disk image boots libguestfs's appliance (about 20 s under TCG): say so on a
    // terminal, so that a quiet wait does not look like a hang.
    let progress = std::io::stderr().is_terminal();
    let opened = bake::parallel_map(images, forks, |(name, spec)| {
        let started = std::time::Instant::now();
        let path = bake::image_path(&inventory, spec);
        tracing::info!("{name}: opening {}", path.display());
        if progress {
            eprintln!("bake: {name}: opening {} ...", path.display());
        }
        let result = bake::open_and_plan(
            &inventory,
            &renderer,
            name.as_str(),
            spec,
            &path,
            args.dry_run,
            options,
        );
        if progress {
            eprintln!(
                "bake: {name}: read in {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
        (name.as_str(), path, started, result)
    });
    let mut planned = Vec::new();
    let mut results = Vec::new();
    for (name, path, started, result) in opened {
        let seconds = started.elapsed().as_secs_f64();
        match result {
            Ok(image) => {
                results.push(ImageResult::planned(&image, seconds));
                planned.push((image, started));
            }
            Err(e) => results.push(ImageResult::failed(name, &path, &e, seconds)),
        }
    }
    if args.format == Format::Text {
        print_stdout(&report::bake_plan_text(&results, stdout_style()))?;
    }
    let changes = results
        .iter()
        .filter(|r| r.status == ImageStatus::Change)
        .count();
    let go = !args.dry_run
        && changes > 0
        && (args.yes
            || ask(&format!(
                "Bake these changes into {changes} image{}?",
                if changes == 1 { "" } else { "s" }
            ))?);
    finish_images(planned, go, forks, &mut results);
    match args.format {
        Format::Text if go => print_stdout(&format!(
            "\n{}",
            report::bake_done_text(&results, stdout_style())
        ))?,
        Format::Text => {}
        Format::Json => print_stdout(&report::bake_json(&results, args.dry_run))?,
    }
    let failed = results.iter().any(|r| r.status == ImageStatus::Failed);
    if !go && !args.dry_run && changes > 0 && !failed {
        return Err(anyhow!("bake cancelled; nothing was changed"));
    }
    Ok(if failed {
        EXIT_ERROR
    } else if args.detailed_exitcode && changes > 0 {
        EXIT_CHANGES
    } else {
        EXIT_OK
    })
}

/// Bake the open images when `go`, else just close them; record the outcomes in `results`.
fn finish_images(
    planned: Vec<(bake::OpenImage, std::time::Instant)>,
    go: bool,
    forks: usize,
    results: &mut [ImageResult],
) {
    let stamp = bake::utc_stamp(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    let finished = bake::parallel_map(planned, forks, |(image, started)| {
        let name = image.name.clone();
        let outcome = if go && image.plan.has_changes() {
            bake::execute(image, &stamp).map(Some)
        } else {
            image
                .root
                .finish()
                .map(|()| None)
                .map_err(bake::BakeError::from)
        };
        (name, started.elapsed().as_secs_f64(), outcome)
    });
    for (name, seconds, outcome) in finished {
        let Some(result) = results.iter_mut().find(|r| r.name == name) else {
            continue;
        };
        result.seconds = seconds;
        match outcome {
            Ok(Some(report)) => {
                result.status = ImageStatus::Baked;
                result.report = Some(report);
            }
            Ok(None) => {}
            Err(e) => {
                result.status = ImageStatus::Failed;
                result.error = Some(e.to_string());
            }
        }
    }
}
