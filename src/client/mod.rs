//! `echoplex client`.

/// Command-line arguments of `echoplex client`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `echoplex client`; returns the process exit code.
pub fn run(_args: Args) -> std::process::ExitCode {
    eprintln!("echoplex: client is not built yet");
    std::process::ExitCode::from(2)
}
