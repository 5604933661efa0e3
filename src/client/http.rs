//! http:// and ws:// clients. `http://`: a `POST` with the message as its
//! body (a `GET` without one); the status line and the body are printed;
//! success is a 2xx and, against echoplex, an echo that matches (the JSON
//! description's `body`, or the body itself with `echo_body=raw`).
//! `ws://`: each word a text message (`-f`/`--hex`: one binary message),
//! each echo printed and compared; then a close.

use std::time::Duration;

use super::{compare, preview, quote, Args, Out};
use crate::probe::http::{is_echoplex, HttpConn, WsConn, WsEvent};
use crate::probe::Failure;
use crate::wire::websocket::{close, opcode};

/// Runs one HTTP exchange.
pub(super) fn run_http(
    args: &Args,
    message: Option<&[u8]>,
    timeout: Duration,
    out: &Out,
) -> Result<(), Failure> {
    let endpoint = &args.endpoint;
    out.say(format_args!("connecting to {endpoint}"));
    let tls = args.tls.client(endpoint, false)?;
    let mut conn = HttpConn::connect(endpoint, timeout, tls.as_ref())?;
    let target = endpoint.resource.target();
    let (method, content_type): (&str, &[(&str, &[u8])]) = match message {
        Some(_) if args.file.is_some() || args.hex => {
            ("POST", &[("Content-Type", b"application/octet-stream")])
        }
        Some(_) => ("POST", &[("Content-Type", b"text/plain; charset=utf-8")]),
        None => ("GET", &[]),
    };
    match message {
        Some(body) => out.say(format_args!("sending {method} {target} {}", preview(body))),
        None => out.say(format_args!("sending {method} {target}")),
    }
    let answer = conn.request(method, &target, content_type, message)?;
    out.say(format_args!("{}", answer.status_line()));
    if args.quiet {
        out.payload(&answer.body);
    } else {
        let body = answer.body.strip_suffix(b"\n").unwrap_or(&answer.body);
        out.say(format_args!("{}", String::from_utf8_lossy(body)));
    }
    if answer.head.class() != 2 {
        return Err(Failure::failed(format!(
            "{endpoint}: answered {}",
            answer.status_line()
        )));
    }
    match message {
        Some(sent) if is_echoplex(&answer.head) => check_echo(sent, &answer.head, &answer.body),
        _ => Ok(()),
    }
}

/// Against echoplex: the raw body is the message itself; the JSON
/// description carries it as `body` (text) and `body_bytes`.
fn check_echo(
    sent: &[u8],
    head: &crate::wire::http::ResponseHead,
    body: &[u8],
) -> Result<(), Failure> {
    let json = head
        .header("content-type")
        .is_some_and(|t| t.starts_with(b"application/json"));
    if !json {
        return compare(sent, body);
    }
    let description: serde_json::Value = serde_json::from_slice(body)
        .map_err(|err| Failure::failed(format!("echoplex's answer is not JSON: {err}")))?;
    let bytes = description.get("body_bytes").and_then(|v| v.as_u64());
    if bytes != Some(sent.len() as u64) {
        return Err(Failure::failed(format!(
            "echo: {} bytes sent, the server saw {}",
            sent.len(),
            bytes.map_or("none".to_string(), |n| n.to_string())
        )));
    }
    match (std::str::from_utf8(sent), description.get("body")) {
        (Ok(text), Some(serde_json::Value::String(echo))) => {
            compare(text.as_bytes(), echo.as_bytes())
        }
        // Not UTF-8: the description carries no text; the count matched.
        (Err(_), _) => Ok(()),
        (Ok(_), _) => Err(Failure::failed("echo: the description has no body")),
    }
}

/// Runs one WebSocket session: each message out, its echo back.
pub(super) fn run_ws(
    args: &Args,
    messages: &[(u8, Vec<u8>)],
    timeout: Duration,
    out: &Out,
) -> Result<(), Failure> {
    let endpoint = &args.endpoint;
    out.say(format_args!("connecting to {endpoint}"));
    let tls = args.tls.client(endpoint, false)?;
    let mut conn = WsConn::connect(endpoint, timeout, tls.as_ref())?;
    out.say(format_args!("upgraded to WebSocket"));
    for (op, message) in messages {
        out.say(format_args!("sending {}", preview(message)));
        conn.send(*op, message)?;
        let echo = loop {
            match conn.recv()? {
                WsEvent::Message(kind, data) => break (kind, data),
                WsEvent::Pong(_) => continue,
                WsEvent::Close(code, reason) => {
                    return Err(Failure::failed(format!(
                        "{endpoint}: closed by the server ({}{})",
                        code.map_or("no code".to_string(), |c| c.to_string()),
                        if reason.is_empty() {
                            String::new()
                        } else {
                            format!(" {reason}")
                        }
                    )))
                }
            }
        };
        out.say(format_args!("received {}", quote(&echo.1)));
        out.payload(&echo.1);
        if echo.0 != *op {
            return Err(Failure::failed(format!(
                "echo: sent a {} message, got a {} one",
                kind_name(*op),
                kind_name(echo.0)
            )));
        }
        compare(message, &echo.1)?;
    }
    out.say(format_args!("closing"));
    conn.close(close::NORMAL)?;
    // The server's close answers ours; anything else first is drained.
    loop {
        match conn.recv() {
            Ok(WsEvent::Close(..)) | Err(_) => return Ok(()),
            Ok(_) => {}
        }
    }
}

fn kind_name(op: u8) -> &'static str {
    if op == opcode::TEXT {
        "text"
    } else {
        "binary"
    }
}
