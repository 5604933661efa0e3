//! The daemon must never change the mode of a file someone
//! renames over its fresh socket. An attacker thread swaps a symlink to a
//! victim file over the socket path in a tight loop while the socket is
//! bound again and again with `--unix-mode 777`; the victim's mode must
//! never change. (Its own test binary: binding narrows the process umask,
//! which would leak into files other tests create at the same moment.)

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use echoplex::endpoint::Target;

mod support;

fn mode_of(path: &std::path::Path) -> u32 {
    fs::metadata(path)
        .expect("victim metadata")
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn a_symlink_swapped_over_the_socket_never_gets_its_target_chmodded() {
    let dir = support::temp_dir("chmod-race");
    let victim = dir.join("victim");
    fs::write(&victim, b"secret").expect("victim");
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).expect("chmod victim");
    let socket_path = dir.join("s.sock");

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let attacker = {
        let (stop, swaps) = (Arc::clone(&stop), Arc::clone(&swaps));
        let (victim, socket_path) = (victim.clone(), socket_path.clone());
        let link = dir.join("link");
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let _ = fs::remove_file(&link);
                if std::os::unix::fs::symlink(&victim, &link).is_ok()
                    && fs::rename(&link, &socket_path).is_ok()
                {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };

    let target = Target::Path(socket_path.clone());
    let (mut binds, mut changed) = (0u64, None);
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) && binds < 20_000 {
        // A symlink already in place is refused ("not a socket"): the
        // interesting case is a bind that succeeds and is swapped at once.
        if let Ok(bound) = echoplex::sock::unix_listener(&target, 0o777, &Default::default()) {
            binds += 1;
            drop(bound);
        } else {
            let _ = fs::remove_file(&socket_path);
        }
        let mode = mode_of(&victim);
        if mode != 0o644 {
            changed = Some(mode);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    attacker.join().expect("attacker thread");
    eprintln!(
        "{binds} binds, {} symlink swaps in {:.1} s",
        swaps.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        changed, None,
        "the victim's mode changed from 644 after {binds} binds"
    );
    assert!(binds > 100, "too few binds ({binds}) to exercise the race");
}
