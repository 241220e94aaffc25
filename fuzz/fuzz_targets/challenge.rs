#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| pullprobe_fuzz::challenge(data));
