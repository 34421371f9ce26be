#![forbid(unsafe_code)]
//! Links the `berth` binary with packed relative relocations (`DT_RELR`, glibc ≥ 2.36,
//! binutils ≥ 2.38): its table of relocations, which the dynamic loader reads whole at every
//! start, shrinks from ~420 KB to a few KB, and so does the agent's resident memory
//! (README "Performance"). Older linkers ignore the option with a warning.

fn main() {
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
