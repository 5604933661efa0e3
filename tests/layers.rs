//! The arrows between `src/` modules go one way (issue 20, ARCHITECTURE.md
//! "Layers"). Read from the source: every `use`, every inline `crate::` or
//! `super::` path and every `pub use` re-export names a module; a module
//! may name its own unit and units of a lower rank, never a higher one nor
//! a peer of the same rank (services/ and daemon/ meet only in serve), and
//! no chain of files leads back to where it started.
//!
//! The same reading checks the other house rules: no process-wide mutable
//! state (a `static` holding a lock, an atomic, a once-cell, or a
//! `thread_local!`) but the few ARCHITECTURE.md names with their reason.
//!
//! Every rule is strict: the tree breaks none of them, so a violation
//! fails with what breaks it and why (there is no list of exceptions to
//! grow; the only allowed statics are named below and in ARCHITECTURE.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first: (module path prefix, unit, rank). The longest
/// matching prefix decides a module's unit.
const LAYERS: &[(&str, &str, u32)] = &[
    ("error", "error", 0),
    ("sys", "sys", 1),
    ("safe_file", "safe_file", 1),
    ("log", "log", 2),
    ("wire", "wire", 3),
    ("codec", "codec", 3),
    // TLS settings (provider, certificates): below services and probe, which both use them.
    ("tls", "tls", 3),
    ("reactor", "reactor", 4),
    ("endpoint", "endpoint", 4),
    ("sock", "sock", 5),
    ("services", "services", 6),
    ("daemon", "daemon", 6),
    ("probe", "probe", 6),
    ("serve", "serve", 7),
    ("client", "tools", 7),
    ("ping", "tools", 7),
    ("bench", "tools", 7),
    ("report", "tools", 7),
    ("status", "tools", 7),
    ("net", "tools", 7),
    ("shell", "tools", 7),
    ("cli", "cli", 8),
];

fn layer(module: &str) -> Option<(&'static str, u32)> {
    LAYERS
        .iter()
        .filter(|(prefix, _, _)| module == *prefix || module.starts_with(&format!("{prefix}::")))
        .max_by_key(|(prefix, _, _)| prefix.len())
        .map(|&(_, unit, rank)| (unit, rank))
}

/// Every `.rs` file under `dir` with its module path ("" for lib.rs).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("read src")
            .map(|e| e.expect("dir entry").path())
            .collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut map = BTreeMap::new();
    for path in files {
        let rel = path.strip_prefix(src).expect("under src");
        let mut parts: Vec<String> = rel
            .iter()
            .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
            .collect();
        if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
            parts.pop();
        }
        if parts == ["main"] {
            continue; // the binary names the library as `echoplex::`
        }
        map.insert(parts.join("::"), path);
    }
    map
}

/// The source without comments, string and char literals (their insides
/// become spaces, so `"crate::x"` in a message is no arrow).
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // raw string r"..." / r#"..."#
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            'raw: while j < b.len() {
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break 'raw;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                let mut j = i + 2;
                while j < b.len() && b[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push_str("' '");
            } else if b.get(i + 2) == Some(&'\'') {
                i += 3;
                out.push_str("' '");
            } else {
                out.push(c);
                i += 1;
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Expands a use tree (`crate::{a::{b, c}, d}`) into its paths.
fn expand(tree: &str) -> Vec<(String, String)> {
    let tree: String = tree
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(" as ", "@")
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    fn go(prefix: &str, tree: &str, out: &mut Vec<(String, String)>) {
        match tree.find('{') {
            None => {
                let mut parts = tree.split('@');
                let path = parts.next().unwrap_or(tree);
                let full = format!("{prefix}{path}");
                let full = full.strip_suffix("::self").unwrap_or(&full).to_string();
                let alias = match parts.next() {
                    Some(alias) => alias.to_string(),
                    None => full.rsplit("::").next().unwrap_or_default().to_string(),
                };
                out.push((full, alias));
            }
            Some(open) => {
                let head = &tree[..open];
                let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
                let mut depth = 0;
                let mut start = 0;
                let mut parts = Vec::new();
                for (i, c) in inner.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            parts.push(&inner[start..i]);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                parts.push(&inner[start..]);
                for part in parts.into_iter().filter(|p| !p.is_empty()) {
                    go(&format!("{prefix}{head}"), part, out);
                }
            }
        }
    }
    let mut out = Vec::new();
    go("", &tree, &mut out);
    out
}

/// Every path a file names, each with the module it is written in (the
/// file's module plus any inline `mod NAME {`), as absolute module paths.
fn named_paths(module: &str, code: &str) -> Vec<(String, String)> {
    let chars: Vec<char> = code.chars().collect();
    let mut found = Vec::new();
    let mut stack: Vec<(String, usize)> = Vec::new(); // inline mod, depth
    let mut depth = 0usize;
    let mut aliases: BTreeMap<String, String> = BTreeMap::new();
    let here = |stack: &[(String, usize)]| {
        let mut parts: Vec<&str> = module.split("::").filter(|p| !p.is_empty()).collect();
        parts.extend(stack.iter().map(|(m, _)| m.as_str()));
        parts.join("::")
    };
    let word_at = |i: usize, w: &str| {
        let wc: Vec<char> = w.chars().collect();
        chars.len() >= i + wc.len()
            && chars[i..i + wc.len()] == wc[..]
            && !ident_before(&chars, i)
            && !chars.get(i + wc.len()).copied().is_some_and(is_ident)
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == '{' {
            depth += 1;
        } else if c == '}' {
            depth = depth.saturating_sub(1);
            while stack.last().is_some_and(|(_, d)| *d > depth) {
                stack.pop();
            }
        }
        if word_at(i, "mod") {
            let rest: String = chars[i + 3..].iter().take(80).collect();
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| is_ident(*c))
                .collect();
            let after = rest.trim_start()[name.len()..].trim_start();
            if !name.is_empty() && after.starts_with('{') {
                stack.push((name, depth + 1));
            }
        }
        if word_at(i, "use") {
            let end = chars[i..]
                .iter()
                .position(|c| *c == ';')
                .map_or(chars.len(), |p| i + p);
            let tree: String = chars[i + 3..end].iter().collect();
            for (path, alias) in expand(&tree) {
                if let Some(abs) = absolute(&here(&stack), &path) {
                    if alias != "*" {
                        aliases.insert(alias, format!("crate::{abs}"));
                    }
                    found.push((here(&stack), abs));
                }
            }
            i = end;
            continue;
        }
        let alias_here = is_ident(c)
            && !ident_before(&chars, i)
            && (i < 2 || chars[i - 1] != ':' || chars[i - 2] != ':');
        if word_at(i, "crate") || word_at(i, "super") || word_at(i, "$crate") || alias_here {
            let mut j = i;
            while j < chars.len() && (is_ident(chars[j]) || chars[j] == ':' || chars[j] == '$') {
                j += 1;
            }
            let mut path: String = chars[i..j].iter().collect();
            let first = path.split("::").next().unwrap_or_default().to_string();
            if let Some(full) = aliases.get(&first) {
                // `use crate::services;` then `services::tcp::bind`
                path = format!("{full}{}", &path[first.len()..]);
            } else if !matches!(first.as_str(), "crate" | "super" | "$crate") {
                i = j;
                continue;
            }
            if path.contains("::") || aliases.contains_key(&first) {
                if let Some(abs) = absolute(&here(&stack), &path) {
                    found.push((here(&stack), abs));
                }
            }
            i = j;
            continue;
        }
        i += 1;
    }
    found
}

/// `crate::a::b` -> `a::b`; `super::x` from `a::b` -> `a::x`. Other roots
/// (std, external crates, a child module) -> None.
fn absolute(here: &str, path: &str) -> Option<String> {
    let mut segs: Vec<&str> = path.split("::").filter(|s| !s.is_empty()).collect();
    let mut base: Vec<&str> = here.split("::").filter(|s| !s.is_empty()).collect();
    match segs.first().copied() {
        Some("crate") | Some("$crate") => {
            segs.remove(0);
            base.clear();
        }
        Some("super") => {
            while segs.first() == Some(&"super") {
                segs.remove(0);
                base.pop();
            }
        }
        Some("self") => {
            segs.remove(0);
        }
        _ => return None,
    }
    base.extend(segs);
    Some(base.join("::"))
}

/// The module (file) a path lands in: its longest prefix that is a file.
fn file_of<'a>(files: &'a BTreeMap<String, PathBuf>, path: &str) -> Option<&'a str> {
    files
        .keys()
        .filter(|m| !m.is_empty() && (path == m.as_str() || path.starts_with(&format!("{m}::"))))
        .max_by_key(|m| m.len())
        .map(|m| m.as_str())
}

struct Graph {
    /// file module -> files it names
    edges: BTreeMap<String, BTreeSet<String>>,
    /// "module: path" for crate paths that name no file (a re-export at
    /// the crate root would hide an arrow from the check).
    unresolved: BTreeSet<String>,
}

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = modules(&src);
    // `#[macro_export]` macros live at the crate root; their arrow goes to
    // the file that defines them.
    let mut macros: BTreeMap<String, String> = BTreeMap::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("source");
        let mut exported = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with("#[macro_export") {
                exported = true;
            } else if let Some(rest) = line.strip_prefix("macro_rules!") {
                if exported {
                    let name: String = rest.trim().chars().take_while(|c| is_ident(*c)).collect();
                    macros.insert(name, module.clone());
                }
                exported = false;
            }
        }
    }
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut unresolved = BTreeSet::new();
    for (module, path) in &files {
        let text = std::fs::read_to_string(path).expect("source");
        let entry = edges.entry(module.clone()).or_default();
        for (_, target) in named_paths(module, &code_only(&text)) {
            let first = target.split("::").next().unwrap_or_default();
            let to = match macros.get(first) {
                Some(defined_in) if !files.contains_key(first) => Some(defined_in.as_str()),
                _ => file_of(&files, &target),
            };
            match to {
                Some(to) if to != module => {
                    entry.insert(to.to_string());
                }
                Some(_) => {}
                None => {
                    unresolved.insert(format!("{module}: {target}"));
                }
            }
        }
    }
    Graph { edges, unresolved }
}

/// Arrows against the ranks: "from -> to (unit rank -> unit rank)".
fn violations(g: &Graph) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (from, tos) in &g.edges {
        let Some((from_unit, from_rank)) = layer(from) else {
            continue; // lib.rs: the module list
        };
        for to in tos {
            let Some((to_unit, to_rank)) = layer(to) else {
                out.insert(format!("{from} -> {to}"), "no layer".to_string());
                continue;
            };
            if to_unit != from_unit && to_rank >= from_rank {
                out.insert(
                    format!("{from} -> {to}"),
                    format!("{from_unit} ({from_rank}) -> {to_unit} ({to_rank})"),
                );
            }
        }
    }
    out
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(g: &Graph) -> BTreeSet<String> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        out: BTreeSet<String>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        let n = t.index.len();
        t.index.insert(v, n);
        t.low.insert(v, n);
        t.stack.push(v);
        t.on.insert(v);
        let g = t.g;
        for w in g.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v, lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = t.stack.pop() {
                t.on.remove(w);
                comp.push(w);
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.insert(comp.join(" "));
            }
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: BTreeSet::new(),
    };
    for v in g.edges.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Fails with every item of `found` (and its detail, if any): a rule of
/// the house that the tree breaks.
fn assert_none(what: &str, found: &BTreeSet<String>, detail: &BTreeMap<String, String>) {
    let show: Vec<String> = found
        .iter()
        .map(|item| match detail.get(item) {
            Some(d) => format!("    {item}  ({d})"),
            None => format!("    {item}"),
        })
        .collect();
    assert!(found.is_empty(), "{what}:\n{}", show.join("\n"));
}

#[test]
fn arrows_go_down_only() {
    let g = graph();
    let v = violations(&g);
    let found: BTreeSet<String> = v.keys().cloned().collect();
    assert_none("arrows against the layers", &found, &v);
}

/// Every crate path names a file: none reaches a module through a
/// re-export at the root, where the arrow would go unchecked.
#[test]
fn every_crate_path_names_a_file() {
    assert_none(
        "crate paths that name no file",
        &graph().unresolved,
        &BTreeMap::new(),
    );
}

#[test]
fn no_import_cycles() {
    let g = graph();
    assert_none("import cycles", &cycles(&g), &BTreeMap::new());
}

/// The reader itself: a grouped `use`, an inline path, a `super::` from an
/// inline module, a path in a string and in a comment.
#[test]
fn the_reader_sees_what_the_compiler_sees() {
    let code = code_only(
        "use crate::{a::{b, c as d}, e};\n\
         // crate::comment::x\n\
         fn f() { let s = \"crate::string::x\"; crate::inline::call(); }\n\
         mod tests { use super::*; fn g() { super::super::up::x(); } }\n\
         pub use crate::reexport::Thing;\n\
         use crate::services; const B: F = services::tcp::bind;\n",
    );
    let found: BTreeSet<String> = named_paths("m::n", &code)
        .into_iter()
        .map(|(at, to)| format!("{at}: {to}"))
        .collect();
    let expect: BTreeSet<String> = [
        "m::n: a::b",
        "m::n: a::c",
        "m::n: e",
        "m::n: inline::call",
        "m::n::tests: m::n::*",
        "m::n::tests: m::up::x",
        "m::n: reexport::Thing",
        "m::n: services",
        "m::n: services::tcp::bind",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(found, expect);
}

/// Process-wide mutable state that stays, each named in ARCHITECTURE.md
/// ("Process-wide state") with its reason: (file under src/, static).
const ALLOWED_STATICS: &[(&str, &str)] = &[
    ("log.rs", "SINK"),
    ("log.rs", "EPOCH"),
    ("log.rs", "HIDING"),
    ("log.rs", "LIMIT"),
    ("probe/interrupt.rs", "STOP"),
];

/// Every process-wide static in `src/` that could change, as "file NAME":
/// any `static` but plain data (a reference, or a type in `IMMUTABLE`),
/// so a lock, an atomic, a cell, a once-cell or a struct of them counts,
/// and so does every static declared inside `thread_local!`.
fn mutable_statics() -> BTreeSet<String> {
    // Plain data: a static of these types cannot change.
    const IMMUTABLE: &[&str] = &["KindInfo"];
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeSet::new();
    for path in modules(&src).values() {
        let code = code_only(&std::fs::read_to_string(path).expect("source"));
        let file = path
            .strip_prefix(&src)
            .expect("under src")
            .display()
            .to_string();
        let thread_locals: Vec<(usize, usize)> = code
            .match_indices("thread_local!")
            .map(|(at, _)| {
                let open = code[at..].find('{').map_or(at, |o| at + o);
                let mut depth = 0;
                let mut end = open;
                for (i, c) in code[open..].char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = open + i;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                (at, end)
            })
            .collect();
        for (at, _) in code.match_indices("static") {
            let before = code[..at].chars().next_back();
            let after = code[at + 6..].chars().next();
            if before.is_some_and(|c| is_ident(c) || c == '\'') || after.is_some_and(is_ident) {
                continue;
            }
            let decl = code[at + 6..].split(['=', ';']).next().unwrap_or_default();
            let decl = decl.trim_start();
            let (mutable, decl) = match decl.strip_prefix("mut ") {
                Some(rest) => (true, rest),
                None => (false, decl),
            };
            let Some((name, ty)) = decl.split_once(':') else {
                continue;
            };
            let in_thread_local = thread_locals.iter().any(|&(a, b)| at > a && at < b);
            let ty = ty.trim();
            let plain = ty.starts_with('&') || IMMUTABLE.contains(&ty);
            if mutable || in_thread_local || !plain {
                found.insert(format!("{file} {}", name.trim()));
            }
        }
    }
    found
}

#[test]
fn no_process_wide_state_but_the_named_few() {
    let found = mutable_statics();
    let allowed: BTreeSet<String> = ALLOWED_STATICS
        .iter()
        .map(|(file, name)| format!("{file} {name}"))
        .collect();
    let wiring: BTreeSet<String> = found.difference(&allowed).cloned().collect();
    assert_none("process-wide statics", &wiring, &BTreeMap::new());
    let architecture =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("ARCHITECTURE.md"))
            .expect("ARCHITECTURE.md");
    for (file, name) in ALLOWED_STATICS {
        assert!(
            found.contains(&format!("{file} {name}")),
            "{file} {name} is allowed but gone: delete it from ALLOWED_STATICS"
        );
        assert!(
            architecture.contains(&format!("`{name}` (`src/{file}`)")),
            "ARCHITECTURE.md must name `{name}` (`src/{file}`) with its reason"
        );
    }
}

/// `unsafe` lives under `src/sys/` only (the one home of libc calls).
#[test]
fn unsafe_only_under_sys() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeSet::new();
    for path in modules(&src).values() {
        let file = path.strip_prefix(&src).expect("under src");
        if file.starts_with("sys") {
            continue;
        }
        let code = code_only(&std::fs::read_to_string(path).expect("source"));
        let has_unsafe = code.match_indices("unsafe").any(|(at, _)| {
            let before = code[..at].chars().next_back();
            let after = code[at + "unsafe".len()..].chars().next();
            !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
        });
        if has_unsafe {
            found.insert(file.display().to_string());
        }
    }
    assert_none("unsafe outside src/sys/", &found, &BTreeMap::new());
}

/// Longest a file may be before its tests (`#[cfg(test)]`): past it, a
/// file holds two concerns.
const MAX_LINES: usize = 800;

#[test]
fn no_file_over_800_lines_before_its_tests() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeSet::new();
    let mut sizes = BTreeMap::new();
    for path in modules(&src).values() {
        let text = std::fs::read_to_string(path).expect("source");
        let lines = text
            .lines()
            .position(|line| line.starts_with("#[cfg(test)]"))
            .unwrap_or_else(|| text.lines().count());
        if lines > MAX_LINES {
            let file = path
                .strip_prefix(&src)
                .expect("under src")
                .display()
                .to_string();
            sizes.insert(file.clone(), format!("{lines} lines"));
            found.insert(file);
        }
    }
    assert_none("files over 800 lines before their tests", &found, &sizes);
}
