//! `echoplex status`: ask a running daemon's admin socket for its handlers
//! and counters (see `services::admin` for the line protocol).

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{describe, Exit, Failure, Outcome};
use crate::services::admin::DEFAULT_ADMIN_PATH;

mod watch;

/// Options of `echoplex status`.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Exit status:
  0    printed the daemon's status
  2    usage error (bad option or --timeout)
  3    no daemon answered: no such socket, refused, no answer within \
--timeout (not a `serve --admin` socket?), or closed at once
  5    another I/O error (the daemon closed the connection mid-answer)
  130  --watch ended by Ctrl-C")]
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

/// Prints the daemon's status. Exit codes (the table every subcommand
/// shares): 0 ok, 2 usage, 3 unreachable (no such socket, refused, or no
/// admin answer within the timeout), 5 other I/O, 130 --watch interrupted.
pub fn run(args: Args) -> Outcome {
    if let Some(every) = args.watch {
        let admin = args.admin.display().to_string();
        return watch::run(every, args.json, &admin, || query(&args));
    }
    let text = query(&args)?;
    print!("{text}");
    Ok(Exit::Ok)
}

fn is_timeout(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

fn query(args: &Args) -> Result<String, Failure> {
    let path = args.admin.display();
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero())
        .ok_or_else(|| {
            Failure::usage(format!(
                "--timeout {} is not a positive duration",
                args.timeout
            ))
        })?;
    let secs = timeout.as_secs_f64();
    let fail =
        |err: io::Error| Failure::new(Exit::Io, format!("admin socket {path}: {}", describe(&err)));
    let mut stream = UnixStream::connect(&args.admin).map_err(|err| {
        Failure::new(
            Exit::Unreachable,
            format!(
                "cannot reach the admin socket {path}: {} (start the daemon with `echoplex serve --admin {path}`)",
                describe(&err)
            ),
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
    let unanswered = || {
        Failure::new(
            Exit::Unreachable,
            format!(
                "admin socket {path}: no answer within {secs} s: is this a `serve --admin` socket?"
            ),
        )
    };
    stream.write_all(command.as_bytes()).map_err(|err| {
        if is_timeout(&err) {
            unanswered()
        } else {
            fail(err)
        }
    })?;
    let mut answer = String::new();
    let mut lines = 0;
    for line in BufReader::new(stream).lines() {
        let line = match line {
            Ok(line) => line,
            // No `.` within the timeout: whatever is there (an echo server
            // sends our command back) does not speak the admin protocol.
            Err(err) if is_timeout(&err) => return Err(unanswered()),
            Err(err) if lines == 0 && is_closed(&err) => return Err(closed_at_once(&path)),
            Err(err) => return Err(fail(err)),
        };
        if line == "." {
            return Ok(answer);
        }
        lines += 1;
        answer.push_str(&line);
        answer.push('\n');
    }
    if lines == 0 {
        return Err(closed_at_once(&path));
    }
    Err(Failure::new(
        Exit::Io,
        format!("admin socket {path}: the daemon closed the connection mid-answer"),
    ))
}

fn is_closed(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe
    )
}

/// The daemon accepted and closed at once: what it does when it has no
/// descriptor left to serve the connection with.
fn closed_at_once(path: &dyn std::fmt::Display) -> Failure {
    Failure::new(
        Exit::Unreachable,
        format!(
            "admin socket {path}: the daemon closed the connection without answering; \
             it may be out of file descriptors (see its log)"
        ),
    )
}
