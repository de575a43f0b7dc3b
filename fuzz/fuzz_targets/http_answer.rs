//! See `rohrpost::fuzzing::http_answer`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::http_answer(data));
