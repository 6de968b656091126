//! `clockprov man`: the man page, section 1, generated from the CLI itself: the commands and
//! their options as `--help` shows them, each command's long help included.

use clap::CommandFactory as _;

use crate::cli::Cli;

use super::{EXIT_OK, print_stdout};

pub(crate) fn run() -> anyhow::Result<u8> {
    print_stdout(&page()?)?;
    Ok(EXIT_OK)
}

/// The whole manual in one page: clockprov(1), then a section per command (as git's pages list
/// theirs), so that `man clockprov` answers every question `--help` would.
pub(crate) fn page() -> anyhow::Result<String> {
    let command = Cli::command();
    let mut out = Vec::new();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    for (name, sub) in commands(&command, "clockprov") {
        let title = name.to_uppercase();
        out.extend_from_slice(format!(".SH \"{title}\"\n").as_bytes());
        let man = clap_mangen::Man::new(sub.clone().bin_name(name));
        // Each command's synopsis, description and options, under its own heading.
        let mut part = Vec::new();
        man.render_synopsis_section(&mut part)?;
        man.render_description_section(&mut part)?;
        man.render_options_section(&mut part)?;
        if sub.get_after_help().is_some() {
            man.render_extra_section(&mut part)?;
        }
        let part = String::from_utf8_lossy(&part).replace(".SH EXTRA", ".SH NOTES");
        out.extend_from_slice(demote_sections(&part).as_bytes());
    }
    let mut tail = Vec::new();
    man.render_extra_section(&mut tail)?;
    man.render_version_section(&mut tail)?;
    out.extend_from_slice(
        String::from_utf8_lossy(&tail)
            .replace(".SH EXTRA", ".SH INVENTORY")
            .as_bytes(),
    );
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Every command and nested command (`import ansible`) under `parent`, with its full name.
fn commands(parent: &clap::Command, prefix: &str) -> Vec<(String, clap::Command)> {
    let mut all = Vec::new();
    for sub in parent.get_subcommands().filter(|s| s.get_name() != "help") {
        let name = format!("{prefix} {}", sub.get_name());
        all.push((name.clone(), sub.clone()));
        all.extend(commands(sub, &name));
    }
    all
}

/// A command's own `.SH` headings become `.SS` under its section.
fn demote_sections(roff: &str) -> String {
    roff.lines()
        .map(|line| {
            line.strip_prefix(".SH ")
                .map_or_else(|| line.to_owned(), |rest| format!(".SS {rest}"))
        })
        .fold(String::new(), |mut out, line| {
            out.push_str(&line);
            out.push('\n');
            out
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn man_page() {
        insta::assert_snapshot!(super::page().unwrap());
    }
}
