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

/// The offset from the sample with the smallest round trip (the least uncertain one).
#[must_use]
pub fn best_offset(samples: &[ClockSample]) -> Option<Offset> {
    samples
        .iter()
        .filter(|s| s.after >= s.before)
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
    /// The daemon's own estimate of the clock's offset, seconds (positive: fast).
    pub offset_seconds: Option<f64>,
    pub stratum: Option<u32>,
    pub leap_status: Option<String>,
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
        offset_seconds: status.get("Offset").and_then(|v| parse_timespan(v)),
        stratum: message.get("Stratum").and_then(|s| s.parse().ok()),
        leap_status: message.get("Leap").cloned(),
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
        leap_status: leap,
    }
}

/// Why a host is not healthy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Finding {
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

/// Judge one host: `relative_offset` is its offset from its NTP server when that was measured,
/// otherwise from the controller; `expected_servers` empty for a server (any source will do).
#[must_use]
pub fn judge(
    reading: &ClockReading,
    relative_offset: f64,
    expected_servers: &[String],
    max_skew: f64,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if reading.unit_state != "active" {
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
    if relative_offset.abs() > max_skew {
        findings.push(Finding::Skew {
            offset_seconds: relative_offset,
            max_seconds: max_skew,
        });
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!((synced.offset_seconds.unwrap() + 1.998_265).abs() < 1e-9);
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
        assert_eq!(stock.leap_status.as_deref(), Some("Not synchronised"));
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
        assert!(judge(&reading, 0.01, &expected, 0.05).is_empty());
        assert_eq!(
            judge(&reading, -0.2, &expected, 0.05),
            vec![Finding::Skew {
                offset_seconds: -0.2,
                max_seconds: 0.05
            }]
        );
        let other = vec!["10.0.0.1".to_owned()];
        assert!(matches!(
            judge(&reading, 0.0, &other, 0.05)[0],
            Finding::WrongServer { .. }
        ));
        let stopped = ClockReading {
            unit_state: "inactive".into(),
            ..reading.clone()
        };
        assert_eq!(
            judge(&stopped, 0.0, &expected, 0.05),
            vec![Finding::DaemonNotRunning {
                unit: "systemd-timesyncd.service".into(),
                state: "inactive".into()
            }]
        );
        assert_eq!(judge(&reading, 0.0, &[], 0.05), vec![]);
    }
}
