//! `clockprov completions SHELL`: the shell's completion script, generated from the CLI itself
//! so that it never lags behind a new option.

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs};

use super::{EXIT_OK, print_stdout};

pub(crate) fn run(args: &CompletionsArgs) -> anyhow::Result<u8> {
    print_stdout(&script(args.shell))?;
    Ok(EXIT_OK)
}

/// The completion script for `shell`.
pub(crate) fn script(shell: clap_complete::Shell) -> String {
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "clockprov", &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use clap_complete::Shell;

    use super::script;

    #[test]
    fn bash() {
        insta::assert_snapshot!(script(Shell::Bash));
    }

    #[test]
    fn zsh() {
        insta::assert_snapshot!(script(Shell::Zsh));
    }

    #[test]
    fn fish() {
        insta::assert_snapshot!(script(Shell::Fish));
    }
}
