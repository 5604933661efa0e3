//! Name look-ups that never leave the machine: a command run in a private
//! mount namespace (`unshare -m`, so root only) whose resolv.conf names
//! 127.0.0.1, where nothing answers, and whose nsswitch.conf says
//! `hosts: files dns`. /etc/hosts still answers (or a given hosts file);
//! any DNS query fails on loopback at once ("Temporary failure in name
//! resolution"). Tests that use it are named `root_*` and call [`require`].

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// Why a `root_*` look-up test cannot run here.
pub const NEEDS_ROOT: &str =
    "needs root (a private mount namespace keeps DNS queries on loopback): run scripts/test-all as root";

/// The files bound over /etc/resolv.conf and /etc/nsswitch.conf; `None`
/// when not root.
fn files() -> Option<&'static (PathBuf, PathBuf)> {
    static FILES: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    FILES
        .get_or_init(|| {
            if !is_root() {
                return None;
            }
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("offline-resolver");
            std::fs::create_dir_all(&dir).expect("cannot create the offline resolver directory");
            let resolv = dir.join("resolv.conf");
            let nss = dir.join("nsswitch.conf");
            // One try of one second at most; a closed loopback port fails at once.
            std::fs::write(&resolv, RESOLV_CONF).expect("cannot write resolv.conf");
            std::fs::write(&nss, NSSWITCH_CONF).expect("cannot write nsswitch.conf");
            Some((resolv, nss))
        })
        .as_ref()
}

/// What the namespace's /etc/resolv.conf says.
pub const RESOLV_CONF: &str = "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n";
/// What the namespace's /etc/nsswitch.conf says.
pub const NSSWITCH_CONF: &str = "hosts: files dns\n";

/// Whether this process runs as root, so [`command`] can isolate.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Panics unless look-ups can be isolated: the first line of each `root_*`
/// look-up test, so run as non-root it fails rather than passing unchecked.
pub fn require() {
    assert!(files().is_some(), "{NEEDS_ROOT}");
    let out = Command::new("unshare").arg("--version").output();
    assert!(
        out.is_ok_and(|o| o.status.success()),
        "needs unshare (util-linux): scripts/test-all"
    );
}

/// `program` in the offline namespace when root, else as is (for commands
/// that never reach the resolver). `hosts` replaces /etc/hosts there too.
pub fn command(program: &str, hosts: Option<&Path>) -> Command {
    let Some((resolv, nss)) = files() else {
        return Command::new(program);
    };
    let mut cmd = Command::new("unshare");
    // unshare makes the new namespace's mounts private, so the binds never
    // reach the machine's own /etc.
    let mut script = String::from(
        r#"mount --bind "$1" /etc/resolv.conf && mount --bind "$2" /etc/nsswitch.conf"#,
    );
    if hosts.is_some() {
        script.push_str(r#" && mount --bind "$3" /etc/hosts"#);
    }
    script.push_str(r#" && shift 3 && exec "$@""#);
    cmd.args(["--mount", "--", "sh", "-c", &script, "sh"])
        .arg(resolv)
        .arg(nss)
        .arg(hosts.unwrap_or(Path::new("-")))
        .arg(program);
    cmd
}
