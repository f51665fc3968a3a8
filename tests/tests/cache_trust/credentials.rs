//! (filled in by the credentials work of #17)
