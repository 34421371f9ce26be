#![forbid(unsafe_code)]
//! The `berth` binary; see the library crate for everything.

fn main() -> std::process::ExitCode {
    berth::main_entry()
}
