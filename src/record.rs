//! `apply --record DIR`: a JSON record, on the controller, of what each apply did: when, from
//! which inventory (its SHA-256), and per host the files with their content's SHA-256 before and
//! after, the backup kept, the steps carried out and how it ended. A record is what an operator
//! reads to know what changed and how to put a file back (README, "Restoring a backup").
//!
//! Pure: [`Record::of`] builds it from the results apply already has; [`Recorder`] only owns
//! the directory and writes the file.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;
use serde::Serialize;

use crate::operations::{HostResult, HostStatus};
use crate::outcome::ErrorKind;
use crate::plan::{FileAction, FileChange};
use crate::utc::{Utc, sha256_hex};

/// The record's schema version; bumped only on incompatible changes.
const RECORD_FORMAT_VERSION: u32 = 1;

/// One apply.
#[derive(Debug, Serialize)]
pub(crate) struct Record {
    format_version: u32,
    command: &'static str,
    /// When the apply started and ended, UTC (`2026-12-06T03:41:07Z`).
    started: String,
    finished: String,
    inventory: InventoryRecord,
    hosts: Vec<HostRecord>,
}

#[derive(Debug, Serialize)]
struct InventoryRecord {
    path: String,
    sha256: String,
}

#[derive(Debug, Serialize)]
struct HostRecord {
    name: String,
    address: String,
    role: &'static str,
    /// `applied`, `unchanged`, `failed` or `unreachable`, as in `--format json`.
    outcome: HostStatus,
    error: Option<String>,
    error_kind: Option<ErrorKind>,
    /// The managed files the plan changed (files already right are left out).
    files: Vec<FileRecord>,
    /// The vendor sources the plan switched off (renamed to `PATH.clockprov-off`), with the
    /// sha256 of each as read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    switched_off: Vec<crate::vendor_sources::SwitchOff>,
    /// The steps carried out, in order (empty when the host failed: `error` says where).
    actions: Vec<String>,
    rolled_back: bool,
}

#[derive(Debug, Serialize)]
struct FileRecord {
    path: String,
    /// `create`, `update` or `fix-metadata`.
    action: FileAction,
    /// SHA-256 of the content read before the apply; null when the file did not exist.
    before_sha256: Option<String>,
    /// SHA-256 of the content clockprov wrote (or would have written, for a failed host).
    after_sha256: String,
    /// The copy of the old file kept beside it, if one was made.
    backup: Option<String>,
}

impl Record {
    /// The record of an apply of the inventory at `inventory` (whose text is `inventory_text`)
    /// from `started` to `finished`, with these results.
    pub(crate) fn of(
        inventory: &Path,
        inventory_text: &[u8],
        (started, finished): (SystemTime, SystemTime),
        results: &[HostResult],
    ) -> Record {
        Record {
            format_version: RECORD_FORMAT_VERSION,
            command: "apply",
            started: Utc::from_system(started).rfc3339(),
            finished: Utc::from_system(finished).rfc3339(),
            inventory: InventoryRecord {
                path: std::path::absolute(inventory)
                    .unwrap_or_else(|_| inventory.to_owned())
                    .display()
                    .to_string(),
                sha256: sha256_hex(inventory_text),
            },
            hosts: results.iter().map(host_record).collect(),
        }
    }

    /// The record as the file holds it.
    pub(crate) fn to_json(&self) -> String {
        // Every field is a plain value: serializing cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }
}

fn host_record(result: &HostResult) -> HostRecord {
    let report = result.apply.as_ref();
    let backups = report.map_or(&[][..], |r| r.backups.as_slice());
    let files = result
        .plan
        .iter()
        .flat_map(|plan| &plan.files)
        .filter(|file| file.action != FileAction::Unchanged)
        .map(|file| file_record(file, backups))
        .collect();
    HostRecord {
        name: result.name.clone(),
        address: result.address.clone(),
        role: result.role,
        outcome: result.status,
        error: result.error.clone(),
        error_kind: result.error_kind,
        files,
        // A step after the package install that found no file renamed nothing: its action says so.
        switched_off: result
            .plan
            .iter()
            .flat_map(|plan| plan.switch_off.iter())
            .filter(|step| {
                report.is_none_or(|r| !(step.after_install && r.not_created.contains(&step.path)))
            })
            .cloned()
            .collect(),
        actions: report.map(|r| r.done.clone()).unwrap_or_default(),
        rolled_back: report.is_some_and(|r| r.rolled_back),
    }
}

fn file_record(file: &FileChange, backups: &[String]) -> FileRecord {
    // Backups are named after their file: `PATH.clockprov-<UTC time>.bak`.
    let prefix = format!("{}.clockprov-", file.path);
    FileRecord {
        path: file.path.clone(),
        action: file.action,
        before_sha256: file.before.as_ref().map(|b| sha256_hex(&b.content)),
        after_sha256: sha256_hex(file.after.content.as_bytes()),
        backup: backups.iter().find(|b| b.starts_with(&prefix)).cloned(),
    }
}

/// Where records go: `--record DIR`, else `$XDG_STATE_HOME/clockprov/records`, else
/// `~/.local/state/clockprov/records`.
#[must_use]
pub(crate) fn default_dir() -> Option<PathBuf> {
    let state = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| Path::new(v).is_absolute())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|home| Path::new(&home).join(".local/state"))
        })?;
    Some(state.join("clockprov/records"))
}

/// The directory records are written to, made (mode 0700) before any host is changed, so that
/// an apply that could not be recorded never starts.
#[derive(Debug)]
pub(crate) struct Recorder {
    dir: PathBuf,
}

impl Recorder {
    /// Make `dir` (and its parents) if needed.
    ///
    /// # Errors
    /// It cannot be made, or it is not a directory.
    pub(crate) fn open(dir: PathBuf) -> anyhow::Result<Recorder> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| {
                format!(
                    "cannot make the record directory {} (--record DIR, or --no-record); nothing was changed",
                    dir.display()
                )
            })?;
        Ok(Recorder { dir })
    }

    /// Write `record` as `apply-<UTC time>.json` (with `-2`, `-3`... when two applies share a
    /// second); the path written.
    ///
    /// # Errors
    /// The file cannot be written.
    pub(crate) fn write(&self, record: &Record, started: SystemTime) -> anyhow::Result<PathBuf> {
        let stem = format!("apply-{}", Utc::from_system(started).compact());
        let text = record.to_json();
        for n in 1..1000 {
            let name = if n == 1 {
                format!("{stem}.json")
            } else {
                format!("{stem}-{n}.json")
            };
            let path = self.dir.join(name);
            let mut file = match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("writing the record {}", path.display()));
                }
            };
            file.write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .with_context(|| format!("writing the record {}", path.display()))?;
            return Ok(path);
        }
        anyhow::bail!(
            "too many records named {stem}*.json in {}",
            self.dir.display()
        )
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn sha256_is_hex() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    fn change(path: &str, before: Option<&str>, after: &str) -> FileChange {
        use std::collections::BTreeMap;

        use crate::host::facts::{FileFacts, PathFacts};
        use crate::render::DesiredFile;
        let found = BTreeMap::from([(
            path.to_owned(),
            before.map_or(PathFacts::Absent, |content| {
                PathFacts::File(FileFacts {
                    content: content.as_bytes().to_vec(),
                    mode: 0o644,
                    owner: "root".into(),
                    group: "root".into(),
                })
            }),
        )]);
        let wanted = [DesiredFile {
            path: path.to_owned(),
            content: after.to_owned(),
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            kind: crate::render::FileKind::Config,
        }];
        crate::plan::file_changes("h", &wanted, &found)
            .unwrap()
            .remove(0)
    }

    #[test]
    fn files_have_both_digests_and_their_own_backup() {
        let backups = [
            "/etc/chrony/chrony.conf.clockprov-20261206T034107Z.bak".to_owned(),
            "/etc/systemd/timesyncd.conf.clockprov-20261206T034107Z.bak".to_owned(),
        ];
        let updated = file_record(
            &change("/etc/systemd/timesyncd.conf", Some(""), "[Time]\n"),
            &backups,
        );
        assert_eq!(updated.action, FileAction::Update);
        assert_eq!(
            updated.before_sha256.as_deref(),
            Some(sha256_hex(b"").as_str())
        );
        assert_eq!(updated.after_sha256, sha256_hex(b"[Time]\n"));
        assert_eq!(updated.backup.as_deref(), Some(backups[1].as_str()));
        let created = file_record(
            &change("/etc/chrony/chrony.d/x.conf", None, "x\n"),
            &backups,
        );
        assert_eq!(created.action, FileAction::Create);
        assert_eq!(created.before_sha256, None);
        assert_eq!(
            created.backup, None,
            "no backup of a file that did not exist"
        );
    }

    #[test]
    fn a_host_never_reached_is_recorded_with_its_error_kind() {
        let row = HostResult {
            name: "z-b-data-3".into(),
            address: "192.168.6.206".into(),
            role: "client",
            daemon: Some(crate::daemon::Daemon::Timesyncd),
            os: None,
            status: HostStatus::Unreachable,
            error: Some("connecting to 192.168.6.206:22 timed out after 10s".into()),
            error_kind: Some(ErrorKind::Unreachable),
            plan: None,
            effective: None,
            apply: None,
            facts: None,
        };
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_528_467);
        let record = Record::of(Path::new("/srv/inv.yaml"), b"", (t, t), &[row]);
        insta::assert_snapshot!(record.to_json(), @r#"
        {
          "format_version": 1,
          "command": "apply",
          "started": "2026-12-06T03:41:07Z",
          "finished": "2026-12-06T03:41:07Z",
          "inventory": {
            "path": "/srv/inv.yaml",
            "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
          },
          "hosts": [
            {
              "name": "z-b-data-3",
              "address": "192.168.6.206",
              "role": "client",
              "outcome": "unreachable",
              "error": "connecting to 192.168.6.206:22 timed out after 10s",
              "error_kind": "unreachable",
              "files": [],
              "actions": [],
              "rolled_back": false
            }
          ]
        }
        "#);
    }

    #[test]
    fn two_records_in_one_second_both_kept() {
        let dir = tempfile::tempdir().unwrap();
        let recorder = Recorder::open(dir.path().join("a/b")).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_528_467);
        let record = Record::of(Path::new("/inv.yaml"), b"x", (now, now), &[]);
        let first = recorder.write(&record, now).unwrap();
        let second = recorder.write(&record, now).unwrap();
        assert!(first.ends_with("apply-20261206T034107Z.json"), "{first:?}");
        assert!(
            second.ends_with("apply-20261206T034107Z-2.json"),
            "{second:?}"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("a/b"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o700);
    }
}
