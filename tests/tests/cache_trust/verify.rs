//! (filled in by the verify work of #17)
