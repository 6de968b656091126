//! `clockprov render`: the files a host should have, rendered offline.

use anyhow::anyhow;

use crate::cli::RenderArgs;
use crate::daemon::DaemonVersion;
use crate::inventory::Inventory;
use crate::render::RenderInputs;

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
    let desired = renderer.render(
        host,
        RenderInputs {
            os_id,
            daemon,
            version,
        },
    )?;
    for file in &desired.files {
        tracing::info!("{}:{}", host.name, file.path);
        print_stdout(&file.content)?;
    }
    Ok(EXIT_OK)
}
