//! `check` and `apply --wait-sync`: read every host's clock over its connection, then judge the
//! fleet as Ceph would.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::clock::{self, ClockReading, DaemonView, Finding};
use crate::fleet::{self, RunOptions};
use crate::host::readings::{daemon_state_script, measure_offset, parse_daemon_state};
use crate::inventory::{Host, Role};
use crate::outcome::{ErrorKind, HostError, Outcome};
use crate::progress::Progress;
use crate::ssh::connector::Connector;

/// Ceph's `mon_clock_drift_allowed`: the default `--max-skew`.
pub(crate) const DEFAULT_MAX_SKEW: Duration = Duration::from_millis(50);
/// Clock readings per host; the one with the smallest round trip is kept.
pub(crate) const DEFAULT_SAMPLES: usize = 7;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CheckStatus {
    Ok,
    Findings,
    Unreachable,
    Failed,
}

/// One host's clock, as `check` reports it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct HostCheck {
    pub(crate) name: String,
    pub(crate) address: String,
    /// `server` or `client`.
    pub(crate) role: &'static str,
    pub(crate) status: CheckStatus,
    pub(crate) error: Option<String>,
    /// What kind of failure `error` is, for programs.
    pub(crate) error_kind: Option<ErrorKind>,
    /// Host clock minus controller clock.
    pub(crate) offset_seconds: Option<f64>,
    pub(crate) uncertainty_seconds: Option<f64>,
    /// Host clock minus its NTP server's clock (both measured from the controller): the skew
    /// Ceph sees between monitors.
    pub(crate) offset_to_server_seconds: Option<f64>,
    pub(crate) synchronized: Option<bool>,
    pub(crate) server: Option<String>,
    pub(crate) unit: Option<String>,
    pub(crate) unit_state: Option<String>,
    pub(crate) daemon: Option<DaemonView>,
    pub(crate) findings: Vec<Finding>,
}

impl HostCheck {
    /// The verdict in words: "ok", the findings, or why the host could not be checked.
    #[must_use]
    pub(crate) fn verdict(&self) -> String {
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

/// Read every host's clock and daemon state, `options.forks` at a time.
pub(crate) async fn read_clocks(
    connector: Arc<Connector>,
    hosts: &[Host],
    options: &RunOptions,
    progress: Progress,
    samples: usize,
) -> Vec<Outcome<ClockReading>> {
    fleet::for_each(
        hosts.to_vec(),
        options.forks,
        progress,
        move |host, status| {
            let connector = connector.clone();
            async move {
                let daemon = host.daemon();
                status.set("connecting");
                let session = connector.session(host.name.as_str()).await?;
                status.set("reading the clock");
                let offset = measure_offset(&session, samples)
                    .await
                    .map_err(|e| HostError::from(e).context("reading the clock"))?;
                status.set("reading the daemon's state");
                let out = session
                    .run(&daemon_state_script(daemon))
                    .await
                    .map_err(|e| {
                        HostError::from(e).context(&format!("reading {}'s state", daemon.package()))
                    })?;
                let (unit_state, view) = parse_daemon_state(daemon, &out.stdout_text());
                Ok(ClockReading {
                    offset,
                    unit: daemon.unit().to_owned(),
                    unit_state,
                    view,
                })
            }
        },
    )
    .await
}

/// Judge every host: clients against their server's clock and address, servers on their own.
#[must_use]
pub(crate) fn judge_fleet(
    hosts: &[Host],
    readings: &[Outcome<ClockReading>],
    max_skew: f64,
) -> Vec<HostCheck> {
    let offset_of = |address: &str| {
        hosts
            .iter()
            .zip(readings)
            .find(|(h, _)| h.is_server() && h.address.to_string() == address)
            .and_then(|(_, r)| r.done())
            .map(|r| r.offset.offset)
    };
    hosts
        .iter()
        .zip(readings)
        .map(|(host, reading)| {
            let mut check = HostCheck {
                name: host.name.to_string(),
                address: host.address.to_string(),
                role: host.role.word(),
                status: CheckStatus::Failed,
                error: None,
                error_kind: None,
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
                Outcome::Done(reading) => reading,
                Outcome::Unreachable(error) | Outcome::Failed(error) => {
                    check.status = if matches!(reading, Outcome::Unreachable(_)) {
                        CheckStatus::Unreachable
                    } else {
                        CheckStatus::Failed
                    };
                    check.error = Some(error.message.clone());
                    check.error_kind = Some(error.kind);
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
pub(crate) async fn wait_for_sync(
    connector: Arc<Connector>,
    hosts: &[Host],
    options: &RunOptions,
    max_skew: f64,
    within: Duration,
    mut report: impl FnMut(&[HostCheck], Duration),
) -> Vec<HostCheck> {
    let start = tokio::time::Instant::now();
    loop {
        let readings = read_clocks(
            connector.clone(),
            hosts,
            options,
            Progress::hidden(),
            DEFAULT_SAMPLES,
        )
        .await;
        let checks = judge_fleet(hosts, &readings, max_skew);
        let elapsed = start.elapsed();
        report(&checks, elapsed);
        if checks.iter().all(|c| c.status == CheckStatus::Ok) || elapsed >= within {
            return checks;
        }
        tokio::time::sleep(Duration::from_secs(2).min(within.saturating_sub(elapsed))).await;
    }
}
