//! Clocks: measuring a host's offset from the controller, reading the daemons' own view of
//! their synchronization, and judging the result as Ceph would. Pure functions only.

use std::collections::BTreeMap;

use serde::Serialize;

/// One reading of a remote clock, bracketed by the controller's clock (Unix seconds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClockSample {
    pub before: f64,
    pub remote: f64,
    pub after: f64,
}

/// A host's clock offset from the controller: `remote - midpoint`, with half the round trip as
/// its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Offset {
    pub offset: f64,
    pub uncertainty: f64,
}

/// One line of the remote clock reader: Unix seconds. `NaN`, `inf` (which Rust's float parser
/// accepts) and anything else that is not a finite number is an error for the host, never a
/// reading.
///
/// # Errors
/// The line is not a finite number.
pub fn parse_clock_line(line: &str) -> Result<f64, ReadingError> {
    let text = line.trim();
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(ReadingError::NotATime(text.chars().take(40).collect())),
    }
}

/// The time in the clock reader's reply to request `request` (`REQUEST TIME`).
///
/// # Errors
/// The reply carries another request's number, or none.
pub fn reply_to(request: usize, line: &str) -> Result<&str, ReadingError> {
    match line.trim().split_once(' ') {
        Some((number, time)) if number == request.to_string() => Ok(time),
        _ => Err(ReadingError::Unmatched {
            request,
            reply: line.trim().chars().take(40).collect(),
        }),
    }
}

/// A host's clock or daemon said something that is not a reading.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReadingError {
    #[error("the host's clock reader answered {0:?}, not a time")]
    NotATime(String),
    #[error("the clock reader answered nothing")]
    NoReading,
    #[error("the host's clock reader answered {reply:?} to request {request}: not its reply")]
    Unmatched { request: usize, reply: String },
    #[error("{daemon} reports a {what} of {value}, not a finite number")]
    NotFinite {
        daemon: &'static str,
        what: &'static str,
        value: String,
    },
}

/// A daemon view whose numbers are not finite (`nan`, `inf` parse as floats) is an error for
/// its host: such a host is neither ok nor skewed.
///
/// # Errors
/// The daemon's offset is not finite.
pub fn check_view(daemon: &'static str, view: &DaemonView) -> Result<(), ReadingError> {
    match view.offset_seconds {
        Some(v) if !v.is_finite() => Err(ReadingError::NotFinite {
            daemon,
            what: "clock offset",
            value: v.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The offset from the sample with the smallest round trip (the least uncertain one).
#[must_use]
pub fn best_offset(samples: &[ClockSample]) -> Option<Offset> {
    samples
        .iter()
        .filter(|s| s.after >= s.before && s.remote.is_finite())
        .min_by(|a, b| (a.after - a.before).total_cmp(&(b.after - b.before)))
        .map(|s| Offset {
            offset: s.remote - s.before.midpoint(s.after),
            uncertainty: (s.after - s.before) / 2.0,
        })
}

/// What a time daemon says about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DaemonView {
    /// The daemon considers the clock synchronized.
    pub synchronized: bool,
    /// The server it follows (timesyncd's ServerName/ServerAddress, chrony's reference).
    pub server: Option<String>,
    /// The daemon's own estimate of the clock's offset from its reference, seconds, in
    /// clockprov's one sign convention: positive = this host's clock is ahead (chrony's "fast";
    /// timesyncd's `Offset` is the reverse, reference minus host, and is negated).
    pub offset_seconds: Option<f64>,
    pub stratum: Option<u32>,
    /// One vocabulary for both daemons: [`leap_word`].
    pub leap_status: Option<String>,
    /// chrony's sources and whether each authenticates (`chronyc -N authdata`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub authentication: Vec<SourceAuth>,
}

/// One chrony source's authentication, from `chronyc -c -N authdata`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SourceAuth {
    /// The source as configured (`-N`): the inventory's address.
    pub source: String,
    /// `NTS`, `SK` (a symmetric key) or `-` (none): what is configured, not what works.
    pub mode: String,
    /// Packets from it are authenticated: a key is in use (for NTS: NTS-KE succeeded).
    pub authenticated: bool,
    pub key_id: u32,
    /// NTS-KE attempts since the last success.
    pub nts_ke_attempts: u32,
    /// NTS cookies held.
    pub cookies: u32,
}

impl SourceAuth {
    /// Why NTS does not authenticate this source, in words.
    #[must_use]
    pub fn nts_failure(&self) -> Option<String> {
        if self.mode != "NTS" {
            return Some(format!("{} is not an NTS source", self.source));
        }
        if self.authenticated {
            return None;
        }
        Some(format!(
            "{} not authenticated by NTS (no key: NTS-KE failed, {} attempt{}, {} cookies)",
            self.source,
            self.nts_ke_attempts,
            if self.nts_ke_attempts == 1 { "" } else { "s" },
            self.cookies
        ))
    }
}

/// Parse `chronyc -c -N authdata`: one CSV line per source, `NAME,MODE,KEYID,TYPE,KLEN,LAST,
/// ATMP,NAK,COOK,CLEN`. Lines that are not that (chrony before 4.0 does not know `authdata`,
/// an error message) are skipped; a source authenticates when it has a key (`KEYID` and `KLEN`
/// not 0; for NTS, cookies too).
#[must_use]
pub fn parse_authdata(text: &str) -> Vec<SourceAuth> {
    let mut sources = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(',').collect();
        let [
            name,
            mode,
            key_id,
            _,
            key_length,
            _,
            attempts,
            _,
            cookies,
            _,
        ] = fields[..]
        else {
            continue;
        };
        let number = |text: &str| text.trim().parse::<u32>().ok();
        let (Some(key_id), Some(key_length), Some(attempts), Some(cookies)) = (
            number(key_id),
            number(key_length),
            number(attempts),
            number(cookies),
        ) else {
            continue;
        };
        let mode = mode.trim();
        if name.is_empty() || !matches!(mode, "NTS" | "SK" | "-") {
            continue;
        }
        sources.push(SourceAuth {
            source: name.trim().to_owned(),
            mode: mode.to_owned(),
            authenticated: mode != "-"
                && key_id != 0
                && key_length != 0
                && (mode != "NTS" || cookies != 0),
            key_id,
            nts_ke_attempts: attempts,
            cookies,
        });
    }
    sources
}

/// A host configured with NTS: every source it has must authenticate, and it must have some.
#[must_use]
pub fn nts_findings(view: &DaemonView) -> Vec<Finding> {
    let failures: Vec<String> = view
        .authentication
        .iter()
        .filter_map(SourceAuth::nts_failure)
        .collect();
    if view.authentication.is_empty() {
        return vec![Finding::NtsNotAuthenticated {
            sources: vec!["chronyc -N authdata listed no source".to_owned()],
        }];
    }
    if failures.is_empty() {
        Vec::new()
    } else {
        vec![Finding::NtsNotAuthenticated { sources: failures }]
    }
}

/// The leap indicator in one vocabulary for both daemons: `normal`, `insert-second`,
/// `delete-second`, `not-synchronized` (chrony's `Leap status` words, timesyncd's NTP `Leap`
/// number 0-3). Anything else is kept as the daemon wrote it.
#[must_use]
pub fn leap_word(text: &str) -> String {
    match text.trim() {
        "0" | "Normal" | "normal" => "normal",
        "1" | "Insert second" => "insert-second",
        "2" | "Delete second" => "delete-second",
        "3" | "Not synchronised" | "Not synchronized" => "not-synchronized",
        other => other,
    }
    .to_owned()
}

/// `KEY=VALUE` lines (systemd's `show` output) into a map.
#[must_use]
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// timesyncd's view from `timedatectl show-timesync --all`, `timedatectl show` and
/// `timedatectl timesync-status` (the only one that prints the last measured offset).
#[must_use]
pub fn timesyncd_view(show_timesync: &str, show: &str, timesync_status: &str) -> DaemonView {
    let timesync = parse_properties(show_timesync);
    let system = parse_properties(show);
    let non_empty = |key: &str| timesync.get(key).filter(|v| !v.is_empty()).cloned();
    // ServerName is set while timesyncd is still trying a name; only an address means a server
    // answered. Report the name as configured (what the inventory wrote in NTP=).
    let server = non_empty("ServerAddress")
        .and(non_empty("ServerName").or_else(|| non_empty("ServerAddress")));
    let message = timesync
        .get("NTPMessage")
        .map(|m| parse_ntp_message(m))
        .unwrap_or_default();
    let status: BTreeMap<String, String> = timesync_status
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    DaemonView {
        synchronized: system.get("NTPSynchronized").is_some_and(|v| v == "yes"),
        server,
        // timesyncd's offset is the NTP one, reference minus host: negated to ours.
        offset_seconds: status
            .get("Offset")
            .and_then(|v| parse_timespan(v))
            .map(|v| -v),
        stratum: message.get("Stratum").and_then(|s| s.parse().ok()),
        leap_status: message.get("Leap").map(|l| leap_word(l)),
        authentication: Vec::new(),
    }
}

/// `{ Leap=0, Version=4, ..., OriginateTimestamp=Wed 2026-11-25 14:00:00 UTC, ... }` into a map.
fn parse_ntp_message(text: &str) -> BTreeMap<String, String> {
    let inner = text.trim().trim_start_matches('{').trim_end_matches('}');
    inner
        .split(", ")
        .filter_map(|field| field.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// A systemd time span as timedatectl prints offsets: `-1.987251s`, `+12.949ms`, `850us`, `0`.
#[must_use]
pub fn parse_timespan(text: &str) -> Option<f64> {
    let text = text.trim();
    let split = text
        .find(|c: char| c.is_ascii_alphabetic() || c == '\u{b5}')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.trim_start_matches('+').parse().ok()?;
    let scale = match unit {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "\u{b5}s" => 1e-6,
        "ns" => 1e-9,
        "min" => 60.0,
        _ => return None,
    };
    Some(value * scale)
}

/// chrony's view from `chronyc -n tracking`.
#[must_use]
pub fn chrony_view(tracking: &str) -> DaemonView {
    let mut fields = BTreeMap::new();
    for line in tracking.lines() {
        if let Some((key, value)) = line.split_once(':') {
            fields.insert(key.trim().to_owned(), value.trim().to_owned());
        }
    }
    let leap = fields.get("Leap status").cloned();
    let reference = fields.get("Reference ID").cloned();
    let reference_id = reference
        .as_deref()
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or("");
    // "0.000012345 seconds fast of NTP time" / "slow of NTP time".
    let offset = fields.get("System time").and_then(|v| {
        let mut words = v.split_whitespace();
        let amount: f64 = words.next()?.parse().ok()?;
        let _seconds = words.next()?;
        match words.next()? {
            "fast" => Some(amount),
            "slow" => Some(-amount),
            _ => None,
        }
    });
    let server = reference.as_deref().map(|r| {
        // "C0A806C8 (192.168.6.200)" -> the name in brackets; "7F7F0101 ()" is the local clock.
        let name = r
            .split_once('(')
            .map_or("", |(_, rest)| rest.trim_end_matches(')'));
        if reference_id == "7F7F0101"
            || (name.is_empty() && reference_id.eq_ignore_ascii_case("4c4f434c"))
        {
            "local".to_owned()
        } else if name.is_empty() {
            reference_id.to_owned()
        } else {
            name.to_owned()
        }
    });
    DaemonView {
        synchronized: leap.as_deref().is_some_and(|l| l != "Not synchronised")
            && reference_id != "00000000",
        server: server.filter(|_| reference_id != "00000000"),
        offset_seconds: offset,
        stratum: fields.get("Stratum").and_then(|s| s.parse().ok()),
        leap_status: leap.as_deref().map(leap_word),
        authentication: Vec::new(),
    }
}

/// What check found about one host. [`Finding::severity`] decides the host's status.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
    /// A client further from its server than `--max-skew`.
    Skew {
        offset_seconds: f64,
        max_seconds: f64,
    },
    NotSynchronized,
    WrongServer {
        server: Option<String>,
        expected: Vec<String>,
    },
    DaemonNotRunning {
        unit: String,
        state: String,
    },
    /// A server synchronized to an upstream, further from the controller (whose own clock is
    /// synchronized) than `--max-server-offset`.
    ServerOffset {
        offset_seconds: f64,
        max_seconds: f64,
    },
    /// A client's server could not be measured (unreachable, failed): its skew is unknown.
    ServerNotMeasured {
        server: String,
    },
    /// The measurement is too uncertain to say whether the host is within its limit.
    Inconclusive {
        uncertainty_seconds: f64,
        max_seconds: f64,
    },
    /// A server serving its own clock (`local stratum`, no upstream reached): its clients are
    /// judged against it as usual.
    Isolated {
        stratum: Option<u32>,
    },
    /// A client configured with NTS has a source that does not authenticate (each said why).
    NtsNotAuthenticated {
        sources: Vec<String>,
    },
}

/// How much a finding weighs: the worst one decides the host's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Shown, but the host counts as synchronized (`--wait-sync` finishes).
    Warning,
    /// Neither ok nor a problem: the measurement cannot tell.
    Inconclusive,
    /// The host is not as it should be.
    Problem,
}

impl Finding {
    #[must_use]
    pub fn severity(&self) -> Severity {
        match self {
            Finding::Isolated { .. } => Severity::Warning,
            Finding::ServerNotMeasured { .. } | Finding::Inconclusive { .. } => {
                Severity::Inconclusive
            }
            Finding::Skew { .. }
            | Finding::NotSynchronized
            | Finding::WrongServer { .. }
            | Finding::DaemonNotRunning { .. }
            | Finding::ServerOffset { .. }
            | Finding::NtsNotAuthenticated { .. } => Severity::Problem,
        }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Skew {
                offset_seconds,
                max_seconds,
            } => {
                write!(f, "skew {offset_seconds:+.3} s exceeds {max_seconds} s")
            }
            Finding::NotSynchronized => f.write_str("not synchronized"),
            Finding::WrongServer { server, expected } => write!(
                f,
                "synchronized to {} instead of {}",
                server.as_deref().unwrap_or("nothing"),
                expected.join(" or ")
            ),
            Finding::DaemonNotRunning { unit, state } => write!(f, "{unit} is {state}"),
            Finding::ServerOffset {
                offset_seconds,
                max_seconds,
            } => write!(
                f,
                "offset from the controller {offset_seconds:+.3} s exceeds --max-server-offset {max_seconds} s"
            ),
            Finding::ServerNotMeasured { server } => {
                write!(f, "inconclusive: server {server} not measured")
            }
            Finding::Inconclusive {
                uncertainty_seconds,
                max_seconds,
            } => write!(
                f,
                "inconclusive: uncertainty {uncertainty_seconds:.3} s exceeds {max_seconds} s"
            ),
            Finding::Isolated { stratum } => {
                f.write_str("isolated: serves its own clock")?;
                if let Some(stratum) = stratum {
                    write!(f, " (local stratum {stratum})")?;
                }
                f.write_str(", no upstream reached")
            }
            Finding::NtsNotAuthenticated { sources } => {
                write!(f, "NTS: {}", sources.join(", "))
            }
        }
    }
}

/// What clockprov knows about one host's clock, before judging.
#[derive(Debug, Clone, PartialEq)]
pub struct ClockReading {
    pub offset: Offset,
    pub unit: String,
    pub unit_state: String,
    pub view: DaemonView,
}

/// The limits a fleet is judged against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// A client's largest offset from its server (`--max-skew`).
    pub max_skew: f64,
    /// A server's largest offset from the controller (`--max-server-offset`), judged only when
    /// the controller's own clock is synchronized.
    pub max_server_offset: f64,
    /// The controller's clock is synchronized (read locally).
    pub controller_synchronized: bool,
}

/// What a host's offset is judged against.
#[derive(Debug, Clone, PartialEq)]
pub enum Reference {
    /// A server: its offset from the controller.
    Controller,
    /// A client whose server was measured: its offset from it, and the uncertainty of the two
    /// measurements together.
    Server { offset: f64, uncertainty: f64 },
    /// A client whose server (named) was not measured.
    Unmeasured(String),
}

/// A host whose daemon calls its reference "local" serves its own clock.
#[must_use]
pub fn is_isolated(view: &DaemonView) -> bool {
    view.synchronized && view.server.as_deref() == Some("local")
}

/// Judge one host: a client against its server (`expected_servers`: the addresses it should
/// follow), a server on its own (Ceph's criterion is the skew between monitors, which are
/// clients; a server's offset matters only as far as it reaches them).
#[must_use]
pub fn judge(
    reading: &ClockReading,
    reference: &Reference,
    expected_servers: &[String],
    limits: &Limits,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let running = reading.unit_state == "active";
    if !running {
        findings.push(Finding::DaemonNotRunning {
            unit: reading.unit.clone(),
            state: reading.unit_state.clone(),
        });
    } else if !reading.view.synchronized {
        findings.push(Finding::NotSynchronized);
    } else if !expected_servers.is_empty()
        && !reading
            .view
            .server
            .as_ref()
            .is_some_and(|s| expected_servers.iter().any(|e| e == s))
    {
        findings.push(Finding::WrongServer {
            server: reading.view.server.clone(),
            expected: expected_servers.to_vec(),
        });
    }
    match reference {
        Reference::Server {
            offset,
            uncertainty,
        } => findings.extend(offset_finding(
            *offset,
            *uncertainty,
            limits.max_skew,
            |offset_seconds, max_seconds| Finding::Skew {
                offset_seconds,
                max_seconds,
            },
        )),
        Reference::Unmeasured(server) => findings.push(Finding::ServerNotMeasured {
            server: server.clone(),
        }),
        Reference::Controller if running && is_isolated(&reading.view) => {
            // Its own clock is its clients' truth: how far it is from ours says nothing.
            findings.push(Finding::Isolated {
                stratum: reading.view.stratum,
            });
        }
        Reference::Controller if limits.controller_synchronized => {
            findings.extend(offset_finding(
                reading.offset.offset,
                reading.offset.uncertainty,
                limits.max_server_offset,
                |offset_seconds, max_seconds| Finding::ServerOffset {
                    offset_seconds,
                    max_seconds,
                },
            ));
        }
        // The controller's clock is no reference: the offset is reported, not judged.
        Reference::Controller => {}
    }
    findings
}

/// An offset beyond `max` even allowing for the uncertainty is a problem; one that the
/// uncertainty makes impossible to place on either side of `max` is inconclusive.
fn offset_finding(
    offset: f64,
    uncertainty: f64,
    max: f64,
    problem: impl Fn(f64, f64) -> Finding,
) -> Option<Finding> {
    if offset.abs() - uncertainty > max || (offset.abs() > max && uncertainty <= max) {
        Some(problem(offset, max))
    } else if uncertainty > max {
        Some(Finding::Inconclusive {
            uncertainty_seconds: uncertainty,
            max_seconds: max,
        })
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_is_taken_only_for_its_own_request() {
        assert_eq!(
            reply_to(3, "3 1765000000.123456\n"),
            Ok("1765000000.123456")
        );
        assert!(matches!(
            reply_to(3, "2 1765000000.123456"),
            Err(ReadingError::Unmatched { request: 3, .. })
        ));
        assert!(reply_to(0, "1765000000.123456").is_err());
        assert!(reply_to(0, "").is_err());
    }

    #[test]
    fn the_tightest_sample_wins() {
        let samples = [
            ClockSample {
                before: 100.0,
                remote: 102.5,
                after: 101.0,
            },
            ClockSample {
                before: 200.0,
                remote: 202.01,
                after: 200.02,
            },
            ClockSample {
                before: 300.0,
                remote: 301.0,
                after: 299.0,
            },
        ];
        let best = best_offset(&samples).unwrap();
        assert!((best.offset - 2.0).abs() < 1e-9, "{best:?}");
        assert!((best.uncertainty - 0.01).abs() < 1e-9);
        assert_eq!(best_offset(&[]), None);
    }

    fn fixture(name: &str) -> String {
        std::fs::read_to_string(format!(
            "{}/tests/fixtures/daemon/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn timesyncd_views_from_the_lab() {
        let synced = timesyncd_view(
            &fixture("timesyncd-show-timesync.synced.txt"),
            &fixture("timedatectl-show.synced.txt"),
            &fixture("timesyncd-timesync-status.synced.txt"),
        );
        assert!(synced.synchronized);
        assert_eq!(synced.server.as_deref(), Some("192.168.6.200"));
        assert_eq!(synced.stratum, Some(10));
        assert!((synced.offset_seconds.unwrap() - 1.998_265).abs() < 1e-9);
        let unsynced = timesyncd_view(
            &fixture("timesyncd-show-timesync.unsynced.txt"),
            &fixture("timedatectl-show.unsynced.txt"),
            &fixture("timesyncd-timesync-status.unsynced.txt"),
        );
        assert!(!unsynced.synchronized);
        assert_eq!(
            unsynced.server, None,
            "a name still being tried is not a server"
        );
        assert_eq!(unsynced.offset_seconds, None);
    }

    #[test]
    fn chrony_views_from_the_lab() {
        let serving = chrony_view(&fixture("chrony-tracking.txt"));
        assert!(serving.synchronized);
        assert_eq!(serving.server.as_deref(), Some("local"));
        assert_eq!(serving.stratum, Some(10));
        let stock = chrony_view(&fixture("chrony-tracking.unconfigured.txt"));
        assert!(!stock.synchronized);
        assert_eq!(stock.server, None);
        assert_eq!(stock.leap_status.as_deref(), Some("not-synchronized"));
    }

    #[test]
    fn timespans() {
        assert_eq!(parse_timespan("-1.5s"), Some(-1.5));
        assert_eq!(parse_timespan("+12ms"), Some(0.012));
        assert_eq!(parse_timespan("0"), Some(0.0));
        assert!((parse_timespan("850us").unwrap() - 0.000_85).abs() < 1e-12);
        assert_eq!(parse_timespan("soon"), None);
    }

    #[test]
    fn chrony_tracking_local_and_unsynchronized() {
        let local = "Reference ID    : 7F7F0101 ()\nStratum         : 10\nSystem time     : 0.000001000 seconds slow of NTP time\nLeap status     : Normal\n";
        let view = chrony_view(local);
        assert!(view.synchronized);
        assert_eq!(view.server.as_deref(), Some("local"));
        assert_eq!(view.stratum, Some(10));
        assert!((view.offset_seconds.unwrap() + 1e-6).abs() < 1e-12);
        let none = "Reference ID    : 00000000 ()\nStratum         : 0\nSystem time     : 0.000000000 seconds fast of NTP time\nLeap status     : Not synchronised\n";
        let view = chrony_view(none);
        assert!(!view.synchronized);
        assert_eq!(view.server, None);
        let upstream = "Reference ID    : C0A806C8 (192.168.6.200)\nStratum         : 11\nSystem time     : 0.000200000 seconds fast of NTP time\nLeap status     : Normal\n";
        assert_eq!(
            chrony_view(upstream).server.as_deref(),
            Some("192.168.6.200")
        );
    }

    const LIMITS: Limits = Limits {
        max_skew: 0.05,
        max_server_offset: 0.1,
        controller_synchronized: true,
    };

    fn to_server(offset: f64) -> Reference {
        Reference::Server {
            offset,
            uncertainty: 0.002,
        }
    }

    #[test]
    fn judging() {
        let reading = ClockReading {
            offset: Offset {
                offset: 0.0,
                uncertainty: 0.001,
            },
            unit: "systemd-timesyncd.service".into(),
            unit_state: "active".into(),
            view: DaemonView {
                synchronized: true,
                server: Some("192.168.6.200".into()),
                ..DaemonView::default()
            },
        };
        let expected = vec!["192.168.6.200".to_owned()];
        assert!(judge(&reading, &to_server(0.01), &expected, &LIMITS).is_empty());
        assert_eq!(
            judge(&reading, &to_server(-0.2), &expected, &LIMITS),
            vec![Finding::Skew {
                offset_seconds: -0.2,
                max_seconds: 0.05
            }]
        );
        let other = vec!["10.0.0.1".to_owned()];
        assert!(matches!(
            judge(&reading, &to_server(0.0), &other, &LIMITS)[0],
            Finding::WrongServer { .. }
        ));
        let stopped = ClockReading {
            unit_state: "inactive".into(),
            ..reading.clone()
        };
        assert_eq!(
            judge(&stopped, &to_server(0.0), &expected, &LIMITS),
            vec![Finding::DaemonNotRunning {
                unit: "systemd-timesyncd.service".into(),
                state: "inactive".into()
            }]
        );
        // Never ok by omission: a client whose server was not measured is inconclusive.
        let unmeasured = judge(
            &reading,
            &Reference::Unmeasured("zcloud".into()),
            &expected,
            &LIMITS,
        );
        assert_eq!(
            unmeasured,
            vec![Finding::ServerNotMeasured {
                server: "zcloud".into()
            }]
        );
        assert_eq!(unmeasured[0].severity(), Severity::Inconclusive);
    }

    #[test]
    fn uncertainty_beyond_the_limit_is_inconclusive() {
        let wide = Reference::Server {
            offset: 0.01,
            uncertainty: 0.08,
        };
        let reading = ClockReading {
            offset: Offset {
                offset: 0.0,
                uncertainty: 0.04,
            },
            unit: "chrony.service".into(),
            unit_state: "active".into(),
            view: DaemonView {
                synchronized: true,
                server: Some("a".into()),
                ..DaemonView::default()
            },
        };
        let found = judge(&reading, &wide, &["a".into()], &LIMITS);
        assert_eq!(
            found,
            vec![Finding::Inconclusive {
                uncertainty_seconds: 0.08,
                max_seconds: 0.05
            }]
        );
        // Beyond the limit even allowing for the uncertainty: a skew, not a doubt.
        let far = Reference::Server {
            offset: 0.5,
            uncertainty: 0.08,
        };
        assert!(matches!(
            judge(&reading, &far, &["a".into()], &LIMITS)[0],
            Finding::Skew { .. }
        ));
    }

    #[test]
    fn servers_are_judged_as_what_they_are() {
        let server = |reference: &str, offset: f64| ClockReading {
            offset: Offset {
                offset,
                uncertainty: 0.001,
            },
            unit: "chrony.service".into(),
            unit_state: "active".into(),
            view: DaemonView {
                synchronized: true,
                server: Some(reference.into()),
                stratum: Some(10),
                ..DaemonView::default()
            },
        };
        // Isolated, 0.7 s from the controller: a warning, not a skew.
        let isolated = judge(&server("local", 0.7), &Reference::Controller, &[], &LIMITS);
        assert_eq!(isolated, vec![Finding::Isolated { stratum: Some(10) }]);
        assert_eq!(isolated[0].severity(), Severity::Warning);
        // Synchronized to an upstream: judged against --max-server-offset.
        let upstream = server("203.0.113.1", 0.7);
        assert!(matches!(
            judge(&upstream, &Reference::Controller, &[], &LIMITS)[0],
            Finding::ServerOffset { .. }
        ));
        assert!(
            judge(
                &server("203.0.113.1", 0.06),
                &Reference::Controller,
                &[],
                &LIMITS
            )
            .is_empty()
        );
        // ...but only when the controller's own clock is synchronized.
        let unsynced = Limits {
            controller_synchronized: false,
            ..LIMITS
        };
        assert!(judge(&upstream, &Reference::Controller, &[], &unsynced).is_empty());
    }

    #[test]
    fn one_sign_and_one_leap_vocabulary() {
        // timesyncd: host 2 s ahead of its server prints `Offset: -1.998265s`.
        let timesyncd = timesyncd_view(
            &fixture("timesyncd-show-timesync.synced.txt"),
            &fixture("timedatectl-show.synced.txt"),
            &fixture("timesyncd-timesync-status.synced.txt"),
        );
        assert!(timesyncd.offset_seconds.unwrap() > 1.9);
        assert_eq!(timesyncd.leap_status.as_deref(), Some("normal"));
        let chrony = chrony_view(&fixture("chrony-tracking.txt"));
        assert_eq!(chrony.leap_status.as_deref(), Some("normal"));
        assert_eq!(leap_word("3"), leap_word("Not synchronised"));
    }

    #[test]
    fn clock_lines_that_are_not_times_are_errors() {
        assert_eq!(
            parse_clock_line("1764083718.123456\n"),
            Ok(1_764_083_718.123_456)
        );
        for bad in ["NaN", "nan", "inf", "-infinity", "", "soon"] {
            assert!(parse_clock_line(bad).is_err(), "{bad}");
        }
        let view = DaemonView {
            offset_seconds: Some(f64::NAN),
            ..DaemonView::default()
        };
        assert!(check_view("chrony", &view).is_err());
    }

    mod untrusted {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            /// Whatever a host prints, the parsers of clock readings and daemon views never
            /// panic, and a reading is a finite number or an error.
            #[test]
            fn host_text_never_panics(text in "\\PC{0,200}", bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let lossy = String::from_utf8_lossy(&bytes);
                for t in [text.as_str(), lossy.as_ref()] {
                    if let Ok(v) = parse_clock_line(t) {
                        prop_assert!(v.is_finite());
                    }
                    let _ = parse_timespan(t);
                    let chrony = chrony_view(t);
                    let timesyncd = timesyncd_view(t, t, t);
                    for view in [&chrony, &timesyncd] {
                        if view.offset_seconds.is_some_and(|v| !v.is_finite()) {
                            prop_assert!(check_view("x", view).is_err());
                        }
                    }
                }
            }

            #[test]
            fn offsets_are_finite_or_refused(offset in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(f64::NEG_INFINITY), -1e6f64..1e6]) {
                let line = format!("{offset}");
                prop_assert_eq!(parse_clock_line(&line).is_ok(), offset.is_finite());
                let tracking = format!("System time     : {offset} seconds fast of NTP time\n");
                let view = chrony_view(&tracking);
                prop_assert_eq!(check_view("chrony", &view).is_ok(), offset.is_finite());
            }
        }
    }
}

#[cfg(test)]
mod nts_tests {
    use super::*;

    /// What chrony 4.8 printed on the VM lab (tests/fixtures/nts/chronyc/README).
    const OK: &str = include_str!("../tests/fixtures/nts/chronyc/csv-ok.txt");
    const WRONG_CA: &str = include_str!("../tests/fixtures/nts/chronyc/csv-wrong-ca.txt");

    #[test]
    fn authdata_says_which_sources_authenticate() {
        let ok = parse_authdata(OK);
        assert_eq!(
            ok,
            [SourceAuth {
                source: "192.168.6.200".into(),
                mode: "NTS".into(),
                authenticated: true,
                key_id: 1,
                nts_ke_attempts: 0,
                cookies: 8,
            }]
        );
        let view = |authentication| DaemonView {
            authentication,
            ..DaemonView::default()
        };
        assert!(nts_findings(&view(ok)).is_empty());
        let wrong = parse_authdata(WRONG_CA);
        assert_eq!(wrong.len(), 1);
        assert!(!wrong[0].authenticated);
        let findings = nts_findings(&view(wrong));
        assert_eq!(findings.len(), 1);
        assert_eq!(findings[0].severity(), Severity::Problem);
        insta::assert_snapshot!(findings[0], @"NTS: 192.168.6.200 not authenticated by NTS (no key: NTS-KE failed, 1 attempt, 0 cookies)");
        // A plain source, and chrony 3.x's answer to an unknown command.
        let plain = parse_authdata("192.168.6.200,-,0,0,0,4294967295,0,0,0,0\n");
        insta::assert_snapshot!(nts_findings(&view(plain))[0], @"NTS: 192.168.6.200 is not an NTS source");
        let old = parse_authdata("Unrecognized command\n");
        assert!(old.is_empty());
        insta::assert_snapshot!(nts_findings(&view(old))[0], @"NTS: chronyc -N authdata listed no source");
    }
}
