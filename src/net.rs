//! `echoplex net`.

/// Command-line arguments of `echoplex net`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `echoplex net`; returns the process exit code.
pub fn run(_args: Args) -> std::process::ExitCode {
    eprintln!("echoplex: net is not built yet");
    std::process::ExitCode::from(2)
}
