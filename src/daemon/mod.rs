//! The process around the event loop: what the daemon needs beyond
//! sockets and handlers (socket activation, readiness notification, the
//! hitless upgrade, the pid file, signals, the certificate's reload, and
//! the other reactors' threads). It never names a service: `serve` hands
//! it what it needs (a bind closure, the values they share).

pub mod activation;
pub mod notify;
pub mod pidfile;
pub mod reactors;
pub mod reload;
pub mod signals;
pub mod upgrade;

use socket2::{Socket, Type};

use crate::sock::{self, Local};

/// The daemon's side of [`sock::Passing`]: sockets are claimed from what
/// was passed to this process ([`activation::Activation`]) and recorded
/// for a successor ([`upgrade::Inventory`]). `serve` makes one and hands
/// it to `sock` inside a `sock::Binder`.
#[derive(Default)]
pub struct PassedSockets {
    /// The sockets passed to this process, not claimed yet.
    pub activation: activation::Activation,
    /// Every serving socket, for an upgrade.
    pub inventory: std::sync::Arc<upgrade::Inventory>,
}

impl sock::Passing for PassedSockets {
    fn claim(&self, ty: Type, local: &Local) -> Option<(Socket, bool)> {
        self.activation.claim(ty, local)
    }

    fn record(&self, socket: &Socket, removes_file: bool) {
        self.inventory.record(socket, removes_file);
    }

    fn handed_over(&self) -> bool {
        self.inventory.handed_over()
    }
}
