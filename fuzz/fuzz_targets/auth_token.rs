//! See `rohrpost::fuzzing::auth_token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::auth_token(data));
