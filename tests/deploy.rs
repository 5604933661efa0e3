//! deploy/k8s, checked offline as far as this machine allows (no cluster
//! is reachable here; deploy/README.md says what needs one):
//! - every manifest against the Kubernetes schemas of a pinned version,
//!   strictly (`kubernetes-validate --strict`: an unknown field fails);
//! - what schemas do not check: selectors match labels, the Service's
//!   ports reach ports the container declares and the daemon binds, the
//!   Jobs share the volume and the merge lists every generator's log;
//! - the Indexed Job's generator command, read from the manifest, run N = 3
//!   times at once against a local daemon, and the merge step's `report`
//!   over their logs: the merged counts are the sum of the parts.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::thread;

use serde_json::Value;
use support::{temp_dir, Daemon};

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.31.0";

fn k8s_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/k8s")
}

fn manifests() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(k8s_dir())
        .expect("deploy/k8s")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files
}

/// Every document of every manifest, by `kind/name`, parsed by PyYAML
/// (which kubernetes-validate brings).
fn documents() -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for file in manifests() {
        let output = Command::new("python3")
            .args([
                "-c",
                "import json, sys, yaml; print(json.dumps(list(yaml.safe_load_all(open(sys.argv[1])))))",
            ])
            .arg(&file)
            .output()
            .expect("needs python3 with PyYAML: scripts/test-all");
        assert!(
            output.status.success(),
            "{}: {}",
            file.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        let docs: Vec<Value> = serde_json::from_slice(&output.stdout).expect("JSON");
        for doc in docs.into_iter().filter(|doc| !doc.is_null()) {
            let key = format!(
                "{}/{}",
                doc["kind"].as_str().expect("kind"),
                doc["metadata"]["name"].as_str().expect("name")
            );
            out.insert(key, doc);
        }
    }
    out
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("an array")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// True when every `key: value` of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("selector");
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

#[test]
#[ignore = "needs kubernetes-validate: scripts/test-all"]
fn manifests_pass_the_kubernetes_schemas_strictly() {
    let files = manifests();
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES])
        .args(&files)
        .output()
        .expect("needs kubernetes-validate: scripts/test-all");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{text}");
    assert_eq!(text.matches(" passed ").count(), files.len(), "{text}");
    // Strict means strict: one misspelled field fails.
    let dir = temp_dir("k8s-strict");
    let bad = dir.join("bad.yaml");
    let deployment = std::fs::read_to_string(k8s_dir().join("deployment.yaml")).expect("read");
    std::fs::write(
        &bad,
        deployment.replace("readinessProbe:", "readinesProbe:"),
    )
    .expect("write");
    let output = Command::new("kubernetes-validate")
        .args(["--strict", "--kubernetes-version", KUBERNETES])
        .arg(&bad)
        .output()
        .expect("kubernetes-validate");
    assert!(
        !output.status.success(),
        "a misspelled field passed --strict"
    );
}

#[test]
#[ignore = "needs PyYAML (kubernetes-validate): scripts/test-all"]
fn selectors_labels_ports_and_volumes_agree() {
    let docs = documents();
    let deployment = &docs["Deployment/echoplex"];
    let service = &docs["Service/echoplex"];
    let bench = &docs["Job/echoplex-bench"];
    let report = &docs["Job/echoplex-report"];
    let claim = docs
        .iter()
        .find(|(key, _)| key.starts_with("PersistentVolumeClaim/"))
        .map(|(_, doc)| doc)
        .expect("a PersistentVolumeClaim");

    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));
    assert!(
        selects(&service["spec"]["selector"], pod_labels),
        "the Service selects no daemon"
    );
    // The Jobs' pods are not behind the Service.
    for job in [bench, report] {
        assert!(!selects(
            &service["spec"]["selector"],
            &job["spec"]["template"]["metadata"]["labels"]
        ));
    }

    // Every Service port reaches a declared container port of its protocol,
    // and the daemon binds each declared port on every interface.
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    let args = strings(&container["args"]);
    let declared: Vec<(String, u64, String)> = container["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| {
            (
                p["name"].as_str().expect("port name").to_string(),
                p["containerPort"].as_u64().expect("port"),
                p["protocol"].as_str().unwrap_or("TCP").to_string(),
            )
        })
        .collect();
    for port in service["spec"]["ports"].as_array().expect("ports") {
        let target = port["targetPort"].as_str().expect("a named targetPort");
        let protocol = port["protocol"].as_str().unwrap_or("TCP");
        assert!(
            declared
                .iter()
                .any(|(name, _, proto)| name == target && proto == protocol),
            "Service port {target}/{protocol} reaches no container port"
        );
    }
    for (name, number, protocol) in &declared {
        let scheme = match (name.as_str(), protocol.as_str()) {
            ("metrics", _) => "metrics",
            (_, "UDP") => "udp",
            _ => "tcp",
        };
        let endpoint = format!("{scheme}://0.0.0.0:{number}");
        assert!(
            args.iter().any(|a| a.starts_with(&endpoint)),
            "the daemon does not serve {endpoint}: {args:?}"
        );
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        let port = container[probe]["httpGet"]["port"]
            .as_str()
            .expect("named port");
        assert!(
            declared.iter().any(|(name, ..)| name == port),
            "{probe} port {port}"
        );
    }
    // --reactors from the CPU limit, by the downward API.
    let reactors = args
        .iter()
        .position(|a| a == "--reactors")
        .expect("--reactors");
    assert_eq!(args[reactors + 1], "$(ECHOPLEX_REACTORS)");
    let env = container["env"].as_array().expect("env");
    let source = env
        .iter()
        .find(|e| e["name"] == "ECHOPLEX_REACTORS")
        .expect("ECHOPLEX_REACTORS");
    assert_eq!(
        source["valueFrom"]["resourceFieldRef"]["resource"],
        "limits.cpu"
    );
    assert!(container["resources"]["limits"]["cpu"].is_string());

    // The Indexed Job and the merge share one ReadWriteMany volume, and
    // the merge lists exactly the logs of generators 0 .. N-1.
    assert_eq!(bench["spec"]["completionMode"], "Indexed");
    let n = bench["spec"]["completions"].as_u64().expect("completions");
    assert_eq!(
        bench["spec"]["parallelism"].as_u64(),
        Some(n),
        "generators run at once"
    );
    assert!(strings(&claim["spec"]["accessModes"]).contains(&"ReadWriteMany".to_string()));
    let claim_name = claim["metadata"]["name"].as_str().expect("claim name");
    for job in [bench, report] {
        let spec = &job["spec"]["template"]["spec"];
        assert_eq!(
            spec["volumes"][0]["persistentVolumeClaim"]["claimName"],
            claim_name
        );
        assert_eq!(
            spec["containers"][0]["volumeMounts"][0]["mountPath"],
            "/results"
        );
    }
    let merged: Vec<String> = strings(&report["spec"]["template"]["spec"]["containers"][0]["args"])
        .into_iter()
        .filter(|a| a.ends_with(".hlog"))
        .collect();
    let expected: Vec<String> = (0..n).map(|i| format!("/results/gen-{i}.hlog")).collect();
    assert_eq!(merged, expected);
    let generator = strings(&bench["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert!(
        generator.contains(&"/results/gen-$(JOB_COMPLETION_INDEX).hlog".to_string()),
        "{generator:?}"
    );
    // The generator's target is the Service, by the variables Kubernetes
    // sets for it (the static binary does no DNS look-ups).
    assert!(generator
        .contains(&"tcp://$(ECHOPLEX_SERVICE_HOST):$(ECHOPLEX_SERVICE_PORT_ECHO_TCP)".to_string()));
    assert!(declared.iter().any(|(name, ..)| name == "echo-tcp"));
}

/// A manifest's args with Kubernetes' `$(VAR)` expanded from `vars`.
fn expand(args: &[String], vars: &[(&str, String)]) -> Vec<String> {
    args.iter()
        .map(|arg| {
            vars.iter().fold(arg.clone(), |arg, (name, value)| {
                arg.replace(&format!("$({name})"), value)
            })
        })
        .collect()
}

#[test]
#[ignore = "needs PyYAML (kubernetes-validate): scripts/test-all"]
fn the_jobs_generators_and_merge_run_locally_with_three_generators() {
    let docs = documents();
    let bench = &docs["Job/echoplex-bench"];
    let report = &docs["Job/echoplex-report"];
    let generator = strings(&bench["spec"]["template"]["spec"]["containers"][0]["args"]);
    let merge = strings(&report["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(
        bench["spec"]["completions"].as_u64(),
        Some(3),
        "the test runs N = 3"
    );

    let daemon = Daemon::start(&["tcp://127.0.0.1:0"]);
    let addr = daemon.addr("tcp://");
    let results = temp_dir("k8s-results");
    let results_dir = results.to_str().expect("UTF-8").to_string();
    // The one change to the manifest's command: 2 s instead of its
    // duration, so the test stays short.
    let shorten = |args: Vec<String>| -> Vec<String> {
        let mut args = args;
        if let Some(at) = args.iter().position(|a| a == "--duration" || a == "-d") {
            args[at + 1] = "2".into();
        }
        args.into_iter()
            .map(|a| a.replace("/results", &results_dir))
            .collect()
    };
    let generators: Vec<_> = (0..3)
        .map(|index| {
            let args = shorten(expand(
                &generator,
                &[
                    ("ECHOPLEX_SERVICE_HOST", addr.ip().to_string()),
                    ("ECHOPLEX_SERVICE_PORT_ECHO_TCP", addr.port().to_string()),
                    ("JOB_COMPLETION_INDEX", index.to_string()),
                ],
            ));
            thread::spawn(move || {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                support::run(&args)
            })
        })
        .collect();
    for (index, generator) in generators.into_iter().enumerate() {
        let (status, stdout, stderr) = generator.join().expect("generator");
        assert!(status.success(), "generator {index}: {stdout}{stderr}");
    }
    let merge = shorten(merge);
    let merge: Vec<&str> = merge.iter().map(String::as_str).collect();
    let (status, text, stderr) = support::run(&merge);
    assert!(status.success(), "{text}{stderr}");
    assert!(text.starts_with("3 logs merged"), "{text}");

    // The merge is right: counts add, the extremes are the parts'.
    let json = |args: &[&str]| -> Value {
        let mut all = args.to_vec();
        all.insert(1, "--json");
        let (status, stdout, stderr) = support::run(&all);
        assert!(status.success(), "{stdout}{stderr}");
        serde_json::from_str(&stdout).expect("report JSON")
    };
    let whole = json(&merge);
    let parts: Vec<Value> = merge[1..]
        .iter()
        .map(|file| json(&["report", file]))
        .collect();
    let sum = |key: &str| {
        parts
            .iter()
            .map(|p| p[key].as_u64().expect(key))
            .sum::<u64>()
    };
    assert_eq!(whole["messages"].as_u64(), Some(sum("messages")));
    assert!(sum("messages") > 0);
    assert_eq!(whole["errors"].as_u64(), Some(0));
    assert_eq!(whole["generators"].as_u64(), Some(3));
    let latency = |doc: &Value, key: &str| doc["latency_us"][key].as_f64().expect(key);
    let max = parts.iter().map(|p| latency(p, "max")).fold(0.0, f64::max);
    let min = parts
        .iter()
        .map(|p| latency(p, "min"))
        .fold(f64::MAX, f64::min);
    assert_eq!(latency(&whole, "max"), max);
    assert_eq!(latency(&whole, "min"), min);
    let p50s: Vec<f64> = parts.iter().map(|p| latency(p, "p50")).collect();
    let p50 = latency(&whole, "p50");
    assert!(
        p50s.iter().any(|&p| p <= p50) && p50s.iter().any(|&p| p >= p50),
        "merged p50 {p50} outside the parts' {p50s:?}"
    );
    daemon.stop();
}
