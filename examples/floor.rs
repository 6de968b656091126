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
//! ```text
//! cargo run --release --example floor -- -i INVENTORY [--forks N] [--connect-timeout DURATION]
//!     [--clock-samples N]
//! ```
//!
//! `--connect-timeout` (e.g. `60s`) is clockprov's option of the same name.
//!
//! Exits 0 when `true` succeeded on every host, 1 otherwise (each failure is named on stderr),
//! 2 on bad arguments.

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

/// clockprov's own default for `--forks`.
const DEFAULT_FORKS: usize = 64;

const USAGE: &str =
    "usage: floor -i INVENTORY [--forks N] [--connect-timeout DURATION] [--clock-samples N]";

/// The clock reader of `--clock-samples`: each request line answered with itself and the time.
const CLOCK_READER: &str =
    r#"exec bash -c 'while IFS= read -r n; do printf "%s %s\n" "$n" "$EPOCHREALTIME"; done'"#;

struct Args {
    inventory: PathBuf,
    forks: usize,
    connect_timeout: Option<Duration>,
    /// 0: run `true`.
    clock_samples: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut inventory = None;
    let mut forks = DEFAULT_FORKS;
    let mut connect_timeout = None;
    let mut clock_samples = 0;
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
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    Ok(Args {
        inventory: inventory.ok_or("-i INVENTORY is required")?,
        forks,
        connect_timeout,
        clock_samples,
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
    };
    let connector = match Connector::new(&inventory, &options) {
        Ok(connector) => Arc::new(connector),
        Err(e) => {
            eprintln!("floor: {e}");
            return ExitCode::FAILURE;
        }
    };
    // The same runtime clockprov's commands build.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("floor: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<String> = inventory.hosts.iter().map(|h| h.name.to_string()).collect();
    let hosts = names.len();
    let samples = args.clock_samples;
    let fan_out = Instant::now();
    // The same fan-out engine clockprov's commands use.
    let outcomes = runtime.block_on(for_each(
        names.clone(),
        args.forks,
        Progress::hidden(),
        move |name, _status| {
            let connector = connector.clone();
            async move {
                let session = connector.session(&name).await?;
                if samples > 0 {
                    return read_clock(&session, samples).await;
                }
                let out = session.run("true").await?;
                if out.success() {
                    Ok(())
                } else {
                    Err(HostError::new(
                        ErrorKind::RemoteCommandFailed,
                        format!("`true` exited with {:?}: {}", out.status, out.stderr_text()),
                    ))
                }
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
