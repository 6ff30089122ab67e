//! Fuzz target `audit_log`: see [`skm_fuzz::targets::audit_log`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skm_fuzz::targets::audit_log(data));
