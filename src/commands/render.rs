//! `clockprov render`: the files a host should have, rendered offline.

use anyhow::anyhow;

use crate::cli::RenderArgs;
use crate::daemon::DaemonVersion;
use crate::inventory::Host;
use crate::inventory::Inventory;
use crate::nts::HostNts;
use crate::render::{FileKind, RenderInputs};

use super::{EXIT_OK, print_stdout, renderer_for};

pub(crate) fn run(args: &RenderArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(&args.inventory)?;
    let renderer = renderer_for(&inventory, args.templates.clone())?;
    let host = inventory
        .hosts
        .iter()
        .find(|h| h.name.as_str() == args.host)
        .ok_or_else(|| {
            anyhow!(
                "no host named {} in {}{}",
                args.host,
                args.inventory.display(),
                crate::suggest::did_you_mean(&args.host, inventory.host_names())
            )
        })?;
    // `--os` was checked against the supported systems, which are all `ID:VERSION_ID`.
    let (os_id, os_version) = args.os.split_once(':').unwrap_or((&args.os, ""));
    let daemon = host.daemon(os_id, os_version);
    let version = match &args.daemon_version {
        Some(v) => DaemonVersion::from_debian(v)
            .ok_or_else(|| anyhow!("--daemon-version {v:?} is not a version"))?,
        None => daemon.distribution_default(os_id, os_version),
    };
    let inputs = RenderInputs {
        os_id,
        daemon,
        version,
    };
    crate::nts::check_host(host, inputs, &args.os)?;
    let mut desired = renderer.render(host, inputs)?;
    if let Some(onto) = &args.onto {
        if daemon != crate::daemon::Daemon::Chrony {
            return Err(anyhow!(
                "--onto is for chrony's main file; {} runs {daemon} on {}",
                host.name,
                args.os
            ));
        }
        let own = std::fs::read(onto).map_err(|e| anyhow!("{}: {e}", onto.display()))?;
        let path = daemon.config_path_on(crate::daemon::Family::of(os_id));
        let files = std::collections::BTreeMap::from([(
            path.to_owned(),
            crate::host::facts::PathFacts::File(crate::host::facts::FileFacts {
                content: own,
                mode: 0o644,
                owner: "root".to_owned(),
                group: "root".to_owned(),
            }),
        )]);
        let (laid, warning) = crate::layout::with_chrony_layout(desired, &files)
            .map_err(|e| anyhow!("{}: {e}", onto.display()))?;
        if let Some(warning) = warning {
            tracing::warn!("{}", crate::report::shown(&warning));
        }
        desired = laid;
    }
    // The configuration, as the daemon reads it; NTS material is named on stderr only (the key
    // is never printed).
    for file in &desired.files {
        match file.kind {
            FileKind::Config => {
                tracing::info!("{}:{}", host.name, file.path);
                print_stdout(&file.content)?;
            }
            FileKind::Material => tracing::info!(
                "{}:{}: {} bytes from {}",
                host.name,
                file.path,
                file.content.len(),
                crate::report::shown(&source_of(host, &file.path))
            ),
            FileKind::Secret => tracing::info!(
                "{}:{}: {}",
                host.name,
                file.path,
                crate::nts::describe_secret(file.content.as_bytes())
            ),
        }
    }
    Ok(EXIT_OK)
}

/// The inventory's file a host's NTS certificate or CA comes from.
fn source_of(host: &Host, path: &str) -> String {
    let source = match &host.nts {
        HostNts::Server { certificate, .. } if path.ends_with("clockprov.crt") => {
            Some(&certificate.source)
        }
        HostNts::Client {
            trusted_certs: Some(ca),
        } => Some(&ca.source),
        _ => None,
    };
    source.map_or_else(String::new, |s| s.display().to_string())
}
