//! The one endpoint syntax shared by `serve`, `client`, `ping` and `bench`,
//! and the one table of endpoint kinds.
//!
//! `tcp://HOST:PORT`, `udp://HOST:PORT`, `multicast://GROUP:PORT`,
//! `binary://HOST:PORT`, `unix:PATH`, `unix-dgram:PATH` (`@name` = abstract),
//! each optionally followed by `?option&key=value` (see [`Options`]).
//!
//! Adding a kind: one entry in the `kinds!` table below, and one file in
//! `services/` whose `bind` `services::bind` calls for it (ARCHITECTURE.md,
//! "Adding a kind"). This file names no service, so the tools that only
//! speak to endpoints (client, ping, bench) build without the daemon.
//! Adding an option: one line in the `options!` table below.

use std::fmt;
use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

/// A tool of this binary that takes endpoints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tool {
    /// `echoplex serve`.
    Serve,
    /// `echoplex client`.
    Client,
    /// `echoplex ping`.
    Ping,
    /// `echoplex bench`.
    Bench,
}

impl Tool {
    /// The subcommand's name.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Serve => "serve",
            Tool::Client => "client",
            Tool::Ping => "ping",
            Tool::Bench => "bench",
        }
    }
}

/// How an endpoint is addressed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Address {
    /// `scheme://HOST:PORT`.
    Inet,
    /// `scheme:PATH` or `scheme:@abstract` (a Unix-domain socket).
    Path,
}

/// What an endpoint carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A byte stream (connections).
    Stream,
    /// Datagrams (no connections).
    Datagram,
}

/// What the server answers; tools pick their protocol from this.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ServerAnswer {
    /// The bytes sent, unchanged (RFC 862).
    Echo,
    /// `ack` to every datagram sent to the group.
    Ack,
    /// Whole struct records, decoded and re-encoded (`--format`).
    Records,
    /// HTTP answers (`metrics://`): served, never echoed.
    Http,
    /// HTTP requests described in JSON (or their body echoed with
    /// `echo_body=raw`), WebSocket messages echoed (`http://`).
    HttpEcho,
}

/// Everything the rest of the program may ask about a kind.
#[derive(Debug)]
pub struct KindInfo {
    /// The scheme as written (`tcp`, `unix-dgram`, ...); the only place a
    /// kind's name is spelled.
    pub scheme: &'static str,
    /// Path or network address.
    pub address: Address,
    /// Stream or datagram.
    pub transport: Transport,
    /// What the server answers.
    pub answer: ServerAnswer,
    /// The tools that accept this kind (`serve` accepts every kind).
    pub tools: &'static [Tool],
    /// With `serve --reactors N`, every reactor binds its own socket
    /// (SO_REUSEPORT; the kernel spreads the load); otherwise reactor 0
    /// alone serves it (a socket file, a group membership, admin-like).
    pub spread: bool,
}

/// Declares the kinds: the enum, `Kind::ALL` and `Kind::info` come from the
/// one list, so nothing can be left out of either.
macro_rules! kinds {
    ($( $(#[doc = $doc:expr])* $variant:ident => $info:expr; )*) => {
        /// The kinds of endpoint echoplex knows; `Kind::info` says what each is.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Kind {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl Kind {
            /// Every kind, in the order of the table (for parsing and help texts).
            pub const ALL: &'static [Kind] = &[$(Kind::$variant),*];

            /// The kind's doc comment in the table, for help texts.
            pub fn doc(self) -> &'static str {
                match self {
                    $( Kind::$variant => concat!($($doc, "\n"),*), )*
                }
            }

            /// The kind's line of the table.
            pub fn info(self) -> &'static KindInfo {
                match self {
                    $( Kind::$variant => {
                        static INFO: KindInfo = $info;
                        &INFO
                    } )*
                }
            }
        }
    };
}

// The table's own shorthand; nothing outside it uses these names bare.
use Address::{Inet, Path};
use ServerAnswer::{Ack, Echo, Http, HttpEcho, Records};
use Tool::{Bench, Client, Ping, Serve};
use Transport::{Datagram, Stream};

kinds! {
    /// `tcp://`: TCP echo.
    Tcp => KindInfo { scheme: "tcp", address: Inet, transport: Stream, answer: Echo,
        tools: &[Serve, Client, Ping, Bench], spread: true };
    /// `udp://`: UDP echo.
    Udp => KindInfo { scheme: "udp", address: Inet, transport: Datagram, answer: Echo,
        tools: &[Serve, Client, Ping, Bench], spread: true };
    /// `unix:`: Unix-domain stream echo.
    Unix => KindInfo { scheme: "unix", address: Path, transport: Stream, answer: Echo,
        tools: &[Serve, Client, Ping, Bench], spread: false };
    /// `unix-dgram:`: Unix-domain datagram echo.
    UnixDgram => KindInfo { scheme: "unix-dgram", address: Path, transport: Datagram, answer: Echo,
        tools: &[Serve, Client, Ping, Bench], spread: false };
    /// `multicast://`: join a group, answer `ack`.
    Multicast => KindInfo { scheme: "multicast", address: Inet, transport: Datagram, answer: Ack,
        tools: &[Serve, Client, Bench], spread: false };
    /// `binary://`: struct records over TCP.
    Binary => KindInfo { scheme: "binary", address: Inet, transport: Stream, answer: Records,
        tools: &[Serve, Client], spread: true };
    /// `http://`: HTTP/1.1 requests described in JSON; WebSocket echo on any path.
    Http => KindInfo { scheme: "http", address: Inet, transport: Stream, answer: HttpEcho,
        tools: &[Serve, Client, Ping, Bench], spread: true };
    /// `https://`: the HTTP echo and WebSocket of `http://` over TLS (ALPN http/1.1).
    Https => KindInfo { scheme: "https", address: Inet, transport: Stream, answer: HttpEcho,
        tools: &[Serve, Client, Ping, Bench], spread: true };
    /// `tls://`: TCP echo inside TLS.
    Tls => KindInfo { scheme: "tls", address: Inet, transport: Stream, answer: Echo,
        tools: &[Serve, Client, Ping, Bench], spread: true };
    /// `metrics://`: Prometheus metrics, health and status over HTTP/1.1.
    Metrics => KindInfo { scheme: "metrics", address: Inet, transport: Stream, answer: Http,
        tools: &[Serve, Client], spread: false };
}

impl Kind {
    /// The scheme as written in an endpoint (`tcp`, `unix-dgram`, ...).
    pub fn scheme(self) -> &'static str {
        self.info().scheme
    }

    /// Path kinds are written `scheme:PATH`, network kinds `scheme://HOST:PORT`.
    pub fn is_path(self) -> bool {
        self.info().address == Address::Path
    }

    /// TLS kinds: the bytes go inside a TLS session.
    pub fn is_tls(self) -> bool {
        matches!(self, Kind::Tls | Kind::Https)
    }

    /// Stream kinds carry a byte stream; the others carry datagrams.
    pub fn is_stream(self) -> bool {
        self.info().transport == Transport::Stream
    }

    /// True if `tool` takes endpoints of this kind.
    pub fn accepts(self, tool: Tool) -> bool {
        self.info().tools.contains(&tool)
    }

    /// The schemes `tool` accepts, as a list for people: `tcp, udp and unix`.
    pub fn schemes_for(tool: Tool) -> String {
        let schemes: Vec<&str> = Kind::ALL
            .iter()
            .filter(|kind| kind.accepts(tool))
            .map(|kind| kind.scheme())
            .collect();
        match schemes.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
            Some((last, _)) => (*last).to_string(),
            None => String::new(),
        }
    }

    /// How an endpoint of this kind is written: `tcp://HOST:PORT`,
    /// `unix:PATH|@NAME`.
    pub fn syntax(self) -> String {
        match self.info().address {
            Address::Inet => format!("{}://HOST:PORT", self.scheme()),
            Address::Path => format!("{}:PATH|@NAME", self.scheme()),
        }
    }

    /// The kinds and the endpoint options as a help section, from the two
    /// tables, so a new kind or option is listed without another edit.
    pub fn help_section(tool: Tool) -> String {
        // "`?uid=N`: accept only ..." -> ("?uid=N", "accept only ...")
        let split = |doc: &'static str| {
            let text = doc.lines().map(str::trim).collect::<Vec<_>>().join(" ");
            match text.split_once("`: ") {
                Some((head, rest)) => (head.trim_start_matches('`').to_string(), rest.to_string()),
                None => (String::new(), text),
            }
        };
        let kinds: Vec<Kind> = Kind::ALL
            .iter()
            .copied()
            .filter(|k| k.accepts(tool))
            .collect();
        let width = kinds.iter().map(|k| k.syntax().len()).max().unwrap_or(0);
        let mut out = String::from("Endpoint kinds (schemes in any case):\n");
        for kind in kinds {
            out.push_str(&format!(
                "  {:<width$}  {}\n",
                kind.syntax(),
                split(kind.doc()).1
            ));
        }
        out.push_str("Endpoint options (ENDPOINT?NAME&NAME=VALUE):\n");
        for (name, doc, applies) in Options::TABLE {
            let on: Vec<&str> = applies.iter().map(|k| k.scheme()).collect();
            let (head, what) = split(doc);
            let head = if head.is_empty() {
                format!("?{name}")
            } else {
                head
            };
            out.push_str(&format!(
                "  {head}  {} (on {})\n",
                what.trim_end_matches('.'),
                on.join(", ")
            ));
        }
        out
    }

    /// Schemes that name another kind: `ws://` is served as `http://`
    /// (WebSocket upgrades on any path), and printed as `http://`; to the
    /// tools it means WebSocket messages (the `bool`).
    fn alias(scheme: &str) -> Option<(Kind, bool)> {
        const ALIASES: &[(&str, Kind, bool)] =
            &[("ws", Kind::Http, true), ("wss", Kind::Https, true)];
        ALIASES
            .iter()
            .find(|(alias, ..)| *alias == scheme)
            .map(|&(_, kind, websocket)| (kind, websocket))
    }

    /// Kinds whose endpoints may name a path (`http://H:P/PATH`): the
    /// resource the tools ask for.
    pub fn takes_path(self) -> bool {
        matches!(self, Kind::Http | Kind::Https)
    }

    /// The scheme a tool's endpoint is written with: `ws` for WebSocket.
    fn tool_scheme(self, websocket: bool) -> &'static str {
        match (self, websocket) {
            (Kind::Http, true) => "ws",
            (Kind::Https, true) => "wss",
            _ => self.scheme(),
        }
    }

    fn all_schemes() -> String {
        let schemes: Vec<&str> = Kind::ALL.iter().map(|kind| kind.scheme()).collect();
        schemes.join(", ")
    }
}

/// A value an endpoint option may hold: a flag (`bool`: `?proxy`) or an
/// optional value (`Option<T>`: `?key=value`, `T: FromStr`).
pub trait OptionValue: Sized {
    /// Parses what follows `key` (`None` when there is no `=`).
    fn parse(value: Option<&str>) -> Result<Self, String>;
    /// How it is written back: `None` = not set, `Some("")` = a bare flag.
    fn show(&self) -> Option<String>;
}

impl OptionValue for bool {
    fn parse(value: Option<&str>) -> Result<bool, String> {
        match value {
            None => Ok(true),
            Some(other) => Err(format!("takes no value (got '{other}')")),
        }
    }

    fn show(&self) -> Option<String> {
        self.then(String::new)
    }
}

impl<T: FromStr + fmt::Display> OptionValue for Option<T> {
    fn parse(value: Option<&str>) -> Result<Option<T>, String> {
        match value {
            None | Some("") => Err("needs a value (key=value)".into()),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| format!("'{text}' is not a valid value")),
        }
    }

    fn show(&self) -> Option<String> {
        self.as_ref().map(|value| value.to_string())
    }
}

/// Declares the endpoint options: one line each, the field, its type, its
/// name after `?`, and the kinds it applies to.
macro_rules! options {
    ($( $(#[doc = $doc:expr])* $field:ident : $ty:ty = $name:literal for [$($kind:ident),+]; )*) => {
        /// The options of one endpoint (`?proxy&key=value`), parsed once for
        /// every tool. A field is `false`/`None` when the option is absent.
        #[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
        pub struct Options {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Options {
            /// Every option's name, in the order of the table.
            pub const NAMES: &'static [&'static str] = &[$($name),*];

            /// Every option: its name, its doc comment in the table, and the
            /// kinds it applies to (for help texts).
            pub const TABLE: &'static [(&'static str, &'static str, &'static [Kind])] =
                &[$(($name, concat!($($doc, "\n"),*), &[$(Kind::$kind),+])),*];

            fn set(&mut self, kind: Kind, key: &str, value: Option<&str>) -> Result<(), String> {
                match key {
                    $( $name => {
                        const KINDS: &[Kind] = &[$(Kind::$kind),+];
                        if !KINDS.contains(&kind) {
                            let names: Vec<&str> = KINDS.iter().map(|k| k.scheme()).collect();
                            return Err(format!(
                                "option '{key}' does not apply to {} (only to {})",
                                kind.scheme(),
                                names.join(", ")
                            ));
                        }
                        self.$field = OptionValue::parse(value)
                            .map_err(|why| format!("option '{key}' {why}"))?;
                        Ok(())
                    } )*
                    _ => Err(format!("unknown option '{key}' (known: {})", Self::NAMES.join(", "))),
                }
            }

            /// `(name, value)` of every option set, `value` empty for a flag.
            pub fn set_ones(&self) -> Vec<(&'static str, String)> {
                let mut out = Vec::new();
                $( if let Some(value) = OptionValue::show(&self.$field) {
                    out.push(($name, value));
                } )*
                out
            }
        }
    };
}

options! {
    /// `?proxy`: every connection begins with a PROXY protocol header (v1 or v2).
    proxy: bool = "proxy" for [Tcp, Binary, Unix, Http, Https, Tls];
    /// `?uid=N`: accept only connections from user N (`SO_PEERCRED`); the
    /// check an abstract `unix:@name`, which has no file mode, needs.
    uid: Option<u32> = "uid" for [Unix];
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

/// The longest Unix socket path or abstract name: `sun_path` is 108 bytes
/// on Linux, and a path's trailing NUL or a name's leading NUL takes one.
const SUN_PATH_MAX: usize = 107;

/// A parsed endpoint such as `tcp://127.0.0.1:10000`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    /// The scheme.
    pub kind: Kind,
    /// The address or path.
    pub target: Target,
    /// What followed `?`.
    pub options: Options,
    /// http:// and ws://: what the tools ask for (path, query, WebSocket).
    pub resource: Resource,
}

/// What the tools ask an HTTP endpoint for: `http://H:P/PATH?QUERY` (the
/// query's items that are not endpoint options) and whether the scheme
/// was `ws://`. Serving ignores it (`with_addr` drops it).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Resource {
    /// The path as written, from its `/` (none: `/`).
    pub path: Option<String>,
    /// Query items that are no endpoint option, in order (`echo_code=404`).
    pub query: Vec<String>,
    /// `ws://`: WebSocket messages rather than HTTP requests.
    pub websocket: bool,
}

impl Resource {
    /// The request target: the path (`/` when none) and the query.
    pub fn target(&self) -> String {
        let mut target = self.path.clone().unwrap_or_else(|| "/".to_string());
        for (at, item) in self.query.iter().enumerate() {
            target.push(if at == 0 { '?' } else { '&' });
            target.push_str(item);
        }
        target
    }

    /// True when nothing beyond scheme and address was written.
    pub fn is_empty(&self) -> bool {
        self.path.is_none() && self.query.is_empty()
    }
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
            fail(&format!(
                "expected SCHEME://HOST:PORT or unix:PATH (schemes: {})",
                Kind::all_schemes()
            ))
        })?;
        let lower = scheme.to_ascii_lowercase();
        let (kind, websocket) = Kind::ALL
            .iter()
            .copied()
            .find(|k| k.scheme() == lower)
            .map(|kind| (kind, false))
            .or_else(|| Kind::alias(&lower))
            .ok_or_else(|| {
                fail(&format!(
                    "unknown scheme '{scheme}' (known: {})",
                    Kind::all_schemes()
                ))
            })?;
        // Options follow the first '?': a path with a '?' in it cannot be
        // served, which is the price of one syntax for every kind.
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let mut resource = Resource {
            websocket,
            ..Resource::default()
        };
        let target = match kind.info().address {
            Address::Path => {
                // Accept `unix://path` too, as socat users type it.
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(fail("empty path"));
                }
                // Refused here, so every tool says so the same way (exit 2),
                // rather than serve failing to bind (exit 1).
                let bytes = path.strip_prefix('@').unwrap_or(path).len();
                if bytes > SUN_PATH_MAX {
                    return Err(fail(&format!(
                        "{bytes} bytes is too long for a Unix socket address (at most {SUN_PATH_MAX})"
                    )));
                }
                match path.strip_prefix('@') {
                    Some("") => return Err(fail("empty abstract name after '@'")),
                    Some(name) => Target::Abstract(name.to_string()),
                    None => Target::Path(PathBuf::from(path)),
                }
            }
            Address::Inet => {
                let mut hostport = rest
                    .strip_prefix("//")
                    .ok_or_else(|| fail(&format!("expected {scheme}://HOST:PORT")))?;
                if let Some(at) = hostport.find('/').filter(|_| kind.takes_path()) {
                    let path = &hostport[at..];
                    if path.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
                        return Err(fail("a path may not hold spaces, control bytes or '#'"));
                    }
                    resource.path = Some(path.to_string());
                    hostport = &hostport[..at];
                }
                let (host, port) = split_host_port(hostport).map_err(|why| fail(&why))?;
                // A literal that is no group is a typo, refused like one
                // (exit 2) rather than found when serve binds (exit 1).
                // Names are resolved, and checked, later.
                if kind == Kind::Multicast {
                    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
                        if !(ip.is_ipv4() && ip.is_multicast()) {
                            return Err(fail(&format!(
                                "{ip} is not a multicast group (IPv4, 224.0.0.0/4)"
                            )));
                        }
                    }
                }
                Target::Inet { host, port }
            }
        };
        let mut options = Options::default();
        for item in query.into_iter().flat_map(|query| query.split('&')) {
            if item.is_empty() {
                continue;
            }
            let (key, value) = match item.split_once('=') {
                Some((key, value)) => (key, Some(value)),
                None => (item, None),
            };
            // On a kind with a path, what is no option is the request's.
            if kind.takes_path() && !Options::NAMES.contains(&key) {
                if item.bytes().any(|b| b <= b' ' || b == 0x7f || b == b'#') {
                    return Err(fail("a query may not hold spaces, control bytes or '#'"));
                }
                resource.query.push(item.to_string());
                continue;
            }
            options.set(kind, key, value).map_err(|why| fail(&why))?;
        }
        Ok(Endpoint {
            kind,
            target,
            options,
            resource,
        })
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

/// A failed look-up in our words: std says "failed to lookup address
/// information: " and then getaddrinfo's own text.
fn unresolved(host: &str, err: &io::Error) -> io::Error {
    let text = err.to_string();
    let why = if err.raw_os_error().is_some() {
        crate::error::describe(err)
    } else if text.contains("Temporary failure") || text.contains("Try again") {
        "the resolver did not answer (try again later)".to_string()
    } else if text.contains("not known") || text.contains("No address associated") {
        "no such host".to_string()
    } else {
        text.rsplit(": ").next().unwrap_or(&text).to_lowercase()
    };
    io::Error::new(err.kind(), format!("cannot resolve {host}: {why}"))
}

impl Endpoint {
    /// Resolves an `Inet` target to socket addresses, through the system resolver.
    pub fn socket_addrs(&self) -> io::Result<Vec<SocketAddr>> {
        match &self.target {
            Target::Inet { host, port } => {
                let addrs: Vec<SocketAddr> = (host.as_str(), *port)
                    .to_socket_addrs()
                    .map_err(|err| unresolved(host, &err))?
                    .collect();
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

    /// An endpoint without options.
    pub fn new(kind: Kind, target: Target) -> Endpoint {
        Endpoint {
            kind,
            target,
            options: Options::default(),
            resource: Resource::default(),
        }
    }

    /// The same endpoint (kind, options) at a concrete address (to print
    /// real ports); what a tool would ask for (path, `ws://`) is dropped.
    pub fn with_addr(&self, addr: SocketAddr) -> Endpoint {
        Endpoint {
            kind: self.kind,
            target: Target::Inet {
                host: addr.ip().to_string(),
                port: addr.port(),
            },
            options: self.options.clone(),
            resource: Resource::default(),
        }
    }

    /// `Ok` if `tool` takes this kind, else the line to print (a usage error):
    /// `cannot ping multicast://...: ping speaks tcp, udp, unix, unix-dgram and tls`.
    pub fn check_tool(&self, tool: Tool) -> Result<(), String> {
        if self.kind.accepts(tool) {
            return Ok(());
        }
        let name = tool.name();
        Err(format!(
            "cannot {name} {self}: {name} speaks {}",
            Kind::schemes_for(tool)
        ))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = self.kind.tool_scheme(self.resource.websocket);
        match &self.target {
            Target::Inet { host, port } if host.contains(':') => {
                write!(f, "{scheme}://[{host}]:{port}")
            }
            Target::Inet { host, port } => write!(f, "{scheme}://{host}:{port}"),
            Target::Path(path) => write!(f, "{scheme}:{}", path.display()),
            Target::Abstract(name) => write!(f, "{scheme}:@{name}"),
        }?;
        if let Some(path) = &self.resource.path {
            f.write_str(path)?;
        }
        let options = self.options.set_ones().into_iter().map(|(name, value)| {
            if value.is_empty() {
                name.to_string()
            } else {
                format!("{name}={value}")
            }
        });
        for (at, item) in options
            .chain(self.resource.query.iter().cloned())
            .enumerate()
        {
            f.write_str(if at == 0 { "?" } else { "&" })?;
            f.write_str(&item)?;
        }
        Ok(())
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
            "http://127.0.0.1:8080?proxy",
            "http://127.0.0.1:8080/a/b?proxy&echo_code=404&x",
            "ws://[::1]:8080/chat",
        ] {
            let endpoint = parse(text).expect(text);
            assert_eq!(endpoint.to_string(), text);
        }
        // ws:// is served as http:// and printed so (serving prints the
        // bound address); a tool keeps the scheme, the path and the query.
        let ws = parse("WS://127.0.0.1:1/p?q=1").unwrap();
        assert_eq!(ws.kind, Kind::Http);
        assert!(ws.resource.websocket);
        assert_eq!(ws.resource.target(), "/p?q=1");
        let bound = ws.with_addr("127.0.0.1:1".parse().unwrap());
        assert_eq!(bound.to_string(), "http://127.0.0.1:1");
        assert_eq!(parse("http://h:1").unwrap().resource.target(), "/");
        // A path only where a kind takes one; never spaces or fragments.
        assert!(parse("tcp://h:1/x").is_err());
        assert!(parse("http://h:1/a#b").is_err());
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
            ("gopher://a:1", "unknown scheme 'gopher'"),
            ("tcp://a:99999", "not a number"),
            ("tcp://::1:80", "bracketed"),
            ("tcp://:80", "empty host"),
            ("unix:", "empty path"),
            ("unix:@", "empty abstract"),
            ("nothing", "expected SCHEME"),
            ("tcp://[::1:80", "missing ']'"),
            ("multicast://10.0.0.1:5000", "not a multicast group"),
            (
                &format!("unix:/{}", "x".repeat(107)),
                "108 bytes is too long",
            ),
            (
                &format!("unix-dgram:@{}", "x".repeat(108)),
                "108 bytes is too long",
            ),
            ("multicast://[ff02::1]:5000", "not a multicast group (IPv4"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
        // A group by name is resolved (and checked) later.
        assert!(parse("multicast://localhost:5000").is_ok());
        // The longest that fit.
        assert!(parse(&format!("unix:/{}", "x".repeat(106))).is_ok());
        assert!(parse(&format!("unix:@{}", "x".repeat(107))).is_ok());
    }

    #[test]
    fn the_table_names_each_kind_once() {
        let mut schemes: Vec<&str> = Kind::ALL.iter().map(|k| k.scheme()).collect();
        let count = schemes.len();
        schemes.sort_unstable();
        schemes.dedup();
        assert_eq!(schemes.len(), count, "a scheme is spelled twice");
        for kind in Kind::ALL {
            assert!(kind.accepts(Tool::Serve), "serve takes every kind");
            let text = match kind.info().address {
                Address::Inet => format!("{}://host:1", kind.scheme()),
                Address::Path => format!("{}:/x", kind.scheme()),
            };
            assert_eq!(parse(&text).unwrap().kind, *kind);
        }
        assert_eq!(
            Kind::schemes_for(Tool::Ping),
            "tcp, udp, unix, unix-dgram, http, https and tls"
        );
    }

    #[test]
    fn options_parse_print_back_and_name_what_is_wrong() {
        let endpoint = parse("tcp://127.0.0.1:1?proxy").unwrap();
        assert!(endpoint.options.proxy);
        assert_eq!(endpoint.to_string(), "tcp://127.0.0.1:1?proxy");
        assert!(parse("unix:@x?proxy").unwrap().options.proxy);
        assert!(!parse("binary://h:1?").unwrap().options.proxy);
        let bound = endpoint.with_addr("127.0.0.1:9".parse().unwrap());
        assert_eq!(bound.to_string(), "tcp://127.0.0.1:9?proxy");
        for (text, why) in [
            ("tcp://a:1?nope", "unknown option 'nope'"),
            ("udp://a:1?proxy", "option 'proxy' does not apply to udp"),
            (
                "unix-dgram:/x?proxy",
                "option 'proxy' does not apply to unix-dgram",
            ),
            ("tcp://a:1?proxy=1", "option 'proxy' takes no value"),
            ("tcp://a:1?proxy&bad=2", "unknown option 'bad'"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn tools_refuse_kinds_they_do_not_speak() {
        let multicast = parse("multicast://224.1.1.1:9").unwrap();
        assert!(multicast.check_tool(Tool::Client).is_ok());
        let err = multicast.check_tool(Tool::Ping).unwrap_err();
        assert_eq!(
            err,
            "cannot ping multicast://224.1.1.1:9: ping speaks tcp, udp, unix, unix-dgram, http, https and tls"
        );
        // wss:// is https:// with WebSocket messages, and keeps its path.
        let wss = parse("wss://h:1/chat").unwrap();
        assert_eq!(wss.kind, Kind::Https);
        assert!(wss.resource.websocket);
        assert_eq!(wss.to_string(), "wss://h:1/chat");
        assert!(wss.check_tool(Tool::Bench).is_ok());
        assert!(parse("binary://h:1")
            .unwrap()
            .check_tool(Tool::Bench)
            .is_err());
    }
}
