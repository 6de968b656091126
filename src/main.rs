use std::process::ExitCode;

fn main() -> ExitCode {
    clockprov::commands::main()
}
