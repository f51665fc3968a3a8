//! The namespace engine: user + mount + PID (+ IPC, UTS) namespaces and `pivot_root`.
