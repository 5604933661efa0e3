//! `echoplex status`.

/// Command-line arguments of `echoplex status`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `echoplex status`; returns the process exit code.
pub fn run(_args: Args) -> std::process::ExitCode {
    eprintln!("echoplex: status is not built yet");
    std::process::ExitCode::from(2)
}
