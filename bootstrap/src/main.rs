//! `bootstrap`: the AWS Lambda custom runtime of SCAR.

fn main() {
    scar_rootfs::engine::enter_container_if_requested();
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("bootstrap {}", env!("CARGO_PKG_VERSION"));
    }
}
