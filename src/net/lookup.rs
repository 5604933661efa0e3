//! Python's `socket` look-ups retraced step by step over the libc calls in
//! [`crate::sys::resolver`]: the same calls, arguments, order and errors as CPython.

use std::ffi::{CStr, CString};

use libc::c_int;

use crate::codec::pyrepr;
use crate::sys::resolver::{
    format_addr, gai_strerror, hstrerror, inet_pton4, inet_pton6, strerror, sys_getaddrinfo,
    sys_gethostbyaddr, sys_gethostbyname, sys_gethostname, RawHost,
};
pub(super) use crate::sys::resolver::{Addr, NetError};

impl NetError {
    /// The reason in words, as the C library or Python states it.
    pub(super) fn words(&self) -> String {
        match self {
            NetError::Gai(code) => gai_strerror(*code),
            NetError::Host(code) => hstrerror(*code),
            NetError::Os(errno) => strerror(*errno),
            NetError::Idna(m) => format!("invalid host name: {m}"),
            NetError::Message(m) | NetError::Unsupported(m) => (*m).to_owned(),
        }
    }

    /// The last line of the traceback Python would print.
    pub(super) fn python(&self) -> String {
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
pub(super) struct HostEntry {
    pub(super) name: String,
    pub(super) aliases: Vec<String>,
    pub(super) addresses: Vec<String>,
}

/// `socket.gethostname()`.
pub(super) fn gethostname() -> Result<String, NetError> {
    sys_gethostname()
}

/// `socket.gethostbyname_ex(name)`: resolve for IPv4 with getaddrinfo (which
/// is what reports unknown names), then ask gethostbyname_r for the entry.
pub(super) fn gethostbyname_ex(name: &str) -> Result<HostEntry, NetError> {
    let name = idna_encode(name)?;
    let addr = setipaddr(&name, libc::AF_INET)?;
    let host = sys_gethostbyname(&name)?;
    host_common(host, addr.family())
}

/// `socket.gethostbyaddr(name)`: turn `name` into one address (literal, or
/// the first the resolver gives), then reverse-resolve that address.
pub(super) fn gethostbyaddr(name: &str) -> Result<HostEntry, NetError> {
    let name = idna_encode(name)?;
    let addr = setipaddr(&name, libc::AF_UNSPEC)?;
    let host = sys_gethostbyaddr(addr)?;
    host_common(host, addr.family())
}

/// `socket.getfqdn(name)`: the first name of gethostbyaddr's answer (official
/// name, then aliases) that contains a dot, else the official name; on a
/// resolver error, the name itself.
pub(super) fn getfqdn(name: &str) -> Result<String, NetError> {
    let name = name.trim_matches(pyrepr::isspace);
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
pub(super) fn idna_encode(name: &str) -> Result<CString, NetError> {
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

/// CPython's `setipaddr`: the empty name is the wildcard address, the
/// broadcast names are special, literals skip the resolver, and anything
/// else takes getaddrinfo's first answer.
pub(super) fn setipaddr(name: &CStr, family: c_int) -> Result<Addr, NetError> {
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
pub(super) fn ipv6_addresses(name: &CStr) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
