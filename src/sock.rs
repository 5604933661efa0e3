//! placeholder
#[derive(clap::Args, Debug)]
pub struct Args {}
pub fn run(_args: Args) -> std::process::ExitCode { std::process::ExitCode::from(2) }
