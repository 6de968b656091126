//! Ceph's own view of its monitors' clocks (`check --ceph HOST`), beside clockprov's.
//!
//! Pure: the JSON of `ceph time-sync-status`, `ceph health detail` and `ceph quorum_status`
//! (read on a monitor host by `host::ceph`) in, typed values out; then each monitor's skew as
//! Ceph states it compared with clockprov's own measurement of the same two hosts.
//!
//! Ceph's skew for a monitor is that monitor's clock minus the quorum leader's (positive: the
//! monitor is ahead), from the leader's last time-check round, with the round trip of that
//! round's messages (`latency`) taken off its magnitude. clockprov's figure for the same monitor
//! is `offset(monitor) - offset(leader)`, both measured from the controller, with the sum of
//! both measurements' uncertainties. The two disagree when they differ by more than
//! [`agreement_bound`]: clockprov's uncertainty plus three times Ceph's latency. Ceph's figure
//! is `|delta| - latency` (its "skew bound", 0 when below the latency), where `delta` was taken
//! after part of a round trip, with a latency that is itself smoothed over rounds: it sits up to
//! about two round trips from the truth; the third covers one round's trip being slower than
//! the smoothed figure (measured on the Ceph lab under load: 0.20 s short, latency 0.09 s).
//!
//! Host output is untrusted: nothing here panics, whatever the input.

use serde::Serialize;
use serde_json::Value;

/// Why Ceph's output could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum CephError {
    #[error("`ceph {command}` did not print JSON: {why}")]
    NotJson { command: &'static str, why: String },
    #[error("`ceph {command}`: {why}")]
    Shape { command: &'static str, why: String },
}

/// One monitor in `ceph time-sync-status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct MonitorSkew {
    /// The monitor's name (without `mon.`).
    pub(crate) name: String,
    /// Its clock minus the leader's, as Ceph bounds it (seconds).
    pub(crate) skew_seconds: f64,
    /// The round trip of the leader's time-check messages to it (seconds).
    pub(crate) latency_seconds: f64,
    /// Ceph's verdict on this monitor's clock (`HEALTH_OK`, `HEALTH_WARN`).
    pub(crate) health: String,
    /// Ceph's reason when not ok ("clock skew 4.0012s > max 0.05s").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) details: Option<String>,
}

/// The `MON_CLOCK_SKEW` check of `ceph health detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ClockSkewCheck {
    /// `HEALTH_WARN` (or `HEALTH_ERR`).
    pub(crate) severity: String,
    /// "clock skew detected on mon.z-b-data-2".
    pub(crate) summary: String,
    /// One line per monitor: "mon.z-b-data-2 clock skew 4.0012s > max 0.05s (latency ...)".
    pub(crate) detail: Vec<String>,
}

/// `ceph health detail`: the cluster's status, and its clock-skew check if raised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Health {
    /// `HEALTH_OK`, `HEALTH_WARN` or `HEALTH_ERR`.
    pub(crate) status: String,
    pub(crate) clock_skew: Option<ClockSkewCheck>,
    /// The other checks raised (their codes), for context.
    pub(crate) other_checks: Vec<String>,
}

/// `ceph quorum_status`: who leads the time checks, and where each monitor is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Quorum {
    pub(crate) leader: String,
    /// Each monitor's name and address (IP only, from its public address).
    pub(crate) addresses: Vec<(String, String)>,
}

fn json(command: &'static str, text: &str) -> Result<Value, CephError> {
    serde_json::from_str(text.trim()).map_err(|e| CephError::NotJson {
        command,
        why: format!("{e}"),
    })
}

fn shape(command: &'static str, why: &str) -> CephError {
    CephError::Shape {
        command,
        why: why.to_owned(),
    }
}

/// A number field: a finite JSON number (Ceph prints them as numbers; a string holding one is
/// accepted too).
fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// Parse `ceph time-sync-status --format json`: every monitor the leader timed, by name.
///
/// # Errors
/// Not JSON, or no `time_skew_status` object, or a monitor without finite skew and latency.
pub(crate) fn parse_time_sync_status(text: &str) -> Result<Vec<MonitorSkew>, CephError> {
    const COMMAND: &str = "time-sync-status";
    let doc = json(COMMAND, text)?;
    let Some(status) = doc.get("time_skew_status").and_then(Value::as_object) else {
        return Err(shape(COMMAND, "no time_skew_status object"));
    };
    let mut monitors = Vec::with_capacity(status.len());
    for (name, mon) in status {
        let field = |key: &str| mon.get(key).and_then(number);
        let (Some(skew), Some(latency)) = (field("skew"), field("latency")) else {
            return Err(shape(
                COMMAND,
                &format!("monitor {name:?} has no numeric skew and latency"),
            ));
        };
        monitors.push(MonitorSkew {
            name: name.clone(),
            skew_seconds: skew,
            latency_seconds: latency,
            health: mon
                .get("health")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            details: mon
                .get("details")
                .and_then(Value::as_str)
                .map(str::to_owned),
        });
    }
    Ok(monitors)
}

/// Parse `ceph health detail --format json`.
///
/// # Errors
/// Not JSON, or no `status` string.
pub(crate) fn parse_health_detail(text: &str) -> Result<Health, CephError> {
    const COMMAND: &str = "health detail";
    let doc = json(COMMAND, text)?;
    let Some(status) = doc.get("status").and_then(Value::as_str) else {
        return Err(shape(COMMAND, "no status"));
    };
    let mut clock_skew = None;
    let mut other_checks = Vec::new();
    if let Some(checks) = doc.get("checks").and_then(Value::as_object) {
        for (code, check) in checks {
            if code != "MON_CLOCK_SKEW" {
                other_checks.push(code.clone());
                continue;
            }
            let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
            clock_skew = Some(ClockSkewCheck {
                severity: text(check.get("severity")),
                summary: text(check.get("summary").and_then(|s| s.get("message"))),
                detail: check
                    .get("detail")
                    .and_then(Value::as_array)
                    .map(|lines| {
                        lines
                            .iter()
                            .filter_map(|l| l.get("message").and_then(Value::as_str))
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            });
        }
    }
    Ok(Health {
        status: status.to_owned(),
        clock_skew,
        other_checks,
    })
}

/// The IP of a Ceph address: `v2:192.168.6.204:3300/0`, `192.168.6.204:6789/0`, `[::1]:6789/0`.
fn address_ip(addr: &str) -> Option<String> {
    let addr = addr
        .strip_prefix("v2:")
        .or_else(|| addr.strip_prefix("v1:"))
        .unwrap_or(addr);
    let addr = addr.split('/').next()?;
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().map(str::to_owned);
    }
    addr.rsplit_once(':').map(|(ip, _)| ip.to_owned())
}

/// Parse `ceph quorum_status --format json`.
///
/// # Errors
/// Not JSON, or no `quorum_leader_name`.
pub(crate) fn parse_quorum_status(text: &str) -> Result<Quorum, CephError> {
    const COMMAND: &str = "quorum_status";
    let doc = json(COMMAND, text)?;
    let Some(leader) = doc.get("quorum_leader_name").and_then(Value::as_str) else {
        return Err(shape(COMMAND, "no quorum_leader_name"));
    };
    let addresses = doc
        .get("monmap")
        .and_then(|m| m.get("mons"))
        .and_then(Value::as_array)
        .map(|mons| {
            mons.iter()
                .filter_map(|m| {
                    let name = m.get("name")?.as_str()?;
                    let addr = m.get("public_addr").or_else(|| m.get("addr"))?.as_str()?;
                    Some((name.to_owned(), address_ip(addr)?))
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Quorum {
        leader: leader.to_owned(),
        addresses,
    })
}

/// What clockprov measured of one host, for the comparison.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured<'a> {
    pub(crate) name: &'a str,
    pub(crate) address: &'a str,
    /// Host clock minus the controller's, when measured.
    pub(crate) offset: Option<f64>,
    pub(crate) uncertainty: Option<f64>,
}

/// The largest difference between Ceph's skew and clockprov's that is not a disagreement:
/// clockprov's uncertainty (both hosts') plus three times Ceph's latency for the monitor.
#[must_use]
pub(crate) fn agreement_bound(clockprov_uncertainty: f64, ceph_latency: f64) -> f64 {
    // Nanoseconds, as every figure here: no float noise in the output.
    ((clockprov_uncertainty + 3.0 * ceph_latency.abs()) * 1e9).round() / 1e9
}

/// One monitor: Ceph's skew beside clockprov's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct MonitorView {
    /// The monitor's name (without `mon.`).
    pub(crate) monitor: String,
    /// The inventory host it is (same name, else same address), if any.
    pub(crate) host: Option<String>,
    pub(crate) leader: bool,
    pub(crate) ceph_skew_seconds: f64,
    pub(crate) ceph_latency_seconds: f64,
    pub(crate) ceph_health: String,
    /// offset(monitor) - offset(leader), as clockprov measured them.
    pub(crate) clockprov_skew_seconds: Option<f64>,
    pub(crate) clockprov_uncertainty_seconds: Option<f64>,
    /// See [`agreement_bound`].
    pub(crate) bound_seconds: Option<f64>,
    /// `Some(false)`: the two differ by more than the bound.
    pub(crate) agree: Option<bool>,
}

/// Ceph's view of the cluster's clocks, as `check --ceph` reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct CephReport {
    /// The host the `ceph` commands ran on.
    pub(crate) queried: String,
    pub(crate) health: String,
    pub(crate) leader: String,
    /// `MON_CLOCK_SKEW`, when Ceph raises it.
    pub(crate) clock_skew: Option<ClockSkewCheck>,
    pub(crate) monitors: Vec<MonitorView>,
}

impl CephReport {
    /// Ceph warns of clock skew (its own verdict).
    #[must_use]
    pub(crate) fn warns(&self) -> bool {
        self.clock_skew.is_some()
    }

    /// Some monitor where Ceph and clockprov disagree beyond the bound.
    #[must_use]
    pub(crate) fn disagrees(&self) -> bool {
        self.monitors.iter().any(|m| m.agree == Some(false))
    }
}

/// What `check --ceph HOST` found: Ceph's report, or why it could not be had.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub(crate) enum CephView {
    Report(CephReport),
    Error {
        /// The host the `ceph` commands were to run on.
        queried: String,
        error: String,
    },
}

/// Put Ceph's skews beside clockprov's measurements (`measured`: the hosts check measured).
#[must_use]
pub(crate) fn compare(
    queried: &str,
    skews: &[MonitorSkew],
    health: &Health,
    quorum: &Quorum,
    measured: &[Measured<'_>],
) -> CephReport {
    let host_of = |mon: &str| {
        measured.iter().find(|m| m.name == mon).or_else(|| {
            let addr = quorum.addresses.iter().find(|(n, _)| n == mon)?;
            measured.iter().find(|m| m.address == addr.1)
        })
    };
    let leader = host_of(&quorum.leader);
    let monitors = skews
        .iter()
        .map(|s| {
            let host = host_of(&s.name);
            let clockprov = match (host, leader) {
                (Some(h), Some(l)) => match (h.offset, l.offset, h.uncertainty, l.uncertainty) {
                    (Some(ho), Some(lo), Some(hu), Some(lu)) => {
                        // Nanoseconds: far below what SSH can tell; no float noise shown.
                        Some((((ho - lo) * 1e9).round() / 1e9, hu + lu))
                    }
                    _ => None,
                },
                _ => None,
            };
            let bound = clockprov.map(|(_, u)| agreement_bound(u, s.latency_seconds));
            MonitorView {
                monitor: s.name.clone(),
                host: host.map(|h| h.name.to_owned()),
                leader: s.name == quorum.leader,
                ceph_skew_seconds: s.skew_seconds,
                ceph_latency_seconds: s.latency_seconds,
                ceph_health: s.health.clone(),
                clockprov_skew_seconds: clockprov.map(|(v, _)| v),
                clockprov_uncertainty_seconds: clockprov.map(|(_, u)| u),
                bound_seconds: bound,
                agree: clockprov
                    .zip(bound)
                    .map(|((v, _), b)| (v - s.skew_seconds).abs() <= b),
            }
        })
        .collect();
    CephReport {
        queried: queried.to_owned(),
        health: health.status.clone(),
        leader: quorum.leader.clone(),
        clock_skew: health.clock_skew.clone(),
        monitors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/ceph/{name}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// What Ceph 15.2 printed on the lab (tests/lab/lab.sh up --ceph), mon.z-b-data-2 4 s ahead.
    #[test]
    fn real_ceph_output() {
        let skews = parse_time_sync_status(&fixture("skewed-time-sync-status")).unwrap();
        let names: Vec<&str> = skews.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["z-b-data-1", "z-b-data-2", "z-b-data-3"]);
        assert!((skews[1].skew_seconds - 3.940_360_858).abs() < 1e-6);
        assert!((skews[1].latency_seconds - 0.080_836_476).abs() < 1e-6);
        assert_eq!(skews[1].health, "HEALTH_WARN");
        assert_eq!(
            skews[1].details.as_deref(),
            Some("clock skew 3.94036s > max 0.05s")
        );
        let health = parse_health_detail(&fixture("skewed-health-detail")).unwrap();
        assert_eq!(health.status, "HEALTH_WARN");
        let skew = health.clock_skew.unwrap();
        assert_eq!(skew.summary, "clock skew detected on mon.z-b-data-2");
        assert_eq!(
            skew.detail,
            ["mon.z-b-data-2 clock skew 3.94036s > max 0.05s (latency 0.0808365s)"]
        );
        let quorum = parse_quorum_status(&fixture("skewed-quorum-status")).unwrap();
        assert_eq!(quorum.leader, "z-b-data-1");
        assert_eq!(
            quorum.addresses[1],
            ("z-b-data-2".to_owned(), "192.168.6.205".to_owned())
        );

        let health = parse_health_detail(&fixture("healthy-health-detail")).unwrap();
        assert_eq!(
            (health.status.as_str(), health.clock_skew),
            ("HEALTH_OK", None)
        );
        let skews = parse_time_sync_status(&fixture("healthy-time-sync-status")).unwrap();
        assert!(
            skews
                .iter()
                .all(|m| m.skew_seconds == 0.0 && m.health == "HEALTH_OK")
        );
    }

    /// A monitor is mapped by name, else by its address in the monmap.
    #[test]
    fn monitors_map_to_hosts_by_name_or_address() {
        let skews = parse_time_sync_status(&fixture("skewed-time-sync-status")).unwrap();
        let health = parse_health_detail(&fixture("skewed-health-detail")).unwrap();
        let quorum = parse_quorum_status(&fixture("skewed-quorum-status")).unwrap();
        let measured = [
            Measured {
                name: "z-b-data-1",
                address: "192.168.6.204",
                offset: Some(0.0),
                uncertainty: Some(0.001),
            },
            Measured {
                name: "mon-two",
                address: "192.168.6.205",
                offset: Some(4.0),
                uncertainty: Some(0.001),
            },
        ];
        let report = compare("z-b-data-1", &skews, &health, &quorum, &measured);
        assert_eq!(report.monitors[1].host.as_deref(), Some("mon-two"));
        assert_eq!(report.monitors[1].agree, Some(true));
        assert_eq!(report.monitors[2].host, None);
        assert_eq!(report.monitors[2].agree, None);
        assert!(report.warns() && !report.disagrees());
    }

    #[test]
    fn addresses() {
        assert_eq!(
            address_ip("192.168.6.204:6789/0").as_deref(),
            Some("192.168.6.204")
        );
        assert_eq!(
            address_ip("v2:10.0.0.1:3300/0").as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(address_ip("[fd00::1]:6789/0").as_deref(), Some("fd00::1"));
        assert_eq!(address_ip("nonsense"), None);
    }

    #[test]
    fn bad_output_is_an_error() {
        for bad in ["", "{", "[]", "null", "{\"time_skew_status\":{\"a\":{}}}"] {
            assert!(parse_time_sync_status(bad).is_err(), "{bad}");
        }
        assert!(parse_health_detail("{\"checks\":{}}").is_err());
        assert!(parse_quorum_status("{}").is_err());
        let nan = "{\"time_skew_status\":{\"a\":{\"skew\":\"NaN\",\"latency\":0}}}";
        assert!(parse_time_sync_status(nan).is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}", bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let lossy = String::from_utf8_lossy(&bytes);
            for t in [text.as_str(), &lossy] {
                let _ = parse_time_sync_status(t);
                let _ = parse_health_detail(t);
                let _ = parse_quorum_status(t);
                let _ = address_ip(t);
            }
        }

        #[test]
        fn never_panics_on_json_shapes(
            skew in proptest::num::f64::ANY,
            name in "\\PC{0,12}",
            addr in "\\PC{0,30}",
        ) {
            let doc = serde_json::json!({
                "time_skew_status": { name.clone(): { "skew": skew, "latency": skew, "health": name } },
                "quorum_leader_name": name,
                "monmap": { "mons": [ { "name": name, "public_addr": addr } ] },
                "status": "HEALTH_WARN",
                "checks": { "MON_CLOCK_SKEW": { "detail": [ { "message": addr } ] } },
            })
            .to_string();
            let skews = parse_time_sync_status(&doc).unwrap_or_default();
            let health = parse_health_detail(&doc);
            let quorum = parse_quorum_status(&doc);
            if let (Ok(health), Ok(quorum)) = (health, quorum) {
                let measured = [Measured { name: &name, address: &addr, offset: Some(skew), uncertainty: Some(0.001) }];
                let _ = compare("h", &skews, &health, &quorum, &measured);
            }
        }
    }
}
