//! The remote half of `check --ceph`: run `ceph.sh` on a monitor host (as root: the admin
//! keyring is root's) and split its records into the three queries' JSON texts. The JSON
//! itself is read by the pure `crate::ceph`.

use crate::host::records::{RecordError, Records};
use crate::host::script::RemoteScript;

/// The read-only script that asks Ceph.
#[must_use]
pub(crate) fn script() -> RemoteScript {
    RemoteScript::new(include_str!("ceph.sh"))
}

/// The queries, as `ceph` spells them, in the script's order.
const QUERIES: [&str; 3] = ["time-sync-status", "health detail", "quorum_status"];

/// What the three `ceph` queries printed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct CephOutput {
    pub(crate) time_sync_status: String,
    pub(crate) health_detail: String,
    pub(crate) quorum_status: String,
}

/// Why [`parse`] found no usable output.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum CephOutputError {
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error("the host has no `ceph` command (is it a Ceph monitor host with ceph-common?)")]
    NoCeph,
    #[error("`ceph {query}` failed (exit {status}): {output}")]
    Failed {
        query: String,
        status: String,
        output: String,
    },
    #[error("`ceph {0}` was not run (the output has no record of it)")]
    Missing(&'static str),
}

/// Parse `ceph.sh`'s records.
///
/// # Errors
/// Not the script's records; no `ceph` on the host; a query that failed (its message, clipped).
pub(crate) fn parse(output: &[u8]) -> Result<CephOutput, CephOutputError> {
    let mut records = Records::new(output);
    let mut found: [Option<String>; 3] = [None, None, None];
    while let Some(record) = records.next_record()? {
        let slot = match record.kind {
            "no-ceph" => return Err(CephOutputError::NoCeph),
            "time-sync-status" => 0,
            "health-detail" => 1,
            "quorum_status" => 2,
            _ => return Err(record.unknown().into()),
        };
        let query = QUERIES[slot];
        let status = record.text().trim().to_owned();
        let mut text = String::new();
        for line in records.section() {
            text.push_str(&String::from_utf8_lossy(line));
            text.push('\n');
        }
        if status != "0" {
            let output: String = text.trim().chars().take(300).collect();
            return Err(CephOutputError::Failed {
                query: query.to_owned(),
                status,
                output: crate::report::shown(&output).into_owned(),
            });
        }
        found[slot] = Some(text);
    }
    let [
        Some(time_sync_status),
        Some(health_detail),
        Some(quorum_status),
    ] = found
    else {
        let i = found.iter().position(Option::is_none).unwrap_or(0);
        return Err(CephOutputError::Missing(QUERIES[i]));
    };
    Ok(CephOutput {
        time_sync_status,
        health_detail,
        quorum_status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records() {
        let out = b"@@time-sync-status 0\n{\"a\":1}\n@@health-detail 0\n{}\n@@quorum_status 0\n{}\n@@end\n";
        let parsed = parse(out).unwrap();
        assert_eq!(parsed.time_sync_status, "{\"a\":1}\n");
        assert_eq!(parse(b"@@no-ceph\n@@end\n"), Err(CephOutputError::NoCeph));
        let failed = parse(b"@@time-sync-status 1\nError initializing cluster client\n@@end\n");
        assert!(
            matches!(&failed, Err(CephOutputError::Failed { query, .. }) if query == "time-sync-status"),
            "{failed:?}"
        );
        assert!(matches!(
            parse(b"@@time-sync-status 0\n{}\n@@end\n"),
            Err(CephOutputError::Missing("health detail"))
        ));
        assert!(parse(b"@@time-sync-status 0\n{}\n").is_err());
    }
}
