//! `echoplex bench`.

/// Command-line arguments of `echoplex bench`.
#[derive(clap::Args, Debug)]
pub struct Args {}

/// Runs `echoplex bench`; returns the process exit code.
pub fn run(_args: Args) -> std::process::ExitCode {
    eprintln!("echoplex: bench is not built yet");
    std::process::ExitCode::from(2)
}
