//! The resolver's libc side, for `net`: the `extern "C"` declarations the
//! libc crate lacks, and safe wrappers that copy every answer out of
//! libc's buffers.

use std::ffi::CStr;

use libc::{c_char, c_int, c_void, hostent, size_t, socklen_t};

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

/// Why a look-up failed, shaped like the exception Python raises.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NetError {
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

/// An IP address, as raw network-order bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Addr {
    V4([u8; 4]),
    V6([u8; 16]),
}

impl Addr {
    pub(crate) fn family(self) -> c_int {
        match self {
            Addr::V4(_) => libc::AF_INET,
            Addr::V6(_) => libc::AF_INET6,
        }
    }
}

/// A `struct hostent` copied out of the resolver's buffer.
#[derive(Debug)]
pub(crate) struct RawHost {
    pub(crate) name: String,
    pub(crate) aliases: Vec<String>,
    pub(crate) addrtype: c_int,
    pub(crate) addrs: Vec<Addr>,
}

fn last_errno() -> c_int {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// gethostname(2) into Python's 1024-byte buffer.
pub(crate) fn sys_gethostname() -> Result<String, NetError> {
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
pub(crate) fn sys_getaddrinfo(
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
pub(crate) fn inet_pton4(text: &CStr) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    // SAFETY: `text` is NUL-terminated; AF_INET writes 4 bytes into `out`.
    let rc = unsafe { inet_pton(libc::AF_INET, text.as_ptr(), out.as_mut_ptr().cast()) };
    (rc > 0).then_some(out)
}

/// inet_pton(3) for AF_INET6.
pub(crate) fn inet_pton6(text: &CStr) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    // SAFETY: `text` is NUL-terminated; AF_INET6 writes 16 bytes into `out`.
    let rc = unsafe { inet_pton(libc::AF_INET6, text.as_ptr(), out.as_mut_ptr().cast()) };
    (rc > 0).then_some(out)
}

/// Formats with inet_ntop(3), as Python does (for IPv6 it differs
/// from Rust's Display on e.g. IPv4-compatible addresses).
pub(crate) fn format_addr(addr: Addr) -> String {
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
    // h_aliases can be NULL (CPython SF #1511317).
    // SAFETY: both lists of a hostent are NULL-terminated (or NULL).
    let aliases = unsafe { null_terminated(h.h_aliases) }
        .map(|p| text(p.cast_const()))
        .collect();
    let mut addrs = Vec::new();
    // SAFETY: as above.
    for p in unsafe { null_terminated(h.h_addr_list) } {
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
    RawHost {
        name: text(h.h_name),
        aliases,
        addrtype: h.h_addrtype,
        addrs,
    }
}

/// The entries of a NULL-terminated array of pointers (none when the
/// array itself is NULL), as `hostent`'s alias and address lists are.
///
/// # Safety
/// `list` is NULL or points at pointers ending with a NULL one, valid for
/// as long as the iterator is used.
unsafe fn null_terminated(list: *mut *mut c_char) -> impl Iterator<Item = *mut c_char> {
    (0..)
        // SAFETY: the caller promises the NULL terminator, and `take_while`
        // stops at it, so no read goes past the array.
        .map(move |i| {
            if list.is_null() {
                std::ptr::null_mut()
            } else {
                unsafe { *list.add(i) }
            }
        })
        .take_while(|p| !p.is_null())
}

/// gethostbyname_r(3).
pub(crate) fn sys_gethostbyname(name: &CStr) -> Result<RawHost, NetError> {
    hostent_call(&mut |entry, buf, len, result, h_errno| {
        // SAFETY: `name` is NUL-terminated; the other pointers come from
        // hostent_call and are valid for the call (`buf` for `len` bytes).
        unsafe { gethostbyname_r(name.as_ptr(), entry, buf, len, result, h_errno) }
    })
}

/// gethostbyaddr_r(3).
pub(crate) fn sys_gethostbyaddr(addr: Addr) -> Result<RawHost, NetError> {
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
pub(crate) fn gai_strerror(code: c_int) -> String {
    // SAFETY: takes any int; returns a static string.
    let p = unsafe { libc::gai_strerror(code) };
    static_message(p, format!("getaddrinfo error {code}"))
}

/// hstrerror(3).
pub(crate) fn hstrerror(code: c_int) -> String {
    // SAFETY: takes any int; returns a static string.
    let p = unsafe { libc::hstrerror(code) };
    static_message(p, format!("resolver error {code}"))
}

/// strerror_r(3), the POSIX variant.
pub(crate) fn strerror(errno: c_int) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` and its length are valid for writing; the POSIX variant
    // always NUL-terminates on success.
    let rc = unsafe { libc::strerror_r(errno, buf.as_mut_ptr().cast(), buf.len()) };
    match CStr::from_bytes_until_nul(&buf) {
        Ok(text) if rc == 0 => text.to_string_lossy().into_owned(),
        _ => format!("Unknown error {errno}"),
    }
}
