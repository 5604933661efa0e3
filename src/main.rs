use clap::Parser;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = echoplex::cli::Cli::parse();
    // Logs go to stderr; stdout is reserved for the contract's lines. The
    // daemon's logs go through a queue that never blocks its loop.
    let daemon = matches!(cli.command, echoplex::cli::Command::Serve(_));
    if cli.runs_reactors() {
        echoplex::daemon::reactors::name_in_logs();
    }
    echoplex::daemon::log::init(daemon, cli.wants_trace());
    let code = cli.run();
    echoplex::daemon::log::flush();
    code
}
