//! `multicast://GROUP:PORT`: join an IPv4 multicast group on `--iface` and
//! answer each datagram with `ack`, by unicast to its sender, as the
//! article's receiver does. Several daemons can share one GROUP:PORT.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use mio::{Interest, Registry, Token};

use super::datagram::{DatagramService, DatagramSocket, ReplyWith, SourceGuard};
use super::{Bound, ServeConfig};
use crate::endpoint::Endpoint;
use crate::sock;

/// A joined multicast socket; leaves the group when dropped.
pub struct MulticastSocket {
    socket: mio::net::UdpSocket,
    group: Ipv4Addr,
    iface: Ipv4Addr,
    /// Asked at drop: a membership handed over to a successor stays.
    binder: sock::Binder,
}

impl Drop for MulticastSocket {
    fn drop(&mut self) {
        if self.binder.handed_over() {
            return; // the socket lives on in the process that replaced us
        }
        if let Err(err) = self.socket.leave_multicast_v4(&self.group, &self.iface) {
            log::debug!("leaving {} on {}: {err}", self.group, self.iface);
        }
    }
}

impl mio::event::Source for MulticastSocket {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }
    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}

impl DatagramSocket for MulticastSocket {
    type Addr = SocketAddr;
    fn recv_one(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.socket.recv_one(buf)
    }
    fn send_one(&self, buf: &[u8], to: &SocketAddr) -> io::Result<bool> {
        self.socket.send_one(buf, to)
    }
    fn inet(addr: &SocketAddr) -> Option<SocketAddr> {
        Some(*addr)
    }
    fn batch_fd(&self) -> Option<std::os::fd::RawFd> {
        self.socket.batch_fd()
    }
    fn from_inet(addr: SocketAddr) -> Option<SocketAddr> {
        Some(addr)
    }
}

/// Joins the group and returns the `ack` responder.
pub fn bind(endpoint: &Endpoint, config: &ServeConfig) -> io::Result<Bound> {
    let addr = endpoint.socket_addr()?;
    let IpAddr::V4(group) = addr.ip() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} is not an IPv4 multicast group (224.0.0.0/4)", addr.ip()),
        ));
    };
    let socket = sock::multicast_socket(group, addr.port(), config.iface, &config.binder)?;
    let local = socket.local_addr()?;
    let handler = DatagramService::new(
        MulticastSocket {
            socket,
            group,
            iface: config.iface,
            binder: config.binder.clone(),
        },
        "multicast",
        format!("{local} on {}", config.iface),
        ReplyWith::Fixed(b"ack"),
        Some(SourceGuard::new(
            config.udp_rate,
            config.rate_limit_loopback,
        )),
        None,
    );
    Ok(Bound {
        handler: Box::new(handler),
        endpoint: endpoint.with_addr(local),
        detail: format!("joined on interface {}", config.iface),
    })
}
