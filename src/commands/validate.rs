//! `clockprov validate`: an inventory checked offline, for its own CI (as `terraform validate`):
//! parsed and checked as a whole (the same loader every command uses), then every host and
//! image rendered for every supported system, since templates branch on the daemon's version.

use std::fmt::Write as _;

use anyhow::bail;

use crate::cli::ValidateArgs;
use crate::daemon::SUPPORTED_SYSTEMS;
use crate::inventory::{Host, Inventory, servers_of};
use crate::render::{RenderInputs, Renderer};

use super::{EXIT_OK, print_stdout, renderer_for};

pub(crate) fn run(args: &ValidateArgs) -> anyhow::Result<u8> {
    let inventory = Inventory::load(&args.inventory)?;
    let renderer = renderer_for(&inventory, args.templates.clone())?;
    let problems = render_all(&inventory, &renderer);
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    let file = &inventory.file;
    let mut text = format!(
        "{}: valid: {}, {}, {}",
        args.inventory.display(),
        counted(file.ntp_servers.len(), "server"),
        counted(file.clients.len(), "client"),
        counted(file.images.len(), "image"),
    );
    let _ = writeln!(
        text,
        "; every one renders for {}",
        crate::daemon::supported_systems()
    );
    print_stdout(&text)?;
    Ok(EXIT_OK)
}

fn counted(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

/// Render every host and image for every supported system; one line per failure, each
/// template error said once (the first system it fails for).
fn render_all(inventory: &Inventory, renderer: &Renderer) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut note = |what: String, os_id: &str, os_version: &str, error: String| {
        if seen.insert((what.clone(), error.clone())) {
            problems.push(format!(
                "{what} (rendered for {os_id}:{os_version}): {error}"
            ));
        }
    };
    let systems = || {
        SUPPORTED_SYSTEMS
            .iter()
            .map(|system| system.split_once(':').unwrap_or((system, "")))
    };
    for host in &inventory.hosts {
        for (os_id, os_version) in systems() {
            let daemon = host.daemon(os_id, os_version);
            if crate::daemon::check_available(daemon, os_id, "").is_err() {
                continue;
            }
            let version = daemon.distribution_default(os_id, os_version);
            let inputs = RenderInputs {
                os_id,
                daemon,
                version,
            };
            // NTS where that system cannot do it is refused at plan, per host, not here.
            if crate::nts::check_host(host, inputs, "").is_err() {
                continue;
            }
            if let Err(e) = renderer.render(host, inputs) {
                note(
                    format!("host {}", host.name),
                    os_id,
                    os_version,
                    e.to_string(),
                );
            }
        }
    }
    for (name, spec) in &inventory.file.images {
        let servers = servers_of(&inventory.file, spec.ntp.as_deref());
        for (os_id, os_version) in systems() {
            let daemon = Host::image_daemon(&inventory.file, spec, os_id, os_version);
            if crate::daemon::check_available(daemon, os_id, "").is_err() {
                continue;
            }
            let version = daemon.distribution_default(os_id, os_version);
            if let Err(e) = renderer.render_image(
                name.as_str(),
                &servers,
                spec.fallback_ntp.as_deref(),
                RenderInputs {
                    os_id,
                    daemon,
                    version,
                },
            ) {
                note(format!("image {name}"), os_id, os_version, e.to_string());
            }
        }
    }
    problems
}
