#![forbid(unsafe_code)]
//! `berth` itself, built in the e2e package for its tests.

fn main() -> std::process::ExitCode {
    berth::main_entry()
}
