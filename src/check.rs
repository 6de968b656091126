//! `check` and `apply --wait-sync`: read every host's clock over its connection, then judge the
//! fleet as Ceph would: clients against their server, servers as what they are (synchronized to
//! an upstream, or isolated and serving their own clock).
//!
//! Read-only: nothing here changes a host (see [`crate::host::readings::reading_script`]).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::ceph;
use crate::clock::{self, ClockReading, DaemonView, Finding, Limits, Reference, Severity};
use crate::fleet::{self, RunOptions};
use crate::host;
use crate::host::readings::{HostReading, ReadError, read_host};
use crate::inventory::{Host, Role};
use crate::outcome::{ErrorKind, HostError, Outcome};
use crate::progress::Progress;
use crate::ssh::connector::Connector;
use crate::ssh::sudo::{BecomeError, Privileged};

/// Ceph's `mon_clock_drift_allowed`: the default `--max-skew`.
pub(crate) const DEFAULT_MAX_SKEW: Duration = Duration::from_millis(50);
/// The default `--max-server-offset`: how far a server synchronized to an upstream may be from
/// the (synchronized) controller. Looser than the clients' limit: the controller is not the
/// fleet's reference, only a second opinion on the upstream.
pub(crate) const DEFAULT_MAX_SERVER_OFFSET: Duration = Duration::from_millis(100);
/// Clock readings per host; the one with the smallest round trip is kept.
pub(crate) const DEFAULT_SAMPLES: usize = 7;

/// The controller's own clock, as its kernel sees it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct ControllerClock {
    /// The kernel's clock is synchronized (`adjtimex`: no `STA_UNSYNC`, state not
    /// `TIME_ERROR`): some daemon on the controller keeps it to a reference.
    pub(crate) synchronized: bool,
    /// The kernel's maximum error estimate (`maxerror`), when it could be read.
    pub(crate) max_error_seconds: Option<f64>,
}

impl ControllerClock {
    /// Read the controller's clock state locally: `adjtimex` with no mode bits only reads,
    /// needs no privilege and works whichever daemon (or none) runs here.
    #[must_use]
    pub(crate) fn read() -> ControllerClock {
        // SAFETY: an all-zero `timex` is a valid value (plain integers); modes = 0 asks for a
        // read, and the kernel writes only into the struct we pass.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        // `adjtimex`, not `ntp_adjtime`: the same call with modes = 0, and the one musl (the static
        // binary) has too.
        let state = unsafe { libc::adjtimex(&raw mut tx) };
        if state < 0 {
            return ControllerClock {
                synchronized: false,
                max_error_seconds: None,
            };
        }
        #[allow(clippy::cast_precision_loss)] // microseconds, far below 2^52
        ControllerClock {
            synchronized: state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0,
            max_error_seconds: Some(tx.maxerror as f64 / 1e6),
        }
    }

    /// For the output: what was found and what follows from it.
    #[must_use]
    pub(crate) fn describe(&self) -> &'static str {
        if self.synchronized {
            "controller clock synchronized (adjtimex)"
        } else {
            "controller clock NOT synchronized (adjtimex): server offsets reported, not judged"
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum CheckStatus {
    Ok,
    /// Only warnings (an isolated server): counts as synchronized.
    Warning,
    Findings,
    /// The measurement cannot tell (too uncertain; the server not measured): not ok.
    Inconclusive,
    Unreachable,
    Failed,
}

impl CheckStatus {
    /// Ok, or only warnings: what `--wait-sync` waits for.
    #[must_use]
    pub(crate) fn is_settled(self) -> bool {
        matches!(self, CheckStatus::Ok | CheckStatus::Warning)
    }

    fn of(findings: &[Finding]) -> CheckStatus {
        match findings.iter().map(Finding::severity).max() {
            None => CheckStatus::Ok,
            Some(Severity::Warning) => CheckStatus::Warning,
            Some(Severity::Inconclusive) => CheckStatus::Inconclusive,
            Some(Severity::Problem) => CheckStatus::Findings,
        }
    }
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
    /// Host clock minus controller clock (positive: the host is ahead).
    pub(crate) offset_seconds: Option<f64>,
    pub(crate) uncertainty_seconds: Option<f64>,
    /// Host clock minus its NTP server's clock (both measured from the controller; positive:
    /// the host is ahead): the skew Ceph sees between monitors.
    pub(crate) offset_to_server_seconds: Option<f64>,
    /// The inventory server a client was judged against (its first server).
    pub(crate) judged_against: Option<String>,
    pub(crate) synchronized: Option<bool>,
    pub(crate) server: Option<String>,
    pub(crate) unit: Option<String>,
    pub(crate) unit_state: Option<String>,
    pub(crate) daemon: Option<DaemonView>,
    pub(crate) findings: Vec<Finding>,
    /// The uncertainty of this host's own offset from the controller (not the server's added):
    /// for comparisons between any two hosts (`check --ceph`).
    #[serde(skip)]
    pub(crate) offset_uncertainty_seconds: Option<f64>,
}

impl HostCheck {
    /// The verdict in words: "ok", the findings, or why the host could not be checked.
    #[must_use]
    pub(crate) fn verdict(&self) -> String {
        match self.status {
            CheckStatus::Ok => "ok".to_owned(),
            CheckStatus::Warning | CheckStatus::Inconclusive | CheckStatus::Findings => self
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

/// The hosts to measure for `shown`: those, plus the servers their clients follow (from `all`,
/// the whole inventory), so that `--limit CLIENT` still measures the client's server.
#[must_use]
pub(crate) fn measured_hosts(shown: &[Host], all: &[Host]) -> Vec<Host> {
    let mut hosts = shown.to_vec();
    for host in shown {
        if let Role::Client { servers, .. } = &host.role {
            for server in all.iter().filter(|h| {
                h.is_server()
                    && servers
                        .iter()
                        .any(|a| a.to_string() == h.address.to_string())
            }) {
                if !hosts.iter().any(|h| h.name == server.name) {
                    hosts.push(server.clone());
                }
            }
        }
    }
    hosts
}

/// Read every host's clock and daemon state, `options.forks` at a time.
pub(crate) async fn read_clocks(
    connector: Arc<Connector>,
    hosts: &[Host],
    options: &RunOptions,
    progress: Progress,
    samples: usize,
) -> Vec<Outcome<ClockReading>> {
    let release_done = options.release_done;
    let keep_open = options.keep_open.clone();
    fleet::for_each(
        hosts.to_vec(),
        options.forks,
        progress,
        move |host, status| {
            let connector = connector.clone();
            let release = release_done && keep_open.as_deref() != Some(host.name.as_str());
            async move {
                status.set("connecting");
                let session = connector.session(host.name.as_str()).await?;
                // The system says which daemon a client left to its OS's default runs, and what
                // chrony's unit is called there: the script reports os-release and every daemon
                // the host may run, the host decides which is its own.
                status.set("reading the daemon's state and the clock");
                let what = "reading the time daemon's state";
                let HostReading {
                    offset,
                    daemon,
                    unit,
                    unit_state,
                    view,
                } = read_host(
                    &session,
                    host.chosen_daemon(),
                    |os| host.daemon(&os.id, &os.version_id),
                    samples,
                )
                .await
                .map_err(|e| match e {
                    ReadError::StateSsh(e) => HostError::from(e).context(what),
                    ReadError::State(e) => {
                        HostError::new(ErrorKind::UnexpectedOutput, e.to_string()).context(what)
                    }
                    ReadError::ClockSsh(e) => HostError::from(e).context("reading the clock"),
                    ReadError::Clock(e) => {
                        HostError::new(ErrorKind::UnexpectedOutput, e.to_string())
                            .context("reading the clock")
                    }
                })?;
                clock::check_view(daemon.package(), &view)
                    .map_err(|e| HostError::new(ErrorKind::UnexpectedOutput, e.to_string()))?;
                if release {
                    connector.release(host.name.as_str()).await;
                }
                Ok(ClockReading {
                    offset,
                    unit: unit.to_owned(),
                    unit_state,
                    view,
                })
            }
        },
    )
    .await
}

/// Judge every host: clients against their server's clock and address, servers as what they
/// are. `readings` are `hosts`' in order.
#[must_use]
pub(crate) fn judge_fleet(
    hosts: &[Host],
    readings: &[Outcome<ClockReading>],
    limits: &Limits,
) -> Vec<HostCheck> {
    let server_at = |address: &str| {
        hosts
            .iter()
            .zip(readings)
            .find(|(h, _)| h.is_server() && h.address.to_string() == address)
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
                judged_against: None,
                synchronized: None,
                server: None,
                unit: None,
                unit_state: None,
                daemon: None,
                findings: Vec::new(),
                offset_uncertainty_seconds: None,
            };
            if let Role::Client { servers, .. } = &host.role {
                check.judged_against = servers
                    .first()
                    .and_then(|a| server_at(&a.to_string()))
                    .map(|(server, _)| server.name.to_string());
            }
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
            let (expected, reference) = match &host.role {
                Role::Server(_) => (Vec::new(), Reference::Controller),
                Role::Client { servers, .. } => {
                    let expected: Vec<String> = servers.iter().map(ToString::to_string).collect();
                    // Judged against its first server (the one it prefers).
                    let reference = match expected.first().and_then(|a| server_at(a)) {
                        Some((_, Outcome::Done(at))) => Reference::Server {
                            offset: to_nanoseconds(reading.offset.offset - at.offset.offset),
                            uncertainty: reading.offset.uncertainty + at.offset.uncertainty,
                        },
                        Some((server, _)) => Reference::Unmeasured(server.name.to_string()),
                        None => Reference::Unmeasured(expected.join(" or ")),
                    };
                    (expected, reference)
                }
            };
            check.findings = clock::judge(reading, &reference, &expected, limits);
            // A client with NTS: each source must authenticate (a wrong CA, NTS-KE blocked).
            if host.nts.is_on() && !host.is_server() && reading.unit_state == "active" {
                check.findings.extend(clock::nts_findings(&reading.view));
            }
            check.status = CheckStatus::of(&check.findings);
            check.offset_seconds = Some(reading.offset.offset);
            check.offset_uncertainty_seconds = Some(reading.offset.uncertainty);
            check.uncertainty_seconds = Some(match reference {
                Reference::Server { uncertainty, .. } => uncertainty,
                _ => reading.offset.uncertainty,
            });
            if let Reference::Server { offset, .. } = reference {
                check.offset_to_server_seconds = Some(offset);
            }
            check.synchronized = Some(reading.view.synchronized);
            check.server.clone_from(&reading.view.server);
            check.unit = Some(reading.unit.clone());
            check.unit_state = Some(reading.unit_state.clone());
            check.daemon = Some(reading.view.clone());
            check
        })
        .collect()
}

/// A difference of two readings, without the float noise of the subtraction (a nanosecond is
/// far below what a measurement over SSH can tell).
fn to_nanoseconds(seconds: f64) -> f64 {
    (seconds * 1e9).round() / 1e9
}

/// Measure `shown` (and the servers they follow, from `all`) and judge them.
pub(crate) async fn check_fleet(
    connector: Arc<Connector>,
    shown: &[Host],
    all: &[Host],
    options: &RunOptions,
    progress: Progress,
    samples: usize,
    limits: &Limits,
) -> Vec<HostCheck> {
    let measured = measured_hosts(shown, all);
    let readings = read_clocks(connector, &measured, options, progress, samples).await;
    let mut checks = judge_fleet(&measured, &readings, limits);
    checks.truncate(shown.len());
    checks
}

/// Ask Ceph on `monitor` (an inventory host) for its view of the monitors' clocks, and put it
/// beside `checks` (clockprov's measurements). Read-only; runs the `ceph` queries as root
/// (through the host's `become`, like every privileged script).
///
/// # Errors
/// The host cannot be reached, sudo refuses, `ceph` is missing or fails, or its output is not
/// what Ceph prints: the message says which.
pub(crate) async fn ceph_view(
    connector: &Connector,
    monitor: &str,
    checks: &[HostCheck],
) -> Result<ceph::CephReport, HostError> {
    let session = connector.session(monitor).await?;
    let root = Privileged {
        session: &session,
        privilege: connector.privilege(monitor),
    };
    let out = root
        .run_script(&host::ceph::script())
        .await
        .map_err(|e| match e {
            BecomeError::Ssh(e) => HostError::from(e).context("asking Ceph"),
            e => HostError::from(e),
        })?;
    let unexpected = |e: &dyn std::fmt::Display| {
        HostError::new(
            ErrorKind::UnexpectedOutput,
            format!("asking Ceph on {monitor}: {e}"),
        )
    };
    let output = host::ceph::parse(&out.stdout).map_err(|e| unexpected(&e))?;
    let skews =
        ceph::parse_time_sync_status(&output.time_sync_status).map_err(|e| unexpected(&e))?;
    let health = ceph::parse_health_detail(&output.health_detail).map_err(|e| unexpected(&e))?;
    let quorum = ceph::parse_quorum_status(&output.quorum_status).map_err(|e| unexpected(&e))?;
    Ok(ceph::compare(
        monitor,
        &skews,
        &health,
        &quorum,
        &measured(checks),
    ))
}

/// What check measured of each host, for [`ceph::compare`].
#[must_use]
pub(crate) fn measured(checks: &[HostCheck]) -> Vec<ceph::Measured<'_>> {
    checks
        .iter()
        .map(|c| ceph::Measured {
            name: &c.name,
            address: &c.address,
            offset: c.offset_seconds,
            uncertainty: c.offset_uncertainty_seconds,
        })
        .collect()
}

/// Now, as Unix seconds (the controller's clock).
#[must_use]
pub(crate) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Poll until every host is settled (ok, or only warnings such as an isolated server) or
/// `within` runs out; `report` is called after each round. Returns the last judgement.
pub(crate) async fn wait_for_sync(
    connector: Arc<Connector>,
    hosts: &[Host],
    all: &[Host],
    options: &RunOptions,
    limits: &Limits,
    within: Duration,
    mut report: impl FnMut(&[HostCheck], Duration),
) -> Vec<HostCheck> {
    let start = tokio::time::Instant::now();
    loop {
        let checks = check_fleet(
            connector.clone(),
            hosts,
            all,
            options,
            Progress::hidden(),
            DEFAULT_SAMPLES,
            limits,
        )
        .await;
        let elapsed = start.elapsed();
        report(&checks, elapsed);
        if checks.iter().all(|c| c.status.is_settled()) || elapsed >= within {
            return checks;
        }
        tokio::time::sleep(Duration::from_secs(2).min(within.saturating_sub(elapsed))).await;
    }
}
