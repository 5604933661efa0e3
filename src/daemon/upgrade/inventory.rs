//! The inventory: a close-on-exec duplicate of every serving socket, kept
//! to be handed to a successor (see the parent module).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use log::warn;
use socket2::{Socket, Type};

use crate::daemon::activation::ADMIN_NAME;
use crate::endpoint::{Endpoint, Target};
use crate::sock::Local;

/// A socket that will be handed over.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) fd: OwnedFd,
    pub(super) ty: Type,
    pub(super) local: Local,
    pub(super) name: Option<String>,
    /// A socket file we did not make (systemd's): never to be removed.
    pub(super) keep_file: bool,
}

/// Every serving socket this process made or adopted, kept (as a
/// close-on-exec duplicate) to be handed to a successor; and whether it
/// was. One per daemon: `serve` makes it and gives it to `sock` (through
/// `daemon::PassedSockets`) and to the handlers that need it.
#[derive(Debug)]
pub struct Inventory {
    /// None once released (at shutdown, after a handover).
    entries: Mutex<Option<Vec<Entry>>>,
    /// Set once the sockets belong to a successor.
    handed_over: AtomicBool,
}

impl Default for Inventory {
    fn default() -> Self {
        Self::new()
    }
}

impl Inventory {
    /// An empty inventory, recording from now on.
    pub fn new() -> Inventory {
        Inventory {
            entries: Mutex::new(Some(Vec::new())),
            handed_over: AtomicBool::new(false),
        }
    }

    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Option<Vec<Entry>>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records a serving socket (`sock` does, for every listening and
    /// datagram socket it makes or adopts). `removes_file`: a Unix socket
    /// whose file this process will remove on exit (it made it), so the
    /// successor may too; a file someone else made (systemd) is marked to
    /// be kept by every successor. A failure only means this socket will
    /// not be handed over, which the upgrade reports.
    pub fn record(&self, socket: &Socket, removes_file: bool) {
        let mut inventory = self.lock();
        let Some(entries) = inventory.as_mut() else {
            return;
        };
        let entry = (|| -> io::Result<Entry> {
            Ok(Entry {
                ty: socket.r#type()?,
                local: Local::of(&socket.local_addr()?),
                // F_DUPFD_CLOEXEC: never inherited by accident.
                fd: socket.try_clone()?.into(),
                name: None,
                keep_file: !removes_file,
            })
        })();
        match entry {
            Ok(entry) => entries.push(entry),
            Err(err) => warn!("cannot keep a socket for a later upgrade: {err}"),
        }
    }

    fn label_with(&self, local: &Local, name: &str) {
        let mut inventory = self.lock();
        for entry in inventory.iter_mut().flatten() {
            if entry.name.is_none() && entry.local == *local {
                entry.name = Some(name.to_string());
            }
        }
    }

    /// Names the recorded sockets of a bound endpoint (its real address) by
    /// its kind, which the new process reads from `LISTEN_FDNAMES`.
    pub fn label(&self, endpoint: &Endpoint) {
        if let Some(local) = local_of(endpoint) {
            self.label_with(&local, endpoint.kind.scheme());
        }
    }

    /// Names the admin socket's record.
    pub fn label_admin(&self, path: &std::path::Path) {
        self.label_with(&Local::Path(path.to_path_buf()), ADMIN_NAME);
    }

    /// Closes the recorded duplicates: at shutdown, so a listener that
    /// closes really stops listening, and after a handover.
    pub fn release(&self) {
        *self.lock() = None;
    }

    /// True once the sockets belong to a successor: socket files and
    /// multicast memberships are then left as they are.
    pub fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::Relaxed)
    }

    pub(super) fn mark_handed_over(&self) {
        self.handed_over.store(true, Ordering::Relaxed);
        self.release();
    }
}

/// The address an endpoint was really bound at, if it can be told.
fn local_of(endpoint: &Endpoint) -> Option<Local> {
    match &endpoint.target {
        Target::Inet { host, port } => Some(Local::Inet(std::net::SocketAddr::new(
            host.parse().ok()?,
            *port,
        ))),
        target => Local::of_target(target),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_follow_real_addresses() {
        let inventory = Inventory::new();
        let socket = Socket::new(socket2::Domain::IPV4, Type::STREAM, None).expect("socket");
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
            .expect("bind");
        inventory.record(&socket, false);
        let port = socket
            .local_addr()
            .expect("addr")
            .as_socket()
            .expect("inet")
            .port();
        let endpoint: Endpoint = format!("binary://127.0.0.1:{port}")
            .parse()
            .expect("endpoint");
        inventory.label(&endpoint);
        let names: Vec<Option<String>> = inventory
            .lock()
            .iter()
            .flatten()
            .filter(|e| e.local == Local::Inet(([127, 0, 0, 1], port).into()))
            .map(|e| e.name.clone())
            .collect();
        assert_eq!(names, vec![Some("binary".to_string())]);
        inventory.release();
        assert!(inventory.lock().is_none());
    }
}
