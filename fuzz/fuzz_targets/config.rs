//! Fuzz target `config`: see [`skm_fuzz::targets::config`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skm_fuzz::targets::config(data));
