//! The reference servers of the side-by-side run. tokio, threads and epoll
//! each serve TCP, UDP and a Unix stream socket at once; plain and mmsg
//! are the two UDP-only loops of issue 26 (blocking `recvfrom`/`sendto`,
//! blocking `recvmmsg`/`sendmmsg`). Each announces itself the way
//! `echoplex serve` does (`listening ...` lines, then `ready`), so the
//! harness starts every server the same way: as a child process, pinned
//! to its core.

use std::io::{self, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::thread;

/// Binds the three sockets and prints the announcement.
fn bind(unix_path: &Path) -> io::Result<(TcpListener, UdpSocket, UnixListener)> {
    let tcp = TcpListener::bind("127.0.0.1:0")?;
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let _ = std::fs::remove_file(unix_path);
    let unix = UnixListener::bind(unix_path)?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening tcp://{}", tcp.local_addr()?)?;
    writeln!(out, "listening udp://{}", udp.local_addr()?)?;
    writeln!(out, "listening unix:{}", unix_path.display())?;
    writeln!(out, "ready")?;
    out.flush()?;
    Ok((tcp, udp, unix))
}

/// Serves with the reference named `kind` until killed.
pub fn serve(kind: &str, unix_path: &Path) -> io::Result<()> {
    match kind {
        "plain" => return plain_udp(bind_udp()?),
        "mmsg" => return mmsg_udp(bind_udp()?),
        _ => {}
    }
    let (tcp, udp, unix) = bind(unix_path)?;
    match kind {
        "tokio" => tokio_server(tcp, udp, unix),
        "threads" => threads_server(tcp, udp, unix),
        "epoll" => epoll_server(tcp, udp, unix),
        other => Err(io::Error::other(format!(
            "unknown reference server {other}"
        ))),
    }
}

/// Binds the UDP socket of a UDP-only reference and announces it.
fn bind_udp() -> io::Result<UdpSocket> {
    let udp = UdpSocket::bind("127.0.0.1:0")?;
    let mut out = io::stdout().lock();
    writeln!(out, "listening udp://{}", udp.local_addr()?)?;
    writeln!(out, "ready")?;
    out.flush()?;
    Ok(udp)
}

// ------------------------------------------------------- UDP-only loops

/// The plainest UDP echo: blocking `recvfrom`, then `sendto`, one
/// datagram per syscall, no poller (the C loop of issue 26).
fn plain_udp(udp: UdpSocket) -> io::Result<()> {
    let mut buf = vec![0u8; DGRAM_ROOM];
    loop {
        match udp.recv_from(&mut buf) {
            // A datagram that cannot be sent back is lost, as UDP allows.
            Ok((n, from)) => {
                let _ = udp.send_to(&buf[..n], from);
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // A queued ICMP error (a client gone): keep serving.
            Err(err) if err.kind() == io::ErrorKind::ConnectionRefused => {}
            Err(err) => return Err(err),
        }
    }
}

/// Datagrams per call of the blocking mmsg loop (as the C loop of issue 26).
const MMSG_BATCH: usize = 64;

/// The batched UDP echo: a blocking `recvmmsg(MSG_WAITFORONE)` (sleep for
/// the first datagram, then take what else is queued), then `sendmmsg`
/// of them all, no poller (the C `-m` loop of issue 26).
fn mmsg_udp(udp: UdpSocket) -> io::Result<()> {
    let fd = udp.as_raw_fd();
    let mut bufs = vec![0u8; MMSG_BATCH * DGRAM_ROOM];
    // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; MMSG_BATCH];
    let mut iovs: Vec<libc::iovec> = vec![unsafe { std::mem::zeroed() }; MMSG_BATCH];
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; MMSG_BATCH];
    loop {
        for i in 0..MMSG_BATCH {
            iovs[i] = libc::iovec {
                iov_base: bufs[i * DGRAM_ROOM..].as_mut_ptr().cast(),
                iov_len: DGRAM_ROOM,
            };
            msgs[i].msg_hdr.msg_iov = &mut iovs[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
            msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        }
        // SAFETY: every header points into buffers that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                msgs.as_mut_ptr(),
                MMSG_BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::Interrupted | io::ErrorKind::ConnectionRefused => continue,
                _ => return Err(err),
            }
        }
        let n = n as usize;
        for i in 0..n {
            iovs[i].iov_len = msgs[i].msg_len as usize; // echo exactly what came
        }
        let mut sent = 0;
        while sent < n {
            // SAFETY: as above; the names are the senders just filled in.
            let k = unsafe { libc::sendmmsg(fd, msgs[sent..].as_mut_ptr(), (n - sent) as u32, 0) };
            if k < 0 {
                if io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    sent += 1; // skip the datagram that failed; it is lost
                }
                continue;
            }
            sent += k as usize;
        }
    }
}

// ---------------------------------------------------------------- tokio

/// tokio's current_thread runtime, one task per connection, an 8 KiB
/// buffer per task: the idiomatic async echo server.
fn tokio_server(tcp: TcpListener, udp: UdpSocket, unix: UnixListener) -> io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo<S: AsyncReadExt + AsyncWriteExt + Unpin>(mut stream: S) {
        let mut buf = vec![0u8; 8192];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    for fd in [tcp.as_raw_fd(), udp.as_raw_fd(), unix.as_raw_fd()] {
        set_nonblocking(fd)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let tcp = tokio::net::TcpListener::from_std(tcp)?;
        let unix = tokio::net::UnixListener::from_std(unix)?;
        let udp = tokio::net::UdpSocket::from_std(udp)?;
        tokio::spawn(async move {
            while let Ok((stream, _)) = unix.accept().await {
                tokio::spawn(echo(stream));
            }
        });
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok((n, from)) = udp.recv_from(&mut buf).await {
                let _ = udp.send_to(&buf[..n], from).await;
            }
        });
        loop {
            let (stream, _) = tcp.accept().await?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(echo(stream));
        }
    })
}

// -------------------------------------------------------------- threads

/// One blocking thread per connection with an 8 KiB stack buffer: the
/// textbook server before event loops.
fn threads_server(tcp: TcpListener, udp: UdpSocket, unix: UnixListener) -> io::Result<()> {
    fn echo(mut stream: impl Read + Write) {
        let mut buf = [0u8; 8192];
        loop {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.write_all(&buf[..n]).is_err() {
                        return;
                    }
                }
            }
        }
    }
    thread::spawn(move || {
        let mut buf = [0u8; 65536];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            let _ = udp.send_to(&buf[..n], from);
        }
    });
    thread::spawn(move || {
        for stream in unix.incoming().flatten() {
            thread::spawn(move || echo(stream));
        }
    });
    for stream in tcp.incoming().flatten() {
        let _ = stream.set_nodelay(true);
        thread::spawn(move || echo(stream));
    }
    Ok(())
}

// ---------------------------------------------------------------- epoll

fn set_nonblocking(fd: RawFd) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    // SAFETY: as above.
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn ctl(epfd: RawFd, op: libc::c_int, fd: RawFd, events: u32) -> io::Result<()> {
    let mut event = libc::epoll_event {
        events,
        u64: fd as u64,
    };
    // SAFETY: a valid epoll descriptor and an event we own.
    if unsafe { libc::epoll_ctl(epfd, op, fd, &mut event) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Bytes a connection owes after a partial write, and how many of them
/// went out since: boxed, so an idle connection's slot is one pointer.
type Owed = Option<Box<(Vec<u8>, usize)>>;

/// Datagrams per recvmmsg/sendmmsg call.
const BATCH: usize = 32;
/// Room per datagram in a batch.
const DGRAM_ROOM: usize = 65536;

/// What a hand-written C server does, in Rust on raw libc: one
/// level-triggered epoll, one read and one write per readable event into a
/// 64 KiB static buffer, a pending buffer only for a partial write (then
/// EPOLLOUT until drained), recvmmsg/sendmmsg batches for UDP. State is an
/// array indexed by descriptor, 8 bytes per slot.
fn epoll_server(tcp: TcpListener, udp: UdpSocket, unix: UnixListener) -> io::Result<()> {
    let tcp_fd = tcp.into_raw_fd();
    let udp_fd = udp.into_raw_fd();
    let unix_fd = unix.into_raw_fd();
    // SAFETY: plain syscall.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    for fd in [tcp_fd, udp_fd, unix_fd] {
        set_nonblocking(fd)?;
        ctl(epfd, libc::EPOLL_CTL_ADD, fd, libc::EPOLLIN as u32)?;
    }
    let mut pending: Vec<Owed> = Vec::new();
    let mut buf = vec![0u8; 65536];
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];

    // recvmmsg/sendmmsg state: buffers, iovecs, addresses, headers.
    let mut dgrams = vec![0u8; BATCH * DGRAM_ROOM];
    // SAFETY: all-zero is a valid sockaddr_storage, iovec and mmsghdr.
    let mut addrs: Vec<libc::sockaddr_storage> = vec![unsafe { std::mem::zeroed() }; BATCH];
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|i| libc::iovec {
            iov_base: dgrams[i * DGRAM_ROOM..].as_mut_ptr().cast(),
            iov_len: DGRAM_ROOM,
        })
        .collect();
    let mut msgs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for i in 0..BATCH {
        msgs[i].msg_hdr.msg_iov = &mut iovs[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = (&mut addrs[i] as *mut libc::sockaddr_storage).cast();
    }

    loop {
        // SAFETY: the events array outlives the call.
        let n = unsafe { libc::epoll_wait(epfd, events.as_mut_ptr(), events.len() as i32, -1) };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in &events[..n as usize] {
            let fd = event.u64 as RawFd;
            if fd == tcp_fd || fd == unix_fd {
                loop {
                    // SAFETY: accept4 with no address wanted.
                    let conn = unsafe {
                        libc::accept4(
                            fd,
                            std::ptr::null_mut(),
                            std::ptr::null_mut(),
                            libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                        )
                    };
                    if conn < 0 {
                        break;
                    }
                    if fd == tcp_fd {
                        let one: libc::c_int = 1;
                        // SAFETY: setsockopt with an int we own.
                        unsafe {
                            libc::setsockopt(
                                conn,
                                libc::IPPROTO_TCP,
                                libc::TCP_NODELAY,
                                (&one as *const libc::c_int).cast(),
                                4,
                            )
                        };
                    }
                    if conn as usize >= pending.len() {
                        pending.resize_with(conn as usize + 1, || None);
                    }
                    let _ = ctl(epfd, libc::EPOLL_CTL_ADD, conn, libc::EPOLLIN as u32);
                }
            } else if fd == udp_fd {
                for i in 0..BATCH {
                    iovs[i].iov_len = DGRAM_ROOM;
                    msgs[i].msg_hdr.msg_namelen =
                        std::mem::size_of::<libc::sockaddr_storage>() as u32;
                }
                // SAFETY: every header points into buffers that outlive the call.
                let got = unsafe {
                    libc::recvmmsg(
                        fd,
                        msgs.as_mut_ptr(),
                        BATCH as u32,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if got > 0 {
                    for i in 0..got as usize {
                        iovs[i].iov_len = msgs[i].msg_len as usize;
                    }
                    // SAFETY: as above; the names are the senders just filled in.
                    unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), got as u32, 0) };
                }
            } else if event.events & libc::EPOLLOUT as u32 != 0 {
                let slot = &mut pending[fd as usize];
                if let Some(owed) = slot {
                    match write_some(fd, &owed.0[owed.1..]) {
                        Ok(w) => {
                            owed.1 += w;
                            if owed.1 == owed.0.len() {
                                *slot = None;
                                let _ = ctl(epfd, libc::EPOLL_CTL_MOD, fd, libc::EPOLLIN as u32);
                            }
                        }
                        Err(_) => close(fd, &mut pending),
                    }
                }
            } else {
                // SAFETY: reading into our buffer.
                let r = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
                if r == 0 {
                    close(fd, &mut pending);
                    continue;
                }
                if r < 0 {
                    if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                        close(fd, &mut pending);
                    }
                    continue;
                }
                let r = r as usize;
                match write_some(fd, &buf[..r]) {
                    Ok(w) if w == r => {}
                    Ok(w) => {
                        pending[fd as usize] = Some(Box::new((buf[w..r].to_vec(), 0)));
                        let _ = ctl(epfd, libc::EPOLL_CTL_MOD, fd, libc::EPOLLOUT as u32);
                    }
                    Err(_) => close(fd, &mut pending),
                }
            }
        }
    }
}

fn write_some(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < bytes.len() {
        // SAFETY: writing from a slice we hold.
        let w = unsafe { libc::write(fd, bytes[done..].as_ptr().cast(), bytes.len() - done) };
        if w < 0 {
            let err = io::Error::last_os_error();
            match err.kind() {
                io::ErrorKind::WouldBlock => break,
                io::ErrorKind::Interrupted => continue,
                _ => return Err(err),
            }
        }
        done += w as usize;
    }
    Ok(done)
}

fn close(fd: RawFd, pending: &mut [Owed]) {
    pending[fd as usize] = None;
    // SAFETY: closing a connection we accepted; epoll forgets it.
    unsafe { libc::close(fd) };
}
