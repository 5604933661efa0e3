use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    // Logs go to stderr; stdout is reserved for the contract's lines.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .target(env_logger::Target::Stderr)
        .init();
    echoplex::cli::Cli::parse().run()
}
