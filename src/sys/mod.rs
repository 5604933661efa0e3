//! The one home of libc calls and `unsafe` (issue 20): each file wraps
//! what the libc crate or std lack in safe functions, and the rest of the
//! crate calls those.

pub mod cpu;
pub mod mmsg;
pub mod process;
pub mod resolver;
pub mod rlimit;
pub mod signal;
pub mod socket;
pub mod term;
pub mod timerfd;
