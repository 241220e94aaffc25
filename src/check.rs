//! `pullprobe --check`: probe every target once and explain.
