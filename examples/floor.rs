//! The "floor" of the speed benchmark (`scripts/bench.sh`): the least any SSH fan-out over the
//! inventory has to do. For every host it opens one connection (russh, host key checked against
//! `known_hosts`, public-key auth: the same `Connector` clockprov uses) and runs `true` on it, at
//! most `--forks` hosts at a time (clockprov's own fan-out engine, `fleet::for_each`), then
//! prints the wall time. Nothing is rendered or planned.
//!
//! With `--clock-samples N` it is `check`'s floor instead: the one channel runs bash, which
//! answers N numbered requests with its clock (`$EPOCHREALTIME`), one round trip each, as
//! `check` reads a clock (`check --samples`, default 7); no daemon is asked anything.
//!
//! With `--read PATH` (repeatable) it is issue 14's floor for `plan`: the command is `cat` of
//! those files instead of `true` (one process, as `true` is), its exit status 0 or 1 (1: a file
//! that host does not have), the files' text read and dropped.
//!
//! ```text
//! cargo run --release --example floor -- -i INVENTORY [--forks N] [--connect-timeout DURATION]
//!     [--clock-samples N] [--read PATH]...
//! ```
//!
//! `--connect-timeout` (e.g. `60s`) is clockprov's option of the same name.
//!
//! Exits 0 when `true` (or `cat`) succeeded on every host, 1 otherwise (each failure is named on
//! stderr), 2 on bad arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clockprov::fleet::{RunOptions, for_each};
use clockprov::inventory::Inventory;
use clockprov::outcome::{ErrorKind, HostError};
use clockprov::progress::Progress;
use clockprov::ssh::connector::Connector;
use clockprov::ssh::transport::Session;
use clockprov::value::DurationValue;

// The same allocator as clockprov's binary (src/main.rs): the floor is clockprov's client minus
// clockprov's own work, so the two are compared on equal terms.
#[cfg(unix)]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// clockprov's own default for `--forks`.
const DEFAULT_FORKS: usize = 64;

const USAGE: &str = "usage: floor -i INVENTORY [--forks N] [--connect-timeout DURATION] [--clock-samples N] \
     [--read PATH]...";

/// The clock reader of `--clock-samples`: each request line answered with itself and the time.
const CLOCK_READER: &str =
    r#"exec bash -c 'while IFS= read -r n; do printf "%s %s\n" "$n" "$EPOCHREALTIME"; done'"#;

struct Args {
    inventory: PathBuf,
    forks: usize,
    connect_timeout: Option<Duration>,
    /// 0: run `true` (or `cat`).
    clock_samples: usize,
    /// Not empty: run `cat` of these instead of `true`.
    read: Vec<String>,
}

impl Args {
    /// The one command each host runs.
    fn command(&self) -> String {
        if self.read.is_empty() {
            "true".to_owned()
        } else {
            // `exec`: the login shell becomes the one process, as with `true` (bash execs it).
            format!("exec cat -- {} 2>/dev/null", self.read.join(" "))
        }
    }
}

fn parse_args() -> Result<Args, String> {
    let mut inventory = None;
    let mut forks = DEFAULT_FORKS;
    let mut connect_timeout = None;
    let mut clock_samples = 0;
    let mut read = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_owned(), Some(value.to_owned()))
            }
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| {
            inline
                .clone()
                .or_else(|| args.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match flag.as_str() {
            "-i" | "--inventory" => inventory = Some(PathBuf::from(value("--inventory")?)),
            "-f" | "--forks" => {
                let v = value("--forks")?;
                forks = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .ok_or_else(|| format!("--forks takes a number >= 1, not {v:?}"))?;
            }
            "--connect-timeout" => {
                let v = value("--connect-timeout")?;
                connect_timeout = Some(v.parse::<DurationValue>()?.0);
            }
            "--clock-samples" => {
                let v = value("--clock-samples")?;
                clock_samples = v
                    .parse()
                    .ok()
                    .filter(|&n: &usize| n >= 1)
                    .ok_or_else(|| format!("--clock-samples takes a number >= 1, not {v:?}"))?;
            }
            "--read" => {
                let v = value("--read")?;
                // It goes into the command line unquoted: a plain absolute path only.
                let plain = v.starts_with('/')
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
                if !plain {
                    return Err(format!(
                        "--read takes an absolute path of letters, digits and / . _ -, not {v:?}"
                    ));
                }
                read.push(v);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Args {
        inventory: inventory.ok_or("-i INVENTORY is required")?,
        forks,
        connect_timeout,
        clock_samples,
        read,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("floor: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    let inventory = match Inventory::load(&args.inventory) {
        Ok(inventory) => inventory,
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    let options = RunOptions {
        forks: args.forks,
        connect_timeout: args.connect_timeout,
        command_timeout: None,
        max_output: clockprov::ssh::transport::DEFAULT_MAX_OUTPUT,
        progress: false,
        max_file_size: clockprov::host::facts::DEFAULT_MAX_FILE_SIZE,
        keep_shells: false,
        release_done: false,
        keep_open: None,
    };
    let connector = match Connector::new(&inventory, &options) {
        Ok(connector) => Arc::new(connector),
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The same runtime clockprov's commands build.
    let runtime = match clockprov::fleet::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floor: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<String> = inventory.hosts.iter().map(|h| h.name.to_string()).collect();
    let hosts = names.len();
    let samples = args.clock_samples;
    let command: Arc<str> = args.command().into();
    // cat's 1: one of the files is not on that host (the other was still read).
    let read_files = !args.read.is_empty();
    let fan_out = Instant::now();
    // The same fan-out engine clockprov's commands use.
    let outcomes = runtime.block_on(for_each(
        names.clone(),
        args.forks,
        Progress::hidden(),
        move |name, _status| {
            let connector = connector.clone();
            let command = command.clone();
            async move {
                let session = connector.session(&name).await?;
                if samples > 0 {
                    return read_clock(&session, samples).await;
                }
                run_command(&session, &command, read_files).await
            }
        },
    ));
    let failures: Vec<String> = names
        .iter()
        .zip(&outcomes)
        .filter_map(|(name, outcome)| outcome.error().map(|e| format!("{name}: {e}")))
        .collect();
    let fan_out = fan_out.elapsed();
    let total = start.elapsed();
    for failure in &failures {
        eprintln!("floor: {failure}");
    }
    println!(
        "floor: {hosts} hosts, forks {}: {} ok, {} failed; fan-out {:.1} ms, wall {:.1} ms",
        args.forks,
        hosts - failures.len(),
        failures.len(),
        fan_out.as_secs_f64() * 1e3,
        total.as_secs_f64() * 1e3,
    );
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The floor's one command; `read_files`: `cat`, whose 1 says a file is not on that host.
async fn run_command(session: &Session, command: &str, read_files: bool) -> Result<(), HostError> {
    let out = session.run(command).await?;
    if out.success() || (read_files && out.status == Some(1)) {
        Ok(())
    } else {
        Err(HostError::new(
            ErrorKind::RemoteCommandFailed,
            format!(
                "`{command}` exited with {:?}: {}",
                out.status,
                out.stderr_text()
            ),
        ))
    }
}

/// `check`'s floor: `samples` numbered clock requests over one channel, each answered in turn.
async fn read_clock(session: &Session, samples: usize) -> Result<(), HostError> {
    let mut conversation = session.open_conversation(CLOCK_READER).await?;
    let mut result = Ok(());
    for request in 0..samples {
        let reply = match conversation.send_line(&request.to_string()).await {
            Ok(()) => conversation.read_line().await,
            Err(e) => Err(e),
        };
        let answered = match reply {
            Ok(Some(line)) => line
                .strip_prefix(&format!("{request} "))
                .is_some_and(|t| t.trim().parse::<f64>().is_ok()),
            Ok(None) => false,
            Err(e) => {
                result = Err(HostError::from(e));
                break;
            }
        };
        if !answered {
            result = Err(HostError::new(
                ErrorKind::UnexpectedOutput,
                format!("clock request {request} not answered with a time"),
            ));
            break;
        }
    }
    conversation.close().await;
    result
}
