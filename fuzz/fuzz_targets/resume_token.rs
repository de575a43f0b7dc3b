//! See `rohrpost::fuzzing::resume_token`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::resume_token(data));
