//! (filled in by the extract work of #17)
