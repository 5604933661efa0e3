use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = echoplex::cli::Cli::parse();
    // Logs go to stderr; stdout is reserved for the contract's lines.
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    logger.target(env_logger::Target::Stderr);
    if cli.wants_trace() {
        logger.filter_module("echoplex::reactor", log::LevelFilter::Trace);
    }
    logger.init();
    cli.run()
}
