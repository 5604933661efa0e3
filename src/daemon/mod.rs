//! The process around the event loop: what the daemon needs beyond
//! sockets and handlers (socket activation, readiness
//! notification, the hitless upgrade and the pid file).

pub mod activation;
pub mod notify;
pub mod pidfile;
pub mod reactors;
pub mod reload;
pub mod upgrade;
