//! Fuzz target `pki_client_chain`: see [`skm_fuzz::targets::pki_client_chain`].

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| skm_fuzz::targets::pki_client_chain(data));
