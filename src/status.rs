//! `echoplex status`: ask a running daemon's admin socket for its handlers
//! and counters (see `services::admin` for the line protocol).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::error::describe;
use crate::services::admin::DEFAULT_ADMIN_PATH;

mod watch;

/// Options of `echoplex status`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The daemon's admin socket (`serve --admin PATH`).
    #[arg(long, value_name = "PATH", default_value = DEFAULT_ADMIN_PATH)]
    pub admin: PathBuf,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Seconds to wait for the daemon.
    #[arg(long, value_name = "SECS", default_value_t = 5.0)]
    pub timeout: f64,
    /// Redraw every SECS (default 1) until Ctrl-C, with rates per second
    /// beside the counters; in place on a terminal, else one block per SECS
    /// (with --json: one object per line, with "rates").
    #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1",
          value_parser = crate::probe::duration::positive_secs)]
    pub watch: Option<Duration>,
}

/// Prints the daemon's status; exit 1 if it cannot be reached.
pub fn run(args: Args) -> ExitCode {
    if let Some(every) = args.watch {
        let admin = args.admin.display().to_string();
        return match watch::run(every, args.json, &admin, || query(&args)) {
            Ok(code) => code,
            Err(message) => {
                eprintln!("echoplex: {message}");
                ExitCode::FAILURE
            }
        };
    }
    match query(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("echoplex: {message}");
            ExitCode::FAILURE
        }
    }
}

fn query(args: &Args) -> Result<String, String> {
    let path = args.admin.display();
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| format!("--timeout {} is not a positive duration", args.timeout))?;
    let fail = |err: std::io::Error| format!("admin socket {path}: {}", describe(&err));
    let mut stream = UnixStream::connect(&args.admin).map_err(|err| {
        format!(
            "cannot reach the admin socket {path}: {} (start the daemon with `echoplex serve --admin {path}`)",
            describe(&err)
        )
    })?;
    stream.set_read_timeout(Some(timeout)).map_err(fail)?;
    stream.set_write_timeout(Some(timeout)).map_err(fail)?;
    // --watch always reads JSON: its counters come with their names.
    let command = if args.json || args.watch.is_some() {
        "status json\n"
    } else {
        "status\n"
    };
    stream.write_all(command.as_bytes()).map_err(fail)?;
    let mut answer = String::new();
    for line in BufReader::new(stream).lines() {
        let line = line.map_err(fail)?;
        if line == "." {
            return Ok(answer);
        }
        answer.push_str(&line);
        answer.push('\n');
    }
    Err(format!(
        "admin socket {path}: the daemon closed the connection mid-answer"
    ))
}
