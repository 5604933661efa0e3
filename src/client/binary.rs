//! binary:// client: pack the values with `--format`, send the record,
//! read exactly one record back, decode it.

use std::time::Duration;

use super::transport::Failure;
use super::{Args, Out};

/// Runs one record exchange.
pub(super) fn run(_args: &Args, _timeout: Duration, _out: &Out) -> Result<(), Failure> {
    Err(Failure::Usage("binary:// is not built yet".into()))
}
