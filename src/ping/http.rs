//! `ping http://` and `ping ws://`. HTTP: one `GET` of the endpoint's path
//! per probe on a keep-alive connection (a new one when the server closed
//! it or a probe timed out), the answer's status in the line. WebSocket: a
//! ping frame per probe over one connection, its payload the sequence
//! number and the run's nonce, matched by the pong that carries it back.
//! A probe waits at most `-W`; probes go out every `-i`, one at a time
//! (an HTTP connection answers in order: there is no overtaking to see).

use std::time::{Duration, Instant};

use super::{say, Args, Stats};
use crate::error::Failure;
use crate::error::{self, Exit, Outcome};
use crate::probe::duration::show as secs;
use crate::probe::http::{HttpConn, WsConn, WsEvent};
use crate::probe::interrupt;
use crate::probe::payload::nonce;
use crate::probe::tls::TlsClient;
use crate::wire::websocket::opcode;

/// Runs `ping` on an http:// or ws:// endpoint.
pub(super) fn run(args: &Args) -> Outcome {
    let endpoint = &args.endpoint;
    let websocket = endpoint.resource.websocket;
    say(format_args!(
        "PING {endpoint}: {}",
        if websocket {
            "WebSocket ping frames"
        } else {
            "HTTP GET"
        }
    ));
    let tls = args
        .tls
        .client(endpoint, false)
        .map_err(|failure| error::Failure::usage(failure.message))?;
    let started = Instant::now();
    let mut link = match Link::open(args, tls) {
        Ok(link) => link,
        Err(failure) if failure.exit == Exit::Interrupted => return Ok(Exit::Failed),
        // Never connected: 3 (as the stream kinds), a refusal is no reply.
        Err(failure) if failure.exit == Exit::Failed => {
            return Err(error::Failure::failed(failure.message))
        }
        Err(failure) => return Err(error::Failure::new(Exit::Unreachable, failure.message)),
    };
    if !args.quiet {
        let ms = started.elapsed().as_secs_f64() * 1e3;
        say(format_args!("connected to {endpoint}: time={ms:.3} ms"));
    }
    let mut stats = Stats::default();
    let key = nonce();
    let mut next = Instant::now();
    while !interrupt::stopped() && args.count.is_none_or(|count| stats.transmitted < count) {
        let seq = stats.transmitted + 1;
        stats.transmitted = seq;
        let sent = Instant::now();
        match link.probe(args, seq, key) {
            Ok(line) => {
                let ms = sent.elapsed().as_secs_f64() * 1e3;
                stats.record(ms);
                if !args.quiet {
                    say(format_args!("{line} time={ms:.3} ms"));
                }
            }
            Err(failure) if failure.exit == Exit::Interrupted => break,
            Err(failure) => {
                if !args.quiet {
                    let within = secs(args.timeout);
                    if failure.exit == Exit::Timeout {
                        say(format_args!("no reply for seq={seq} within {within}"));
                    } else {
                        say(format_args!("no reply for seq={seq}: {}", failure.message));
                    }
                }
                // The answer may still come: on a new connection it
                // cannot be taken for the next probe's.
                link.broken = true;
            }
        }
        if args.count.is_some_and(|count| stats.transmitted >= count) {
            break;
        }
        next = (next + args.interval).max(Instant::now());
        while !interrupt::stopped() {
            let left = next.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }
    say(format_args!("\n--- {endpoint} ping statistics ---"));
    say(format_args!("{}", stats.counts_line(started.elapsed())));
    if let Some(rtt) = stats.rtt_line() {
        say(format_args!("{rtt}"));
    }
    Ok(if stats.received > 0 {
        Exit::Ok
    } else {
        Exit::Failed
    })
}

/// The connection probes go over, reopened after a failure.
struct Link {
    http: Option<HttpConn>,
    ws: Option<WsConn>,
    broken: bool,
    /// https://, wss://: how each (re)connect starts its session.
    tls: Option<TlsClient>,
}

impl Link {
    fn open(args: &Args, tls: Option<TlsClient>) -> Result<Link, Failure> {
        let mut link = Link {
            http: None,
            ws: None,
            broken: true,
            tls,
        };
        link.reopen(args)?;
        Ok(link)
    }

    fn reopen(&mut self, args: &Args) -> Result<(), Failure> {
        self.http = None;
        self.ws = None;
        if args.endpoint.resource.websocket {
            self.ws = Some(WsConn::connect(
                &args.endpoint,
                args.timeout,
                self.tls.as_ref(),
            )?);
        } else {
            self.http = Some(HttpConn::connect(
                &args.endpoint,
                args.timeout,
                self.tls.as_ref(),
            )?);
        }
        self.broken = false;
        Ok(())
    }

    /// One probe: the line to print (without its time).
    fn probe(&mut self, args: &Args, seq: u64, key: u64) -> Result<String, Failure> {
        let reusable = self.http.as_ref().is_none_or(HttpConn::reusable);
        if self.broken || !reusable {
            self.reopen(args)?;
        }
        let name = &args.endpoint;
        if let Some(http) = &mut self.http {
            let answer = http.request("GET", &args.endpoint.resource.target(), &[], None)?;
            return Ok(format!(
                "{} bytes from {name}: seq={seq} status={}",
                answer.body.len(),
                answer.head.status
            ));
        }
        let Some(ws) = &mut self.ws else {
            return Err(Failure::new(Exit::Io, "no connection"));
        };
        let mut payload = seq.to_be_bytes().to_vec();
        payload.extend_from_slice(&key.to_be_bytes());
        ws.send(opcode::PING, &payload)?;
        loop {
            match ws.recv()? {
                WsEvent::Pong(data) if data == payload => {
                    return Ok(format!("{} bytes from {name}: seq={seq} pong", data.len()))
                }
                // A late pong of an earlier probe, or a message: not ours.
                WsEvent::Pong(_) | WsEvent::Message(..) => {}
                WsEvent::Close(code, _) => {
                    return Err(Failure::new(
                        Exit::Io,
                        format!(
                            "closed by the server ({})",
                            code.map_or("no code".to_string(), |c| c.to_string())
                        ),
                    ))
                }
            }
        }
    }
}
