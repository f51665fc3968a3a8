//! Link the audit module without any C library: no `DT_NEEDED` entry at all, and an undefined
//! symbol is a link error rather than a loader failure in every container process.

fn main() {
    println!("cargo:rustc-cdylib-link-arg=-nostdlib");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,defs");
    println!("cargo:rerun-if-changed=build.rs");
}
