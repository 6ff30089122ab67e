//! Fuzz target `user_ciphertext`: see [`skm_fuzz::targets::user_ciphertext`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skm_fuzz::targets::user_ciphertext(data));
