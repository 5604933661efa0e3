//! echoplex: every echo protocol of the classic socket tutorial, served by one
//! thread running one hand-rolled `mio::Poll` loop.
//!
//! Start at [`serve`] for the daemon, [`reactor`] for the loop, and
//! [`services`] for one file per endpoint kind. ARCHITECTURE.md maps the rest.

#![warn(missing_docs)]

pub mod bench;
pub mod cli;
pub mod client;
pub mod codec;
pub mod daemon;
pub mod endpoint;
pub mod error;
pub mod mmsg;
pub mod net;
pub mod ping;
pub mod probe;
pub mod reactor;
pub mod report;
pub mod serve;
pub mod services;
pub mod shell;
pub mod sock;
pub mod status;
