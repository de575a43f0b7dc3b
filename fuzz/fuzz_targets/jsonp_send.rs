//! See `rohrpost::fuzzing::jsonp_send`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::jsonp_send(data));
