//! Fuzz target `pkcs12`: see [`skm_fuzz::targets::pkcs12`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skm_fuzz::targets::pkcs12(data));
