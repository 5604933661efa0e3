//! `rust-version` in Cargo.toml is the real minimum: no locked dependency
//! (normal, build or dev, on x86_64 Linux) declares a newer Rust, and the
//! README says the same version. One toolchain is installed, so this
//! compares the versions the dependencies declare instead of building.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn version(text: &str) -> Vec<u64> {
    let mut parts: Vec<u64> = text
        .split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("version {text:?}")))
        .collect();
    parts.resize(3, 0);
    parts
}

fn shown(v: &[u64]) -> String {
    format!("{}.{}", v[0], v[1])
}

#[test]
fn declared_rust_version_is_the_locked_dependencies_minimum() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let out = Command::new(cargo)
        .current_dir(root)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--filter-platform",
            "x86_64-unknown-linux-gnu",
            "--locked",
            "--offline",
        ])
        .output()
        .expect("run cargo metadata");
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let packages: BTreeMap<&str, &Value> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("id"), p))
        .collect();
    let nodes: BTreeMap<&str, &Value> = meta["resolve"]["nodes"]
        .as_array()
        .expect("resolve")
        .iter()
        .map(|n| (n["id"].as_str().expect("id"), n))
        .collect();
    let me = meta["resolve"]["root"].as_str().expect("root package");
    // Everything the root reaches, through dependencies of any kind.
    let mut reached = BTreeSet::new();
    let mut todo = vec![me];
    while let Some(id) = todo.pop() {
        if reached.insert(id) {
            for dep in nodes[id]["deps"].as_array().expect("deps") {
                todo.push(dep["pkg"].as_str().expect("pkg"));
            }
        }
    }
    let (needed, by) = reached
        .iter()
        .filter(|id| **id != me)
        .filter_map(|id| {
            let p = packages[id];
            let rv = p["rust_version"].as_str()?;
            Some((version(rv), format!("{} {}", p["name"], p["version"])))
        })
        .max()
        .expect("some dependency declares a rust-version");
    let declared = version(
        packages[me]["rust_version"]
            .as_str()
            .expect("Cargo.toml declares rust-version"),
    );
    assert!(
        declared >= needed,
        "Cargo.toml says rust-version {} but {by} needs {}",
        shown(&declared),
        shown(&needed)
    );
    assert_eq!(
        shown(&declared),
        shown(&needed),
        "rust-version {} is above what the dependencies need ({}, {by}): say the real minimum",
        shown(&declared),
        shown(&needed)
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README.md");
    let said = format!("Rust ({} or newer", shown(&declared));
    assert!(readme.contains(&said), "README.md must say {said:?}");
}
