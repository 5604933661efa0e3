//! `GET /` on `metrics://`: a page that shows the loop live, served by the
//! loop itself (no thread, no file on disk: the assets are in the binary).
//!
//! | path         | what                                                        |
//! |--------------|-------------------------------------------------------------|
//! | `/`          | the page (`page/index.html`): no inline script or style     |
//! | `/page.js`   | its script: builds every element with `textContent`          |
//! | `/page.css`  | its style                                                   |
//! | `/page.json` | the summary the script polls once a second                  |
//! | `/favicon.svg` | its icon (also at `/favicon.ico`, which browsers ask for)  |
//!
//! Why polling a summary rather than server-sent events: every answer is
//! one whole, small document on a keep-alive connection, answered by the
//! same HTTP code and the same answers-owed rule as `/metrics` (no push
//! timer per viewer, no half-sent event to track); a hidden tab simply
//! asks less; and curl or a test reads exactly what the page reads.
//!
//! What a viewer costs is bounded: the summary is the counters of each
//! reactor (O(reactors), built at most once per turn however many
//! viewers ask) and each reactor's last sample (`Sampled::view_json`:
//! a minute of history, the last turns, at most 100 connections), built
//! once per sample by the first viewer that asks. It is never `/status`'s
//! O(connections) document. A viewer is a control connection (it counts
//! against the reserve health checks have), and one that stops reading
//! is dropped once the answers it owes reach `--max-buffer`
//! (`page_clients_dropped`).
//!
//! Every figure shown is the `status --json` figure of the same name
//! (`data-stat="NAME"`, a dotted path into that object for the
//! breakdowns, with `data-reactor="N"` for one reactor's), so the page,
//! `status --json` and a headless browser agree.

use crate::reactor::Context;

/// The page's Content-Security-Policy: nothing from another origin, no
/// inline script or style, no plug-in, no framing, no form.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("page/index.html");
const PAGE_JS: &str = include_str!("page/page.js");
const PAGE_CSS: &str = include_str!("page/page.css");
const FAVICON: &str = include_str!("page/favicon.svg");

/// The headers every answer of the page carries (after the status line's
/// own): the policy, and no guessing of content types.
fn headers() -> String {
    format!(
        "Content-Security-Policy: {CSP}\r\nX-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n"
    )
}

/// True for the paths the page answers.
pub fn serves(path: &str) -> bool {
    matches!(
        path,
        "/" | "/index.html"
            | "/page.js"
            | "/page.css"
            | "/page.json"
            | "/favicon.svg"
            | "/favicon.ico"
    )
}

/// The answer to a request for one of the page's paths (`serves`): the
/// status, the content type, the body and the extra headers.
pub fn answer(path: &str, method: &str, cx: &mut Context) -> (u16, &'static str, String, String) {
    if method != "GET" && method != "HEAD" {
        let allow = format!("{}Allow: GET, HEAD\r\n", headers());
        return (
            405,
            "text/plain; charset=utf-8",
            "method not allowed\n".into(),
            allow,
        );
    }
    let (content_type, body) = match path {
        "/page.js" => ("text/javascript; charset=utf-8", PAGE_JS.to_string()),
        "/page.css" => ("text/css; charset=utf-8", PAGE_CSS.to_string()),
        "/favicon.svg" | "/favicon.ico" => ("image/svg+xml", FAVICON.to_string()),
        "/page.json" => {
            // The reactors record their last turns while a page is open.
            cx.watch();
            cx.record_turns(true);
            (
                "application/json",
                cx.once_per_turn("page json", summary).to_string(),
            )
        }
        _ => ("text/html; charset=utf-8", INDEX_HTML.to_string()),
    };
    (200, content_type, body, headers())
}

/// True when a request for `path` makes its connection a viewer's (one
/// that is dropped, not paused, when it stops reading).
pub fn is_viewer(path: &str) -> bool {
    path == "/page.json"
}

/// The page's summary: `{"state", "total", "reactors", "views"}` where
/// `total` and each of `reactors` are the objects `status --json` has
/// (its top level without `handlers`, and its `reactors` array), and
/// `views` each reactor's last sample (`Sampled::view_json`).
pub fn summary(cx: &Context) -> String {
    let each = cx.every_reactor();
    let total = crate::reactor::totals(&each).json(cx.now);
    let state = if cx.is_shutting_down() {
        "stopping"
    } else if cx.is_draining() {
        "draining"
    } else {
        "serving"
    };
    let mut out = String::with_capacity(4096 + each.len() * 16_384);
    out.push_str("{\"state\":\"");
    out.push_str(state);
    out.push_str("\",\"total\":");
    out.push_str(&serde_json::Value::Object(total).to_string());
    out.push_str(",\"reactors\":");
    out.push_str(&crate::reactor::each_json(&each, cx.now).to_string());
    out.push_str(",\"views\":[");
    for (index, one) in each.iter().enumerate() {
        if index > 0 {
            out.push(',');
        }
        out.push_str(one.sampled.view_json());
    }
    out.push_str("]}");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = INDEX_HTML.to_ascii_lowercase();
        // Every <script> has a src on this origin and no body.
        for (at, _) in html.match_indices("<script") {
            let tag = &html[at..at + html[at..].find('>').expect("tag end")];
            assert!(tag.contains("src=\"/page.js\""), "{tag}");
            assert!(html[at..].contains("></script>"));
        }
        for bad in [" on", "style=", "javascript:", "=\"//", "=\"http", "<style"] {
            let found = html.match_indices(bad).find(|(at, _)| {
                // " on" only as an attribute (` onload=`), not in prose.
                bad != " on"
                    || html[at + 3..]
                        .split(['=', ' ', '>'])
                        .next()
                        .is_some_and(|w| {
                            w.chars().all(|c| c.is_ascii_alphabetic())
                                && html[at + 3 + w.len()..].starts_with('=')
                        })
            });
            assert!(found.is_none(), "{bad:?} in the page");
        }
        assert!(
            !PAGE_JS.contains("innerHTML"),
            "data must never be parsed as HTML"
        );
        assert!(!PAGE_JS.contains("insertAdjacentHTML"));
        assert!(!PAGE_JS.contains("eval("));
        assert!(CSP.contains("script-src 'self'") && !CSP.contains("unsafe"));
    }
}
