//! Fuzz target `kms_requests`: see [`skm_fuzz::targets::kms_requests`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skm_fuzz::targets::kms_requests(data));
