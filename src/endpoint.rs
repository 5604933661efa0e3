//! The one endpoint syntax shared by `serve`, `client`, `ping` and `bench`.
//!
//! `tcp://HOST:PORT`, `udp://HOST:PORT`, `multicast://GROUP:PORT`,
//! `binary://HOST:PORT`, `unix:PATH`, `unix-dgram:PATH` (`@name` = abstract).

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// The kinds of endpoint echoplex knows. The scheme string is the only
/// place a kind's name is spelled; `services::bind` maps a kind to its module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `tcp://`: TCP echo.
    Tcp,
    /// `udp://`: UDP echo.
    Udp,
    /// `unix:`: Unix-domain stream echo.
    Unix,
    /// `unix-dgram:`: Unix-domain datagram echo.
    UnixDgram,
    /// `multicast://`: join a group, answer `ack`.
    Multicast,
    /// `binary://`: struct records over TCP.
    Binary,
}

impl Kind {
    /// Every kind, for parsing and for help texts.
    pub const ALL: [Kind; 6] = [
        Kind::Tcp,
        Kind::Udp,
        Kind::Unix,
        Kind::UnixDgram,
        Kind::Multicast,
        Kind::Binary,
    ];

    /// The scheme as written in an endpoint (`tcp`, `unix-dgram`, ...).
    pub fn scheme(self) -> &'static str {
        match self {
            Kind::Tcp => "tcp",
            Kind::Udp => "udp",
            Kind::Unix => "unix",
            Kind::UnixDgram => "unix-dgram",
            Kind::Multicast => "multicast",
            Kind::Binary => "binary",
        }
    }

    /// Path kinds are written `scheme:PATH`, network kinds `scheme://HOST:PORT`.
    pub fn is_path(self) -> bool {
        matches!(self, Kind::Unix | Kind::UnixDgram)
    }

    /// Stream kinds carry a byte stream; the others carry datagrams.
    pub fn is_stream(self) -> bool {
        matches!(self, Kind::Tcp | Kind::Unix | Kind::Binary)
    }
}

/// Where an endpoint lives.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// `HOST:PORT`; HOST kept as written so names resolve at use time.
    Inet {
        /// The host as written (address or name), without brackets.
        host: String,
        /// The port; 0 lets the kernel choose.
        port: u16,
    },
    /// A file-system path for a Unix-domain socket.
    Path(PathBuf),
    /// A Linux abstract-namespace name (written `@name`), without the `@`.
    Abstract(String),
}

/// A parsed endpoint such as `tcp://127.0.0.1:10000`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The scheme.
    pub kind: Kind,
    /// The address or path.
    pub target: Target,
}

/// Why an endpoint string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

impl FromStr for Endpoint {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let fail = |why: &str| ParseError(format!("bad endpoint '{text}': {why}"));
        let (scheme, rest) = text.split_once(':').ok_or_else(|| {
            fail("expected SCHEME://HOST:PORT or unix:PATH (schemes: tcp, udp, unix, unix-dgram, multicast, binary)")
        })?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.scheme() == scheme)
            .ok_or_else(|| {
                fail(&format!(
                    "unknown scheme '{scheme}' (known: tcp, udp, unix, unix-dgram, multicast, binary)"
                ))
            })?;
        let target = if kind.is_path() {
            // Accept `unix://path` too, as socat users type it.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(fail("empty path"));
            }
            match path.strip_prefix('@') {
                Some("") => return Err(fail("empty abstract name after '@'")),
                Some(name) => Target::Abstract(name.to_string()),
                None => Target::Path(PathBuf::from(path)),
            }
        } else {
            let hostport = rest
                .strip_prefix("//")
                .ok_or_else(|| fail(&format!("expected {scheme}://HOST:PORT")))?;
            let (host, port) = split_host_port(hostport).map_err(|why| fail(&why))?;
            Target::Inet { host, port }
        };
        Ok(Endpoint { kind, target })
    }
}

/// Splits `HOST:PORT`, `[V6]:PORT`; the host keeps no brackets.
fn split_host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(bracketed) = text.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("missing ']' after IPv6 address")?;
        let port = after.strip_prefix(':').ok_or("expected :PORT after ']'")?;
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or("expected HOST:PORT")?;
        if host.contains(':') {
            return Err("IPv6 addresses must be bracketed, as in [::1]:PORT".into());
        }
        (host, port)
    };
    if host.is_empty() {
        return Err("empty host".into());
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("port '{port}' is not a number from 0 to 65535"))?;
    Ok((host.to_string(), port))
}

impl Endpoint {
    /// Resolves an `Inet` target to socket addresses, through the system resolver.
    pub fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        match &self.target {
            Target::Inet { host, port } => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port).to_socket_addrs()?.collect();
                if addrs.is_empty() {
                    return Err(io::Error::new(
                        io::ErrorKind::NotFound,
                        format!("{host} has no address"),
                    ));
                }
                Ok(addrs)
            }
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{self} is not a network endpoint"),
            )),
        }
    }

    /// The first address the resolver gives.
    pub fn socket_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.socket_addrs()?[0])
    }

    /// The same kind of endpoint at a concrete address (to print real ports).
    pub fn with_addr(&self, addr: SocketAddr) -> Endpoint {
        Endpoint {
            kind: self.kind,
            target: Target::Inet {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.kind.scheme();
        match &self.target {
            Target::Inet { host, port } if host.contains(':') => {
                write!(f, "{scheme}://[{host}]:{port}")
            }
            Target::Inet { host, port } => write!(f, "{scheme}://{host}:{port}"),
            Target::Path(path) => write!(f, "{scheme}:{}", path.display()),
            Target::Abstract(name) => write!(f, "{scheme}:@{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Endpoint, ParseError> {
        text.parse()
    }

    #[test]
    fn parses_every_kind_and_prints_it_back() {
        for text in [
            "tcp://127.0.0.1:10000",
            "udp://[::1]:0",
            "unix:./echoplex.sock",
            "unix-dgram:/tmp/x.sock",
            "unix:@abstract",
            "multicast://224.10.10.10:10000",
            "binary://localhost:10001",
        ] {
            let endpoint = parse(text).expect(text);
            assert_eq!(endpoint.to_string(), text);
        }
    }

    #[test]
    fn host_and_port_are_split_right() {
        let endpoint = parse("udp://[::1]:7").unwrap();
        assert_eq!(
            endpoint.target,
            Target::Inet {
                host: "::1".into(),
                port: 7
            }
        );
        assert_eq!(
            parse("unix:@x").unwrap().target,
            Target::Abstract("x".into())
        );
    }

    #[test]
    fn rejects_bad_input_with_a_reason() {
        for (text, why) in [
            ("tcp:127.0.0.1:1", "expected tcp://HOST:PORT"),
            ("http://a:1", "unknown scheme 'http'"),
            ("tcp://a:99999", "not a number"),
            ("tcp://::1:80", "bracketed"),
            ("tcp://:80", "empty host"),
            ("unix:", "empty path"),
            ("unix:@", "empty abstract"),
            ("nothing", "expected SCHEME"),
            ("tcp://[::1:80", "missing ']'"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
