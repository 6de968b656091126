use std::process::ExitCode;

fn main() -> ExitCode {
    clockprov::main()
}
