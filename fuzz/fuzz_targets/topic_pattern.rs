//! See `rohrpost::fuzzing::topic_pattern`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::topic_pattern(data));
