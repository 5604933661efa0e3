//! Names the commit the binary is built from in `echoplex --version`:
//! `0.1.0 (a4b59e2)`, or `0.1.0 (a4b59e2, dirty)` when the sources the
//! binary is built from (src/, Cargo.toml, Cargo.lock, build.rs) differ from
//! it; a changed doc or test does not rebuild the binary, so it does not
//! count. Outside a git checkout (a source tarball, a container
//! build without `.git`), `ECHOPLEX_COMMIT` may name it; else it says so.

use std::path::{Path, PathBuf};
use std::process::Command;

/// What the binary is built from.
const SOURCES: [&str; 4] = ["src", "Cargo.toml", "Cargo.lock", "build.rs"];

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    let version = env!("CARGO_PKG_VERSION");
    println!("cargo:rerun-if-env-changed=ECHOPLEX_COMMIT");
    for path in SOURCES {
        println!("cargo:rerun-if-changed={path}");
    }
    let commit = match git(&["rev-parse", "--short=7", "HEAD"]) {
        Some(commit) => {
            // A new commit moves HEAD or the branch's ref; staging or
            // committing rewrites the index.
            if let Some(dir) = git(&["rev-parse", "--git-dir"]).map(PathBuf::from) {
                watch(&dir.join("HEAD"));
                watch(&dir.join("index"));
            }
            if let Some(common) = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from) {
                watch(&common.join("packed-refs"));
                if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
                    watch(&common.join(branch));
                }
            }
            let mut status = vec!["status", "--porcelain", "--untracked-files=no", "--"];
            status.extend(SOURCES);
            let dirty = git(&status).is_some_and(|changes| !changes.is_empty());
            if dirty {
                format!("{commit}, dirty")
            } else {
                commit
            }
        }
        None => std::env::var("ECHOPLEX_COMMIT").unwrap_or_else(|_| "commit unknown".into()),
    };
    println!("cargo:rustc-env=ECHOPLEX_VERSION={version} ({commit})");
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
