//! `clockprov import ansible|ssh-config`: print a clockprov inventory made from another tool's;
//! what could not be mapped goes to stderr too, so that nobody misses it in a redirect.

use anyhow::Context as _;

use crate::cli::{ImportChoice, ImportSource};
use crate::import::{self, ServerChoice};

use super::{EXIT_OK, print_stdout};

pub(crate) fn run(source: &ImportSource) -> anyhow::Result<u8> {
    let command: Vec<String> = std::env::args().skip(1).collect();
    let command = format!("clockprov {}", command.join(" "));
    let (imported, choice) = match source {
        ImportSource::Ansible { inventory, choice } => (import::ansible::read(inventory)?, choice),
        ImportSource::SshConfig { file, choice } => {
            let home = std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(std::path::PathBuf::from)
                .context("HOME is not set: cannot find ~/.ssh/config")?;
            let file = file.clone().unwrap_or_else(|| home.join(".ssh/config"));
            (import::ssh_config::read(&file, &home)?, choice)
        }
    };
    let text = import::write(&imported, &server_choice(choice), &command)?;
    for line in &imported.unmapped {
        tracing::warn!("not mapped: {line}");
    }
    print_stdout(&text)?;
    Ok(EXIT_OK)
}

fn server_choice(choice: &ImportChoice) -> ServerChoice {
    ServerChoice {
        servers: choice.servers.clone(),
        hosts: choice.hosts.clone(),
        upstream: choice.upstream.clone(),
        local_stratum: choice.local_stratum,
        allow: choice.allow.clone(),
    }
}
