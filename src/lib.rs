//! echoplex: every echo protocol of the classic socket tutorial, served by a
//! hand-rolled `mio::Poll` loop per thread: one thread by default,
//! `serve --reactors N` runs N such loops, one thread each, sharing nothing.
//!
//! Start at [`serve`] for the daemon, [`reactor`] for the loop, and
//! [`services`] for one file per endpoint kind. ARCHITECTURE.md maps the rest.

#![warn(missing_docs)]
// libc calls live in `sys`, each behind a safe function (issue 20).
#![deny(unsafe_code)]

// Linux only, and said so at compile time rather than by a missing symbol:
// the daemon relies on epoll's edge semantics (a short stream read means
// the socket is empty: `services::stream::ConnState::drained_by`),
// recvmmsg/sendmmsg (`mmsg`), abstract Unix sockets, SO_REUSEPORT
// balancing, /proc, pidfd, sd_notify and socket activation. There is no
// fallback for any of these.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "echoplex is Linux-only (epoll edge semantics, recvmmsg/sendmmsg, abstract \
     Unix sockets, /proc): build it on Linux"
);

pub mod bench;
pub mod cli;
pub mod client;
pub mod codec;
pub mod daemon;
pub mod endpoint;
pub mod error;
pub mod log;
pub mod net;
pub mod ping;
pub mod probe;
pub mod reactor;
pub mod report;
pub mod safe_file;
pub mod serve;
pub mod services;
pub mod shell;
pub mod sock;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
pub mod wire;
