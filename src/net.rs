//! `echoplex net`: the tutorial's network look-ups (`gethostname`,
//! `gethostbyname_ex`, `gethostbyaddr`, `getfqdn`) through the operating
//! system's resolver.
//!
//! Each look-up retraces CPython's `socket` module: the same libc calls, with
//! the same arguments, in the same order, raising the same errors. That is
//! what makes the output equal to Python's on the same machine, including
//! its quirks (a reverse look-up accepts a host name, `getfqdn` falls back to
//! its argument). Nothing here speaks DNS; libc and its NSS modules do.

use std::ffi::{CStr, CString};
use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;

use clap::Subcommand;
use libc::{c_char, c_int, c_void, hostent, size_t, socklen_t};

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

/// Exit status of a failed look-up; clap uses 2 for usage errors.
const EXIT_LOOKUP_FAILED: u8 = 1;

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
pub fn run(args: Args) -> ExitCode {
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
            // Nothing sensible is left to do if stderr is gone too.
            let _ = writeln!(std::io::stderr(), "echoplex: {message}");
            ExitCode::from(EXIT_LOOKUP_FAILED)
        }
    }
}

/// Formats a single-name result: plain like print(), or its repr.
fn line(name: &str, python: bool) -> String {
    if python {
        format!("{}\n", py_repr(name))
    } else {
        format!("{name}\n")
    }
}

/// Writes `text` to stdout; a closed pipe or full disk is a failure too.
fn emit(text: &str) -> ExitCode {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "echoplex: cannot write output: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The human error line: what was asked, and the resolver's words.
fn describe(command: &NetCommand, err: &NetError) -> String {
    let words = err.words();
    match command {
        NetCommand::Hostname => format!("gethostname failed: {words}"),
        NetCommand::Lookup { name } => format!("lookup of {} failed: {words}", py_repr(name)),
        NetCommand::Fqdn { name } => {
            format!(
                "fqdn of {} failed: {words}",
                py_repr(name.as_deref().unwrap_or(""))
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
            format!("reverse look-up of {} failed: {words}{hint}", py_repr(addr))
        }
    }
}

/// Why a look-up failed, shaped like the exception Python raises.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NetError {
    /// `socket.gaierror`: a getaddrinfo error code.
    Gai(c_int),
    /// `socket.herror`: the h_errno of a gethostby*_r call.
    Host(c_int),
    /// `OSError` with an errno.
    Os(c_int),
    /// `OSError` with only a message: CPython's own checks.
    Message(&'static str),
    /// `UnicodeError` from Python's IDNA codec. Not an `OSError`, so
    /// getfqdn lets it through instead of falling back.
    Idna(&'static str),
    /// Input Python would accept but this tool cannot treat the same way.
    Unsupported(&'static str),
}

impl NetError {
    /// The reason in words, as the C library or Python states it.
    fn words(&self) -> String {
        match self {
            NetError::Gai(code) => gai_strerror(*code),
            NetError::Host(code) => hstrerror(*code),
            NetError::Os(errno) => strerror(*errno),
            NetError::Idna(m) => format!("invalid host name: {m}"),
            NetError::Message(m) | NetError::Unsupported(m) => (*m).to_owned(),
        }
    }

    /// The last line of the traceback Python would print.
    fn python(&self) -> String {
        let words = self.words();
        match self {
            NetError::Gai(code) => format!("socket.gaierror: [Errno {code}] {words}"),
            NetError::Host(code) => format!("socket.herror: [Errno {code}] {words}"),
            NetError::Os(errno) => format!("OSError: [Errno {errno}] {words}"),
            NetError::Message(_) => format!("OSError: {words}"),
            NetError::Idna(m) => {
                format!("UnicodeError: encoding with 'idna' codec failed (UnicodeError: {m})")
            }
            NetError::Unsupported(_) => words,
        }
    }

    /// Whether Python's `except socket.error` (that is, OSError) catches it.
    fn is_os_error(&self) -> bool {
        !matches!(self, NetError::Idna(_) | NetError::Unsupported(_))
    }
}

/// A host entry as Python returns it: (name, aliases, addresses).
#[derive(Debug, Clone, PartialEq, Eq)]
struct HostEntry {
    name: String,
    aliases: Vec<String>,
    addresses: Vec<String>,
}

impl HostEntry {
    /// `repr()` of Python's triple, newline-terminated.
    fn python_repr(&self) -> String {
        format!(
            "({}, {}, {})\n",
            py_repr(&self.name),
            py_repr_list(&self.aliases),
            py_repr_list(&self.addresses)
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

// ---------------------------------------------------------------------------
// Python's socket functions, step by step.

/// `socket.gethostname()`.
fn gethostname() -> Result<String, NetError> {
    sys_gethostname()
}

/// `socket.gethostbyname_ex(name)`: resolve for IPv4 with getaddrinfo (which
/// is what reports unknown names), then ask gethostbyname_r for the entry.
fn gethostbyname_ex(name: &str) -> Result<HostEntry, NetError> {
    let name = idna_encode(name)?;
    let addr = setipaddr(&name, libc::AF_INET)?;
    let host = sys_gethostbyname(&name)?;
    host_common(host, addr.family())
}

/// `socket.gethostbyaddr(name)`: turn `name` into one address (literal, or
/// the first the resolver gives), then reverse-resolve that address.
fn gethostbyaddr(name: &str) -> Result<HostEntry, NetError> {
    let name = idna_encode(name)?;
    let addr = setipaddr(&name, libc::AF_UNSPEC)?;
    let host = sys_gethostbyaddr(addr)?;
    host_common(host, addr.family())
}

/// `socket.getfqdn(name)`: the first name of gethostbyaddr's answer (official
/// name, then aliases) that contains a dot, else the official name; on a
/// resolver error, the name itself.
fn getfqdn(name: &str) -> Result<String, NetError> {
    let name = name.trim_matches(py_isspace);
    let name = if name.is_empty() || name == "0.0.0.0" || name == "::" {
        gethostname()?
    } else {
        name.to_owned()
    };
    match gethostbyaddr(&name) {
        Ok(host) => Ok(std::iter::once(&host.name)
            .chain(&host.aliases)
            .find(|n| n.contains('.'))
            .unwrap_or(&host.name)
            .clone()),
        Err(err) if err.is_os_error() => Ok(name),
        Err(err) => Err(err),
    }
}

/// CPython's `gethost_common`: reject an entry of the wrong family, format
/// the addresses.
fn host_common(host: RawHost, family: c_int) -> Result<HostEntry, NetError> {
    if host.addrtype != family {
        return Err(NetError::Os(libc::EAFNOSUPPORT));
    }
    Ok(HostEntry {
        name: host.name,
        aliases: host.aliases,
        addresses: host.addrs.into_iter().map(format_addr).collect(),
    })
}

/// Python encodes host names with its `idna` codec before any call. ASCII
/// names only have their labels checked; other names would need nameprep
/// and punycode, which this tool does not reimplement.
fn idna_encode(name: &str) -> Result<CString, NetError> {
    if !name.is_ascii() {
        return Err(NetError::Unsupported(
            "non-ASCII host names are not supported; pass the xn-- (punycode) form",
        ));
    }
    if !name.is_empty() {
        let labels: Vec<&str> = name.split('.').collect();
        let (last, init) = labels.split_last().unwrap_or((&"", &[]));
        if init.iter().any(|l| l.is_empty() || l.len() >= 64) {
            return Err(NetError::Idna("label empty or too long"));
        }
        if last.len() >= 64 {
            return Err(NetError::Idna("label too long"));
        }
    }
    CString::new(name).map_err(|_| NetError::Unsupported("host name contains a NUL byte"))
}

/// An IP address, as raw network-order bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    fn family(self) -> c_int {
        match self {
            Addr::V4(_) => libc::AF_INET,
            Addr::V6(_) => libc::AF_INET6,
        }
    }
}

/// CPython's `setipaddr`: the empty name is the wildcard address, the
/// broadcast names are special, literals skip the resolver, and anything
/// else takes getaddrinfo's first answer.
fn setipaddr(name: &CStr, family: c_int) -> Result<Addr, NetError> {
    let bytes = name.to_bytes();
    if bytes.is_empty() {
        let answers =
            sys_getaddrinfo(None, Some(c"0"), family, libc::SOCK_DGRAM, libc::AI_PASSIVE)?;
        return match answers.as_slice() {
            [Some(addr)] => Ok(*addr),
            [None] | [] => Err(NetError::Message("unsupported address family")),
            // Python's message, grammar included.
            [_, _, ..] => Err(NetError::Message("wildcard resolved to multiple address")),
        };
    }
    if bytes == b"255.255.255.255" || bytes == b"<broadcast>" {
        if family != libc::AF_INET && family != libc::AF_UNSPEC {
            return Err(NetError::Message("address family mismatched"));
        }
        return Ok(Addr::V4([255; 4]));
    }
    if family == libc::AF_UNSPEC || family == libc::AF_INET {
        if let Some(addr) = inet_pton4(name) {
            return Ok(Addr::V4(addr));
        }
    }
    // A scope id ("fe80::1%eth0") needs getaddrinfo.
    if (family == libc::AF_UNSPEC || family == libc::AF_INET6) && !bytes.contains(&b'%') {
        if let Some(addr) = inet_pton6(name) {
            return Ok(Addr::V6(addr));
        }
    }
    match sys_getaddrinfo(Some(name), None, family, 0, 0)?.first() {
        Some(Some(addr)) => Ok(*addr),
        _ => Err(NetError::Message("unknown address family")),
    }
}

/// The IPv6 addresses getaddrinfo knows for `name`, deduplicated, in the
/// resolver's order; empty when it knows none or fails.
fn ipv6_addresses(name: &CStr) -> Vec<String> {
    let answers =
        sys_getaddrinfo(Some(name), None, libc::AF_INET6, libc::SOCK_STREAM, 0).unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for text in answers.into_iter().flatten().map(format_addr) {
        if !out.contains(&text) {
            out.push(text);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Safe wrappers around libc.

// glibc and musl both export these with these signatures; the libc crate
// does not declare them.
extern "C" {
    fn gethostbyname_r(
        name: *const c_char,
        ret: *mut hostent,
        buf: *mut c_char,
        buflen: size_t,
        result: *mut *mut hostent,
        h_errnop: *mut c_int,
    ) -> c_int;
    fn gethostbyaddr_r(
        addr: *const c_void,
        len: socklen_t,
        family: c_int,
        ret: *mut hostent,
        buf: *mut c_char,
        buflen: size_t,
        result: *mut *mut hostent,
        h_errnop: *mut c_int,
    ) -> c_int;
    fn inet_pton(family: c_int, src: *const c_char, dst: *mut c_void) -> c_int;
    fn inet_ntop(
        family: c_int,
        src: *const c_void,
        dst: *mut c_char,
        size: socklen_t,
    ) -> *const c_char;
}

/// A `struct hostent` copied out of the resolver's buffer.
#[derive(Debug)]
struct RawHost {
    name: String,
    aliases: Vec<String>,
    addrtype: c_int,
    addrs: Vec<Addr>,
}

fn last_errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// gethostname(2) into Python's 1024-byte buffer.
fn sys_gethostname() -> Result<String, NetError> {
    let mut buf = [0u8; 1024];
    // SAFETY: the pointer and length describe `buf` minus its last byte,
    // which stays NUL so the result is terminated even if truncated.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc < 0 {
        return Err(NetError::Os(last_errno()));
    }
    let name = CStr::from_bytes_until_nul(&buf).unwrap_or_default();
    Ok(name.to_string_lossy().into_owned())
}

/// getaddrinfo(3), copying out each answer's address (`None` for families
/// other than IPv4 and IPv6) before freeing the list.
fn sys_getaddrinfo(
    node: Option<&CStr>,
    service: Option<&CStr>,
    family: c_int,
    socktype: c_int,
    flags: c_int,
) -> Result<Vec<Option<Addr>>, NetError> {
    // SAFETY: addrinfo is plain data; all zeroes means "no hints".
    let mut hints: libc::addrinfo = unsafe { std::mem::zeroed() };
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_flags = flags;
    let mut list: *mut libc::addrinfo = std::ptr::null_mut();
    // SAFETY: node and service are NUL-terminated or null, hints is
    // initialised, and `list` is a valid place for the result.
    let rc = unsafe {
        libc::getaddrinfo(
            node.map_or(std::ptr::null(), CStr::as_ptr),
            service.map_or(std::ptr::null(), CStr::as_ptr),
            &hints,
            &mut list,
        )
    };
    if rc == libc::EAI_SYSTEM {
        // Python raises a plain OSError from errno for this one.
        return Err(NetError::Os(last_errno()));
    }
    if rc != 0 {
        return Err(NetError::Gai(rc));
    }
    let mut out = Vec::new();
    let mut node = list;
    while !node.is_null() {
        // SAFETY: `node` is an entry of the list getaddrinfo returned, which
        // is freed only below.
        let ai = unsafe { &*node };
        out.push(sockaddr_addr(ai));
        node = ai.ai_next;
    }
    // SAFETY: `list` came from a successful getaddrinfo and is freed once.
    unsafe { libc::freeaddrinfo(list) };
    Ok(out)
}

/// The address inside one getaddrinfo answer.
fn sockaddr_addr(ai: &libc::addrinfo) -> Option<Addr> {
    let len = ai.ai_addrlen as usize;
    if ai.ai_addr.is_null() {
        return None;
    }
    match ai.ai_family {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: getaddrinfo stores a sockaddr_in of at least `len`
            // bytes for AF_INET; read_unaligned copes with any alignment.
            let sin = unsafe { std::ptr::read_unaligned(ai.ai_addr.cast::<libc::sockaddr_in>()) };
            // s_addr holds network order, so its in-memory bytes are right.
            Some(Addr::V4(sin.sin_addr.s_addr.to_ne_bytes()))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a sockaddr_in6.
            let sin6 = unsafe { std::ptr::read_unaligned(ai.ai_addr.cast::<libc::sockaddr_in6>()) };
            Some(Addr::V6(sin6.sin6_addr.s6_addr))
        }
        _ => None,
    }
}

/// inet_pton(3) for AF_INET: strict dotted quad.
fn inet_pton4(text: &CStr) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    // SAFETY: `text` is NUL-terminated; AF_INET writes 4 bytes into `out`.
    let rc = unsafe { inet_pton(libc::AF_INET, text.as_ptr(), out.as_mut_ptr().cast()) };
    (rc > 0).then_some(out)
}

/// inet_pton(3) for AF_INET6.
fn inet_pton6(text: &CStr) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    // SAFETY: `text` is NUL-terminated; AF_INET6 writes 16 bytes into `out`.
    let rc = unsafe { inet_pton(libc::AF_INET6, text.as_ptr(), out.as_mut_ptr().cast()) };
    (rc > 0).then_some(out)
}

/// Formats with inet_ntop(3), as Python does (for IPv6 it differs
/// from Rust's Display on e.g. IPv4-compatible addresses).
fn format_addr(addr: Addr) -> String {
    // INET6_ADDRSTRLEN is 46.
    let mut buf = [0u8; 64];
    let (family, src): (c_int, &[u8]) = match &addr {
        Addr::V4(b) => (libc::AF_INET, b),
        Addr::V6(b) => (libc::AF_INET6, b),
    };
    // SAFETY: `src` holds an address of `family`'s size; `buf` and its
    // length are valid for writing.
    let p = unsafe {
        inet_ntop(
            family,
            src.as_ptr().cast(),
            buf.as_mut_ptr().cast(),
            buf.len() as socklen_t,
        )
    };
    match CStr::from_bytes_until_nul(&buf) {
        Ok(text) if !p.is_null() => text.to_string_lossy().into_owned(),
        // Cannot happen for these two families and this buffer size.
        _ => match addr {
            Addr::V4(b) => std::net::Ipv4Addr::from(b).to_string(),
            Addr::V6(b) => std::net::Ipv6Addr::from(b).to_string(),
        },
    }
}

/// The signature shared by gethostbyname_r and gethostbyaddr_r, minus their
/// query arguments.
type HostentCall<'a> =
    dyn FnMut(*mut hostent, *mut c_char, size_t, *mut *mut hostent, *mut c_int) -> c_int + 'a;

/// Runs a gethostby*_r call, growing the buffer on ERANGE (Python's fixed
/// 16 KiB would fail on huge alias lists), and copies the entry out.
fn hostent_call(call: &mut HostentCall<'_>) -> Result<RawHost, NetError> {
    const MAX_BUF: usize = 1 << 20;
    let mut buf: Vec<c_char> = vec![0; 16 * 1024];
    loop {
        // SAFETY: hostent is plain data; all zeroes is a valid value.
        let mut entry: hostent = unsafe { std::mem::zeroed() };
        let mut result: *mut hostent = std::ptr::null_mut();
        let mut h_errno: c_int = 0;
        let rc = call(
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
            &mut h_errno,
        );
        if rc == libc::ERANGE && buf.len() < MAX_BUF {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if result.is_null() {
            // CPython reads the thread's h_errno instead, which glibc leaves
            // stale for an IPv6 literal given to gethostbyname_r (Python
            // then reports "Resolver Error 0 (no error)"); the
            // out-parameter is always set.
            return Err(NetError::Host(h_errno));
        }
        // SAFETY: on success `result` points at `entry`, whose strings and
        // lists live in `buf`; both outlive this call.
        return Ok(unsafe { copy_hostent(&*result) });
    }
}

/// Copies a hostent's name, aliases and addresses into owned values.
///
/// # Safety
/// `h` must come from a successful gethostby*_r call whose buffer is still
/// alive: NUL-terminated strings, NULL-terminated lists, `h_length`-byte
/// addresses.
unsafe fn copy_hostent(h: &hostent) -> RawHost {
    let text = |p: *const c_char| {
        if p.is_null() {
            String::new()
        } else {
            // SAFETY: non-null strings of the entry are NUL-terminated.
            unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
        }
    };
    let mut aliases = Vec::new();
    // h_aliases can be NULL (CPython SF #1511317).
    if !h.h_aliases.is_null() {
        for i in 0.. {
            // SAFETY: the list is NULL-terminated and we stop at the NULL.
            let p = unsafe { *h.h_aliases.add(i) };
            if p.is_null() {
                break;
            }
            aliases.push(text(p));
        }
    }
    let mut addrs = Vec::new();
    if !h.h_addr_list.is_null() {
        for i in 0.. {
            // SAFETY: as for the aliases.
            let p = unsafe { *h.h_addr_list.add(i) };
            if p.is_null() {
                break;
            }
            let addr = match (h.h_addrtype, h.h_length) {
                // SAFETY: each entry holds h_length bytes, checked here.
                (libc::AF_INET, 4) => Addr::V4(unsafe { std::ptr::read_unaligned(p.cast()) }),
                // SAFETY: as above, 16 bytes.
                (libc::AF_INET6, 16) => Addr::V6(unsafe { std::ptr::read_unaligned(p.cast()) }),
                // host_common rejects other families before addresses matter.
                _ => break,
            };
            addrs.push(addr);
        }
    }
    RawHost {
        name: text(h.h_name),
        aliases,
        addrtype: h.h_addrtype,
        addrs,
    }
}

/// gethostbyname_r(3).
fn sys_gethostbyname(name: &CStr) -> Result<RawHost, NetError> {
    hostent_call(&mut |entry, buf, len, result, h_errno| {
        // SAFETY: `name` is NUL-terminated; the other pointers come from
        // hostent_call and are valid for the call (`buf` for `len` bytes).
        unsafe { gethostbyname_r(name.as_ptr(), entry, buf, len, result, h_errno) }
    })
}

/// gethostbyaddr_r(3).
fn sys_gethostbyaddr(addr: Addr) -> Result<RawHost, NetError> {
    let (bytes, family): (&[u8], c_int) = match &addr {
        Addr::V4(b) => (b, libc::AF_INET),
        Addr::V6(b) => (b, libc::AF_INET6),
    };
    hostent_call(&mut |entry, buf, len, result, h_errno| {
        // SAFETY: `bytes` holds an address of `family`'s length; the other
        // pointers come from hostent_call and are valid for the call.
        unsafe {
            gethostbyaddr_r(
                bytes.as_ptr().cast(),
                bytes.len() as socklen_t,
                family,
                entry,
                buf,
                len,
                result,
                h_errno,
            )
        }
    })
}

/// Copies a static C message; libc's message functions never return NULL on
/// glibc, but a fallback keeps this total.
fn static_message(p: *const c_char, fallback: String) -> String {
    if p.is_null() {
        return fallback;
    }
    // SAFETY: gai_strerror and hstrerror return NUL-terminated strings that
    // live for the whole program.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// gai_strerror(3).
fn gai_strerror(code: c_int) -> String {
    // SAFETY: takes any int; returns a static string.
    let p = unsafe { libc::gai_strerror(code) };
    static_message(p, format!("getaddrinfo error {code}"))
}

/// hstrerror(3).
fn hstrerror(code: c_int) -> String {
    // SAFETY: takes any int; returns a static string.
    let p = unsafe { libc::hstrerror(code) };
    static_message(p, format!("resolver error {code}"))
}

/// strerror_r(3), the POSIX variant.
fn strerror(errno: c_int) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` and its length are valid for writing; the POSIX variant
    // always NUL-terminates on success.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr().cast(), buf.len()) };
    match CStr::from_bytes_until_nul(&buf) {
        Ok(text) if rc == 0 => text.to_string_lossy().into_owned(),
        _ => format!("Unknown error {errno}"),
    }
}

// ---------------------------------------------------------------------------
// Python's text rules.

/// `str.isspace()`: Unicode whitespace plus the ASCII separators
/// U+001C..U+001F, which Python counts and Rust does not.
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `repr()` of a str.
fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        let code = u32::from(c);
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            _ if c == quote => {
                out.push('\\');
                out.push(c);
            }
            _ if code < 0x20 || code == 0x7f => {
                let _ = write!(out, "\\x{code:02x}");
            }
            _ if c.is_ascii() || py_isprintable(c) => out.push(c),
            _ if code <= 0xff => {
                let _ = write!(out, "\\x{code:02x}");
            }
            _ if code <= 0xffff => {
                let _ = write!(out, "\\u{code:04x}");
            }
            _ => {
                let _ = write!(out, "\\U{code:08x}");
            }
        }
    }
    out.push(quote);
    out
}

/// `repr()` of a list of str.
fn py_repr_list(items: &[String]) -> String {
    let inner: Vec<String> = items.iter().map(|s| py_repr(s)).collect();
    format!("[{}]", inner.join(", "))
}

/// Approximates `str.isprintable()` for non-ASCII characters: controls,
/// separators, the common format characters and private use are not
/// printable. std has no general-category table, so unassigned code points
/// slip through; resolver names are ASCII in practice.
fn py_isprintable(c: char) -> bool {
    !(c.is_control()
        || c.is_whitespace()
        || matches!(c,
            '\u{ad}'
            | '\u{600}'..='\u{605}'
            | '\u{61c}'
            | '\u{6dd}'
            | '\u{70f}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{e000}'..='\u{f8ff}'
            | '\u{f0000}'..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repr_matches_python() {
        assert_eq!(py_repr("localhost"), "'localhost'");
        assert_eq!(py_repr(""), "''");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("'\""), "'\\'\"'");
        assert_eq!(py_repr("a\\b\tc\n\x01\x7f"), "'a\\\\b\\tc\\n\\x01\\x7f'");
        assert_eq!(py_repr("bücher\u{a0}\u{200b}"), "'bücher\\xa0\\u200b'");
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

    #[test]
    fn idna_checks_labels_like_python() {
        assert!(idna_encode("").is_ok());
        assert!(idna_encode("vm.").is_ok());
        assert_eq!(
            idna_encode("a..b"),
            Err(NetError::Idna("label empty or too long"))
        );
        assert_eq!(
            idna_encode("."),
            Err(NetError::Idna("label empty or too long"))
        );
        assert_eq!(
            idna_encode(&"x".repeat(64)),
            Err(NetError::Idna("label too long"))
        );
        assert!(idna_encode(&"x".repeat(63)).is_ok());
        assert!(matches!(
            idna_encode("bücher"),
            Err(NetError::Unsupported(_))
        ));
    }

    #[test]
    fn strip_uses_python_whitespace() {
        assert_eq!(" \t\x1cvm\x1f\u{3000}".trim_matches(py_isspace), "vm");
    }

    #[test]
    fn literals_skip_the_resolver() {
        assert_eq!(
            setipaddr(c"127.0.0.1", libc::AF_UNSPEC),
            Ok(Addr::V4([127, 0, 0, 1]))
        );
        let mut v6 = [0u8; 16];
        v6[15] = 1;
        assert_eq!(setipaddr(c"::1", libc::AF_UNSPEC), Ok(Addr::V6(v6)));
        assert_eq!(
            setipaddr(c"<broadcast>", libc::AF_INET),
            Ok(Addr::V4([255; 4]))
        );
        assert_eq!(format_addr(Addr::V6(v6)), "::1");
        assert_eq!(format_addr(Addr::V4([10, 0, 0, 1])), "10.0.0.1");
    }

    #[test]
    #[cfg(target_env = "gnu")]
    fn error_lines_match_python() {
        assert_eq!(
            NetError::Host(1).python(),
            "socket.herror: [Errno 1] Unknown host"
        );
        assert_eq!(
            NetError::Gai(libc::EAI_NONAME).python(),
            "socket.gaierror: [Errno -2] Name or service not known"
        );
        assert_eq!(
            NetError::Os(libc::EAFNOSUPPORT).python(),
            "OSError: [Errno 97] Address family not supported by protocol"
        );
    }
}
