//! The process around the event loop: what the daemon needs beyond
//! sockets and handlers (its log sink, socket activation, readiness
//! notification, the hitless upgrade and the pid file).

pub mod activation;
pub mod log;
pub mod notify;
pub mod pidfile;
pub mod reactors;
pub mod reload;
pub mod upgrade;
