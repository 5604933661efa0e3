//! `echoplex net`: the tutorial's network look-ups (`gethostname`,
//! `gethostbyname_ex`, `gethostbyaddr`, `getfqdn`) through the operating
//! system's resolver.
//!
//! Each look-up retraces CPython's `socket` module: the same libc calls, with
//! the same arguments, in the same order, raising the same errors. That is
//! what makes the output equal to Python's on the same machine, including
//! its quirks (a reverse look-up accepts a host name, `getfqdn` falls back to
//! its argument). Nothing here speaks DNS; libc and its NSS modules do.

use std::fmt::Write as _;
use std::io::Write as _;

use clap::Subcommand;

use self::lookup::{
    getfqdn, gethostbyaddr, gethostbyname_ex, gethostname, idna_encode, ipv6_addresses,
};
use self::lookup::{HostEntry, NetError};
use crate::codec::pyrepr;
use crate::error::{Exit, Failure, Outcome};

mod lookup;

const AFTER_HELP: &str = "\
Output:
  hostname, fqdn   one line: the name, exactly as Python's print() shows it
  lookup, reverse  name, aliases and addresses, one per line; lists are
                   space-separated, \"(none)\" when empty. lookup adds an
                   \"addresses (IPv6):\" line from getaddrinfo(AF_INET6),
                   because gethostbyname_ex reports IPv4 only.
  --python         Python's repr of the result instead, e.g.
                   ('localhost', [], ['127.0.0.1']), no IPv6 line; errors
                   as Python's exception line, e.g.
                   socket.gaierror: [Errno -2] Name or service not known

Exit status:
  0  the look-up succeeded (fqdn, like getfqdn, falls back to the name)
  1  the look-up failed; the reason is on stderr, in words
  2  usage error";

/// Command-line arguments of `echoplex net`.
#[derive(clap::Args, Debug)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The look-up to run.
    #[command(subcommand)]
    pub command: NetCommand,
    /// Print Python's repr of the result (and Python's exception line on error).
    #[arg(long, global = true)]
    pub python: bool,
}

/// The look-ups of `echoplex net`, one per function of Python's `socket`.
#[derive(Subcommand, Debug)]
pub enum NetCommand {
    /// This machine's host name, like socket.gethostname().
    Hostname,
    /// Official name, aliases and IPv4 addresses of NAME, like socket.gethostbyname_ex(NAME).
    Lookup {
        /// Host name or IPv4 address.
        name: String,
    },
    /// Name, aliases and addresses of ADDR, like socket.gethostbyaddr(ADDR).
    Reverse {
        /// IPv4 or IPv6 address; a host name is resolved first, as Python does.
        addr: String,
    },
    /// Fully qualified domain name of NAME, like socket.getfqdn(NAME).
    Fqdn {
        /// Host name or address [default: this machine].
        name: Option<String>,
    },
}

/// Runs `echoplex net`; returns the process exit code.
pub fn run(args: Args) -> Outcome {
    let python = args.python;
    let result = match &args.command {
        NetCommand::Hostname => gethostname().map(|name| line(&name, python)),
        NetCommand::Fqdn { name } => {
            getfqdn(name.as_deref().unwrap_or("")).map(|name| line(&name, python))
        }
        NetCommand::Lookup { name } => gethostbyname_ex(name).map(|host| {
            if python {
                host.python_repr()
            } else {
                // gethostbyname_ex succeeded, so `name` encodes; an error
                // here would only mean "no IPv6 line".
                let v6 = idna_encode(name)
                    .map(|c| ipv6_addresses(&c))
                    .unwrap_or_default();
                host.human(Some(&v6))
            }
        }),
        NetCommand::Reverse { addr } => gethostbyaddr(addr).map(|host| {
            if python {
                host.python_repr()
            } else {
                host.human(None)
            }
        }),
    };
    match result {
        Ok(text) => emit(&text),
        Err(err) => {
            let message = if python {
                err.python()
            } else {
                describe(&args.command, &err)
            };
            Err(Failure::new(Exit::Failed, message))
        }
    }
}

/// Formats a single-name result: plain like print(), or its repr.
fn line(name: &str, python: bool) -> String {
    if python {
        format!("{}\n", pyrepr::str_repr(name))
    } else {
        format!("{name}\n")
    }
}

/// Writes `text` to stdout; a closed pipe or full disk is a failure too.
fn emit(text: &str) -> Outcome {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(Exit::Ok),
        Err(e) => {
            let why = format!("cannot write output: {}", crate::error::describe(&e));
            Err(Failure::new(Exit::Io, why))
        }
    }
}

/// The human error line: what was asked, and the resolver's words.
fn describe(command: &NetCommand, err: &NetError) -> String {
    let words = err.words();
    match command {
        NetCommand::Hostname => format!("gethostname failed: {words}"),
        NetCommand::Lookup { name } => {
            format!("lookup of {} failed: {words}", pyrepr::str_repr(name))
        }
        NetCommand::Fqdn { name } => {
            format!(
                "fqdn of {} failed: {words}",
                pyrepr::str_repr(name.as_deref().unwrap_or(""))
            )
        }
        NetCommand::Reverse { addr } => {
            // A gaierror can only come from the forward step Python takes
            // for input that is not an address literal; say so, or
            // "Name or service not known" for "999.1.1.1" reads as a bug.
            let hint = if matches!(err, NetError::Gai(_)) {
                " (not an IPv4 or IPv6 address, so it was resolved as a host name first)"
            } else {
                ""
            };
            format!(
                "reverse look-up of {} failed: {words}{hint}",
                pyrepr::str_repr(addr)
            )
        }
    }
}

/// The two ways `net` prints a host entry.
impl HostEntry {
    /// `repr()` of Python's triple, newline-terminated.
    fn python_repr(&self) -> String {
        let list = |items: &[String]| pyrepr::list(items.iter().map(|s| pyrepr::str_repr(s)));
        format!(
            "{}\n",
            pyrepr::tuple([
                pyrepr::str_repr(&self.name),
                list(&self.aliases),
                list(&self.addresses),
            ])
        )
    }

    /// One labelled line per field, plus the IPv6 line when given.
    fn human(&self, ipv6: Option<&[String]>) -> String {
        let mut out = format!(
            "name: {}\naliases: {}\naddresses: {}\n",
            self.name,
            human_list(&self.aliases),
            human_list(&self.addresses)
        );
        if let Some(v6) = ipv6 {
            let _ = writeln!(out, "addresses (IPv6): {}", human_list(v6));
        }
        out
    }
}

fn human_list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_owned()
    } else {
        items.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_repr_matches_python() {
        let host = HostEntry {
            name: "localhost".into(),
            aliases: vec![],
            addresses: vec!["127.0.0.1".into(), "127.0.0.2".into()],
        };
        assert_eq!(
            host.python_repr(),
            "('localhost', [], ['127.0.0.1', '127.0.0.2'])\n"
        );
    }
}
