//! (filled in by the hygiene work of #17)
