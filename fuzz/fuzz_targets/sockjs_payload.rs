//! See `rohrpost::fuzzing::sockjs_payload`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::sockjs_payload(data));
