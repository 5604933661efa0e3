//! `echoplex ping`.

/// Command-line arguments of `echoplex ping`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `echoplex ping`; returns the process exit code.
pub fn run(_args: Args) -> std::process::ExitCode {
    eprintln!("echoplex: ping is not built yet");
    std::process::ExitCode::from(2)
}
