//! See `rohrpost::fuzzing::backend_message`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::backend_message(data));
