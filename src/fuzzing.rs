//! Entry points for the fuzz targets (`fuzz/`) and the property tests (`proptests`): each runs
//! one parser of untrusted text (the inventory, OpenSSH configs, `known_hosts`, what hosts and
//! guestfish print) on arbitrary input, and panics only when the parser breaks its contract:
//! it panicked itself, or an error that has a location does not name its file and a line that
//! exists. Not an API: the modules stay crate-private, this facade is all the fuzz crate sees.

use std::path::Path;

use crate::daemon::Daemon;

/// The file name parsers are told they read, so that errors can be checked to name it.
const FILE: &str = "/fuzz/input";

/// Is `line` a line of `text` (or the position just past its end, where "unexpected end of
/// input" is reported)?
fn line_exists(text: &str, line: usize) -> bool {
    (1..=text.lines().count() + 1).contains(&line)
}

/// The YAML reader alone.
///
/// # Panics
/// A problem's line is not in `text`.
pub fn yaml(text: &str) {
    if let Err(problems) = crate::yaml::parse(text) {
        assert!(!problems.is_empty(), "an error without a problem");
        for problem in problems {
            assert!(
                line_exists(text, problem.at.line),
                "{problem:?} in {text:?}"
            );
        }
    }
}

/// The inventory: YAML, then its fields and the inventory-wide checks.
///
/// # Panics
/// An error does not name the file, or names a line that is not in `text`.
pub fn inventory(text: &str) {
    match crate::inventory::Inventory::parse(Path::new(FILE), text) {
        Ok(_) => {}
        Err(crate::inventory::InventoryError::Invalid { path, problems }) => {
            assert_eq!(path, Path::new(FILE));
            assert!(!problems.is_empty(), "an error without a problem");
            for problem in &problems {
                if let Some(line) = problem.line {
                    assert!(line_exists(text, line), "{problem:?} in {text:?}");
                }
            }
            let message = crate::inventory::InventoryError::Invalid { path, problems }.to_string();
            assert!(message.starts_with(FILE), "{message}");
        }
        Err(other) => panic!("parsing text read nothing: {other}"),
    }
}

/// An OpenSSH client config, then a lookup of a few names in it. `Include` lines are left out:
/// they read the disk (`Include /dev/zero`), and are tested with real files.
///
/// # Panics
/// An error does not name the file and a line of it.
pub fn ssh_config(text: &str) {
    if text.to_ascii_lowercase().contains("include") {
        return;
    }
    let home = Path::new("/fuzz/home");
    let located = |error: &crate::ssh::config::ConfigError| match error {
        crate::ssh::config::ConfigError::Invalid { loc, .. } => {
            assert_eq!(loc.file.as_path(), Path::new(FILE));
            assert!(line_exists(text, loc.line), "{error} in {text:?}");
            assert!(error.to_string().starts_with(&format!("{FILE}:")));
        }
        crate::ssh::config::ConfigError::Read { .. } => panic!("read a file: {error}"),
    };
    let config = match crate::ssh::config::SshConfig::parse(Path::new(FILE), text, home) {
        Ok(config) => config,
        Err(error) => return located(&error),
    };
    for host in ["zcloud", "10.0.0.1", "data-1.example"] {
        let context = crate::ssh::config::Context {
            user: None,
            port: None,
            default_user: "root",
            local_user: "ops",
            home,
        };
        if let Err(error) = config.lookup(host, &context) {
            located(&error);
        }
    }
}

/// A `known_hosts` file, and a few hosts' keys checked against it.
pub fn known_hosts(bytes: &[u8]) {
    const KEY: &str = "AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ";
    let known = crate::ssh::known_hosts::KnownHosts::parse(Path::new(FILE), bytes);
    let Ok(key) = russh::keys::parse_public_key_base64(KEY) else {
        unreachable!("a valid key");
    };
    let text = String::from_utf8_lossy(bytes);
    // Names from the text itself, so that lines match.
    let names = text
        .split_whitespace()
        .take(8)
        .chain(["10.0.0.1", "zcloud"]);
    for name in names {
        for port in [22, 2222] {
            if let crate::ssh::known_hosts::Verdict::Changed { line, .. }
            | crate::ssh::known_hosts::Verdict::Revoked { line, .. } =
                known.check(name, port, &key)
            {
                assert!(line_exists(&text, line), "line {line} in {text:?}");
            }
        }
    }
}

/// What the facts script printed (bytes: a host may print anything), and the settings a daemon
/// would really use with such bytes in its files.
pub fn facts(output: &[u8]) {
    let request = crate::host::facts::FactsRequest {
        paths: &["/etc/chrony/chrony.conf", "/etc/systemd/timesyncd.conf"],
        units: &["chrony.service", "systemd-timesyncd.service"],
        dropins: &crate::effective::EVERY_DROPIN_DIR,
        max_file_size: crate::host::facts::DEFAULT_MAX_FILE_SIZE,
        held_marker: "fuzz",
    };
    if let Ok(facts) = crate::host::facts::parse(output, &request) {
        effective_settings(&facts, output);
    }
    let _ = crate::host::facts::parse_os_release(&String::from_utf8_lossy(output));
    // The same bytes as every file a daemon reads: its main file and a drop-in of each kind.
    let file = crate::host::facts::PathFacts::File(crate::host::facts::FileFacts {
        content: output.to_vec(),
        mode: 0o644,
        owner: "root".into(),
        group: "root".into(),
    });
    let facts = crate::host::facts::HostFacts {
        files: [
            "/etc/systemd/timesyncd.conf.d/a.conf",
            "/run/systemd/timesyncd.conf.d/b.conf",
            "/etc/chrony/conf.d/a.conf",
            "/etc/chrony/sources.d/b.sources",
        ]
        .into_iter()
        .map(|path| (path.to_owned(), file.clone()))
        .collect(),
        ..Default::default()
    };
    effective_settings(&facts, output);
}

/// The settings each daemon would really use with `main` as its main file, beside `facts`.
fn effective_settings(facts: &crate::host::facts::HostFacts, main: &[u8]) {
    for daemon in Daemon::ALL {
        let desired = crate::render::DesiredState {
            daemon,
            files: vec![crate::render::DesiredFile {
                path: daemon.config_path().to_owned(),
                content: String::from_utf8_lossy(main).into_owned(),
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
                kind: crate::render::FileKind::Config,
            }],
        };
        let _ = crate::effective::of(&desired, facts);
    }
}

/// What the daemon state script printed, and each daemon's own reports in it.
pub fn daemon_views(output: &[u8]) {
    if let Ok(state) = crate::host::readings::parse_host_state(output) {
        for daemon in Daemon::ALL {
            for family in [crate::daemon::Family::Debian, crate::daemon::Family::RedHat] {
                if let Ok((_, view)) = state.daemon(daemon, family) {
                    let _ = crate::clock::check_view(daemon.short_name(), &view);
                }
            }
        }
    }
    let text = String::from_utf8_lossy(output);
    let _ = crate::clock::chrony_view(&text);
    for source in crate::clock::parse_authdata(&text) {
        let _ = source.nts_failure();
    }
    let _ = crate::clock::timesyncd_view(&text, &text, &text);
    for line in text.lines() {
        let _ = crate::clock::parse_timespan(line);
        let _ = crate::clock::leap_word(line);
    }
}

/// Clock readings: lines of `$EPOCHREALTIME` as a host prints them, read against the
/// controller's clock (`before`, `after`: any floats, the controller's clock may jump).
pub fn clock_readings(text: &str, controller: &[f64]) {
    let samples: Vec<crate::clock::ClockSample> = text
        .lines()
        .filter_map(|line| crate::clock::parse_clock_line(line).ok())
        .zip(controller.chunks_exact(2))
        .map(|(remote, pair)| crate::clock::ClockSample {
            before: pair[0],
            remote,
            after: pair[1],
        })
        .collect();
    let _ = crate::clock::best_offset(&samples);
}

/// guestfish's replies (raw lines up to a marker) and every parser of them; the unit files and
/// dpkg status read from an image; a libvirt domain's XML.
///
/// # Panics
/// An answer ends before its marker.
pub fn guestfish(bytes: &[u8]) {
    use crate::image::guestfs;
    let marker = "@@clockprov-0123456789abcdef-1";
    let mut answer = guestfs::Answer::default();
    // The real marker carries 128 random bits no image can guess: an input line equal to this
    // fixed one stands for nothing that can happen, and is left out.
    for line in bytes
        .split(|b| *b == b'\n')
        .filter(|line| *line != marker.as_bytes())
    {
        assert_eq!(answer.feed(line, marker), None, "ended early");
    }
    let Some(lines) = answer.feed(marker.as_bytes(), marker) else {
        unreachable!("the marker ends an answer");
    };
    let _ = guestfs::parse_bool(&lines);
    let _ = guestfs::parse_lstatns(&lines);
    let _ = guestfs::parse_mountpoints(&lines);
    let _ = guestfs::decode_base64(&lines);
    let text = String::from_utf8_lossy(bytes);
    let _ = crate::image::facts::parse_install(&text);
    let _ = crate::image::facts::parse_dpkg_status(&text, &["chrony", "systemd-timesyncd"]);
    let _ = crate::image::libvirt::parse_disks(&text);
}
