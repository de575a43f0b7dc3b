//! See `rohrpost::fuzzing::client_envelope`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::client_envelope(data));
