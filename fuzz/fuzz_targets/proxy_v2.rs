//! Fuzz target `proxy_v2`: see [`skm_fuzz::targets::proxy_v2`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skm_fuzz::targets::proxy_v2(data));
