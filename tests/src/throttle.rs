//! The bandwidth-holding loopback proxy now lives in `scar-tools` (`scar bench` drives it too);
//! re-exported here so the tests keep their `scar_e2e::throttle` path.

pub use scar_tools::throttle::*;
