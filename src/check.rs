//! `check` and `apply --wait-sync`: read every host's clock over its connection, then judge the
//! fleet as Ceph would.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

use crate::clock::{self, ClockReading, DaemonView, Finding};
use crate::daemon::Daemon;
use crate::fleet::RunOptions;
use crate::host::readings::{daemon_state_script, measure_offset, parse_daemon_state};
use crate::inventory::{Host, Role};
use crate::ssh::connector::Connector;

/// Ceph's `mon_clock_drift_allowed`.
pub const DEFAULT_MAX_SKEW: f64 = 0.05;
/// Clock readings per host; the one with the smallest round trip is kept.
pub const DEFAULT_SAMPLES: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    Ok,
    Findings,
    Unreachable,
    Failed,
}

/// One host's clock, as `check` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct HostCheck {
    pub name: String,
    pub address: String,
    pub role: String,
    pub status: CheckStatus,
    pub error: Option<String>,
    /// Host clock minus controller clock.
    pub offset_seconds: Option<f64>,
    pub uncertainty_seconds: Option<f64>,
    /// Host clock minus its NTP server's clock (both measured from the controller): the skew
    /// Ceph sees between monitors.
    pub offset_to_server_seconds: Option<f64>,
    pub synchronized: Option<bool>,
    pub server: Option<String>,
    pub unit: Option<String>,
    pub unit_state: Option<String>,
    pub daemon: Option<DaemonView>,
    pub findings: Vec<Finding>,
}

impl HostCheck {
    /// The verdict in words: "ok", the findings, or why the host could not be checked.
    #[must_use]
    pub fn verdict(&self) -> String {
        match self.status {
            CheckStatus::Ok => "ok".to_owned(),
            CheckStatus::Findings => self
                .findings
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
            CheckStatus::Unreachable => {
                format!("unreachable: {}", self.error.as_deref().unwrap_or(""))
            }
            CheckStatus::Failed => format!("failed: {}", self.error.as_deref().unwrap_or("")),
        }
    }
}

fn daemon_of(host: &Host) -> Daemon {
    if host.is_server() {
        Daemon::Chrony
    } else {
        Daemon::Timesyncd
    }
}

/// A host's reading, or why there is none (true: unreachable).
pub type ReadingResult = Result<ClockReading, (bool, String)>;

/// Read every host's clock and daemon state, `options.forks` at a time.
///
/// # Panics
/// Only if a host's task panics (a bug).
pub async fn read_clocks(
    connector: Arc<Connector>,
    hosts: &[Host],
    options: &RunOptions,
    samples: usize,
) -> Vec<ReadingResult> {
    let limit = Arc::new(Semaphore::new(options.forks.max(1)));
    let mut tasks = Vec::with_capacity(hosts.len());
    for host in hosts {
        let (connector, limit, name, daemon) = (
            connector.clone(),
            limit.clone(),
            host.name.to_string(),
            daemon_of(host),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.expect("semaphore open");
            let session = connector.session(&name).await.map_err(|e| (true, e))?;
            let offset = measure_offset(&session, samples)
                .await
                .map_err(|e| (false, format!("reading the clock: {e}")))?;
            let out = session
                .run(&daemon_state_script(daemon))
                .await
                .map_err(|e| (false, format!("reading {}'s state: {e}", daemon.package())))?;
            let (unit_state, view) = parse_daemon_state(daemon, &out.stdout_text());
            Ok(ClockReading {
                offset,
                unit: daemon.unit().to_owned(),
                unit_state,
                view,
            })
        }));
    }
    let mut readings = Vec::with_capacity(tasks.len());
    for task in tasks {
        readings.push(task.await.expect("clock task panicked"));
    }
    readings
}

/// Judge every host: clients against their server's clock and address, servers on their own.
#[must_use]
pub fn judge_fleet(hosts: &[Host], readings: &[ReadingResult], max_skew: f64) -> Vec<HostCheck> {
    let offset_of = |address: &str| {
        hosts
            .iter()
            .zip(readings)
            .find(|(h, _)| h.is_server() && h.address.to_string() == address)
            .and_then(|(_, r)| r.as_ref().ok())
            .map(|r| r.offset.offset)
    };
    hosts
        .iter()
        .zip(readings)
        .map(|(host, reading)| {
            let mut check = HostCheck {
                name: host.name.to_string(),
                address: host.address.to_string(),
                role: if host.is_server() { "server" } else { "client" }.to_owned(),
                status: CheckStatus::Failed,
                error: None,
                offset_seconds: None,
                uncertainty_seconds: None,
                offset_to_server_seconds: None,
                synchronized: None,
                server: None,
                unit: None,
                unit_state: None,
                daemon: None,
                findings: Vec::new(),
            };
            let reading = match reading {
                Ok(reading) => reading,
                Err((unreachable, error)) => {
                    check.status = if *unreachable {
                        CheckStatus::Unreachable
                    } else {
                        CheckStatus::Failed
                    };
                    check.error = Some(error.clone());
                    return check;
                }
            };
            let expected: Vec<String> = match &host.role {
                Role::Server(_) => Vec::new(),
                Role::Client { servers, .. } => servers.iter().map(ToString::to_string).collect(),
            };
            let to_server = expected
                .iter()
                .find_map(|a| offset_of(a))
                .map(|server| reading.offset.offset - server);
            let relative = to_server.unwrap_or(reading.offset.offset);
            check.findings = clock::judge(reading, relative, &expected, max_skew);
            check.status = if check.findings.is_empty() {
                CheckStatus::Ok
            } else {
                CheckStatus::Findings
            };
            check.offset_seconds = Some(reading.offset.offset);
            check.uncertainty_seconds = Some(reading.offset.uncertainty);
            check.offset_to_server_seconds = to_server;
            check.synchronized = Some(reading.view.synchronized);
            check.server.clone_from(&reading.view.server);
            check.unit = Some(reading.unit.clone());
            check.unit_state = Some(reading.unit_state.clone());
            check.daemon = Some(reading.view.clone());
            check
        })
        .collect()
}

/// Poll until every host is ok or `within` runs out; `report` is called after each round with the
/// hosts still waiting. Returns the last judgement.
pub async fn wait_for_sync(
    connector: Arc<Connector>,
    hosts: &[Host],
    options: &RunOptions,
    max_skew: f64,
    within: Duration,
    mut report: impl FnMut(&[HostCheck], Duration),
) -> Vec<HostCheck> {
    let start = tokio::time::Instant::now();
    loop {
        let readings = read_clocks(connector.clone(), hosts, options, DEFAULT_SAMPLES).await;
        let checks = judge_fleet(hosts, &readings, max_skew);
        let elapsed = start.elapsed();
        report(&checks, elapsed);
        if checks.iter().all(|c| c.status == CheckStatus::Ok) || elapsed >= within {
            return checks;
        }
        tokio::time::sleep(Duration::from_secs(2).min(within.saturating_sub(elapsed))).await;
    }
}
