//! The command line: one binary, one subcommand per tool. Each subcommand's
//! options live beside its code (`serve::Args`, `client::Args`, ...).

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::endpoint::{Kind, Tool};
use crate::error::Exit;

/// echoplex: every echo protocol, one mio::Poll loop per thread (one by default).
#[derive(Parser, Debug)]
#[command(
    name = "echoplex",
    version = env!("ECHOPLEX_VERSION"),
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
    /// The command line as parsed and documented: the derive's definition,
    /// plus what exists only at run time (the kinds and options tables in
    /// `serve --help`, so a new kind is listed without another edit) and
    /// one rule for every subcommand: a value may begin with '-', so
    /// `--idle-timeout -1` reaches its parser and is refused in words
    /// rather than by clap's tip to write `-- -1` (which fails too).
    pub fn full_command() -> clap::Command {
        let mut cmd = Cli::command();
        let names: Vec<String> = cmd
            .get_subcommands()
            .map(|sub| sub.get_name().to_string())
            .collect();
        for name in names {
            cmd = cmd.mut_subcommand(name, |sub| sub.allow_negative_numbers(true));
        }
        cmd.mut_subcommand("serve", |serve| {
            let exit_status = serve
                .get_after_help()
                .map(|help| help.to_string())
                .unwrap_or_default();
            serve.after_help(format!(
                "{}\n{exit_status}",
                Kind::help_section(Tool::Serve)
            ))
        })
    }

    /// Parses the process's arguments. `--help` and `--version` print and
    /// exit 0; a usage error prints one `echoplex: ...` line (the style of
    /// every other failure) and clap's hint, and exits 2.
    pub fn parse_or_exit() -> Cli {
        let parsed = Cli::full_command()
            .try_get_matches()
            .and_then(|matches| Cli::from_arg_matches(&matches));
        match parsed {
            Ok(cli) => cli,
            Err(err) if !err.use_stderr() => err.exit(),
            Err(err) => {
                let (line, hint) = usage_error(&err);
                eprintln!("echoplex: {line}");
                if let Some(hint) = hint {
                    eprintln!("{hint}");
                }
                std::process::exit(i32::from(Exit::Usage.code()));
            }
        }
    }

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
            Command::Completions(args) => crate::shell::completions(args, Cli::full_command()),
            Command::Manpage(args) => crate::shell::manpage(args, Cli::full_command()),
        }
    }
}

/// A clap error as one line and clap's hint (`For more information, try
/// '--help'.`): the `error: ` prefix, tips and the usage line dropped, a
/// list of missing arguments joined into the line, and numeric ranges
/// (`0 is not in 1..18446744073709551615`) said in words.
pub fn usage_error(err: &clap::Error) -> (String, Option<String>) {
    let text = err.render().to_string();
    let mut line = String::new();
    let mut hint = None;
    for raw in text.lines() {
        let trimmed = raw.trim();
        if let Some(first) = trimmed.strip_prefix("error: ") {
            line = first.trim_end_matches(':').to_string();
            if first.ends_with(':') {
                line.push(':');
            }
        } else if trimmed.starts_with("For more information") {
            hint = Some(trimmed.to_string());
        } else if trimmed.is_empty()
            || trimmed.starts_with("tip:")
            || trimmed.starts_with("Usage:")
            || trimmed.starts_with("note:")
        {
            continue;
        } else if !line.is_empty() && !line.contains("Usage") {
            // The indented list under "the following ... were not provided:"
            if !line.ends_with(':') {
                line.push(',');
            }
            line.push(' ');
            line.push_str(trimmed);
        }
    }
    // "invalid value 'x' for '[ENDPOINT]...': bad endpoint 'x': why": the
    // endpoint's own message already names it.
    if let Some(at) = line.find("': bad endpoint '") {
        line = line[at + 3..].to_string();
    }
    (range_in_words(&line), hint)
}

/// `N is not in A..B` / `N is not in A..=B` (clap's ranged parsers) ->
/// `N is not from A to B` or `N is less than A` when B is the type's limit.
fn range_in_words(line: &str) -> String {
    let Some(at) = line.find(" is not in ") else {
        return line.to_string();
    };
    let range = &line[at + " is not in ".len()..];
    let (low, high, inclusive) = match range.split_once("..=") {
        Some((low, high)) => (low, high, true),
        None => match range.split_once("..") {
            Some((low, high)) => (low, high, false),
            None => return line.to_string(),
        },
    };
    let (Ok(low), Ok(high)) = (low.parse::<i128>(), high.parse::<i128>()) else {
        return line.to_string();
    };
    let high = if inclusive { high } else { high - 1 };
    let words = if high >= i128::from(i64::MAX) - 1 {
        format!("must be at least {low}")
    } else {
        format!("must be from {low} to {high}")
    };
    let head = &line[..at];
    // "invalid value '0' for '--connections <N>': 0" -> "... <N>': must be ..."
    match head.rfind(": ") {
        Some(colon) => format!("{}: {words}", &head[..colon]),
        None => words,
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
