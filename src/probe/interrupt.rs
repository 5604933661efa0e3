//! Ctrl-C as a flag that ends a client, ping or bench run through its
//! normal path. The flag is signal state, set by signal-hook's handler
//! (through an `Arc`) and read by `stopped()` in every wait of client,
//! ping and bench, some twenty places deep in their loops: a static spares
//! threading it through each. It is the one process-wide flag the tools
//! keep (ARCHITECTURE.md, "Process-wide state").

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::error::{Exit, Failure};

fn stop_flag() -> &'static Arc<AtomicBool> {
    static STOP: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    STOP.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Makes `signals` set the stop flag instead of killing the process, so a
/// run ends through its normal path: ping prints its summary, bench its
/// report, a client removes its temporary socket file. With `twice`, a
/// second signal while the flag is set ends the process at once, exit 130.
pub fn stop_on(signals: &[libc::c_int], twice: bool) -> Result<(), Failure> {
    for &signal in signals {
        let registered = if twice {
            // Registered first, so it sees the flag as the first signal left it.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                i32::from(Exit::Interrupted.code()),
                Arc::clone(stop_flag()),
            )
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(stop_flag())))
        } else {
            signal_hook::flag::register(signal, Arc::clone(stop_flag()))
        };
        registered.map_err(|err| Failure::io(&format!("cannot handle signal {signal}"), &err))?;
    }
    Ok(())
}

/// True once a signal registered with [`stop_on`] arrived.
pub fn stopped() -> bool {
    stop_flag().load(Ordering::Relaxed)
}

/// The failure of a wait that a signal cut short.
pub fn interrupted() -> Failure {
    Failure::new(Exit::Interrupted, "interrupted")
}
