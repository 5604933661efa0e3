//! The command line: one binary, one subcommand per tool. Each subcommand's
//! options live beside its code (`serve::Args`, `client::Args`, ...).

use clap::{CommandFactory, Parser, Subcommand};

/// echoplex: every echo protocol, one mio::Poll loop per thread (one by default).
#[derive(Parser, Debug)]
#[command(
    name = "echoplex",
    version,
    about,
    propagate_version = true,
    after_help = crate::error::EXIT_TABLE
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve echo endpoints from one event loop, or one per core with --reactors (defaults: tcp,
    /// udp, unix, multicast, binary).
    Serve(crate::serve::Args),
    /// Send a message to an echo endpoint and check the echo.
    Client(crate::client::Args),
    /// Application-level ping over an echo endpoint.
    Ping(crate::ping::Args),
    /// Load generator against any echo endpoint: closed loop, or open loop with --rate.
    Bench(crate::bench::Args),
    /// Merge the HdrHistogram logs of one or many `bench --hdr-log` runs into one report.
    Report(crate::report::Args),
    /// Name look-ups through the system resolver.
    Net(crate::net::Args),
    /// Show a running daemon's handlers and counters (netstat for echoplex).
    Status(crate::status::Args),
    /// Print a shell completion script (bash, zsh or fish).
    Completions(crate::shell::CompletionsArgs),
    /// Print the man page (roff).
    Manpage(crate::shell::ManpageArgs),
}

impl Cli {
    /// True when `serve --trace` asked for the loop's trace log.
    pub fn wants_trace(&self) -> bool {
        matches!(&self.command, Command::Serve(args) if args.trace)
    }

    /// True when `serve --reactors` asked for more than one loop: log lines
    /// then name the reactor they come from.
    pub fn runs_reactors(&self) -> bool {
        matches!(&self.command, Command::Serve(args)
            if args.reactors != crate::daemon::reactors::Count::Exactly(1))
    }

    /// Dispatches to the subcommand; `main` prints a failure and exits
    /// with the outcome's code.
    pub fn run(self) -> crate::error::Outcome {
        match self.command {
            Command::Serve(args) => crate::serve::run(args),
            Command::Client(args) => crate::client::run(args),
            Command::Ping(args) => crate::ping::run(args),
            Command::Bench(args) => crate::bench::run(args),
            Command::Report(args) => crate::report::run(args),
            Command::Net(args) => crate::net::run(args),
            Command::Status(args) => crate::status::run(args),
            Command::Completions(args) => crate::shell::completions(args, Cli::command()),
            Command::Manpage(args) => crate::shell::manpage(args, Cli::command()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_documents_its_exit_status() {
        let cli = Cli::command();
        assert!(cli
            .get_after_help()
            .is_some_and(|help| help.to_string().contains("Exit status")));
        for sub in cli.get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            assert!(
                help.contains("Exit status:"),
                "`echoplex help {}` does not say its exit status",
                sub.get_name()
            );
        }
    }
}
