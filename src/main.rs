use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = echoplex::cli::Cli::parse_or_exit();
    // Logs go to stderr; stdout is reserved for the contract's lines. The
    // daemon's logs go through a queue that never blocks its loop.
    let daemon = matches!(cli.command, echoplex::cli::Command::Serve(_));
    echoplex::log::init(daemon, cli.wants_trace(), cli.runs_reactors());
    // One exit-code policy (error.rs): a command returns its outcome, and
    // only here is a failure printed and turned into the exit code.
    let outcome = cli.run();
    // Log lines still queued come first, so an error is the last line.
    echoplex::log::flush();
    match outcome {
        Ok(exit) => exit.into(),
        Err(failure) => {
            eprintln!("echoplex: {failure}");
            failure.exit.into()
        }
    }
}
