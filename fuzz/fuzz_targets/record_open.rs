//! Fuzz target `record_open`: see [`skm_fuzz::targets::record_open`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skm_fuzz::targets::record_open(data));
