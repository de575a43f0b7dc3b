//! See `rohrpost::fuzzing::broker_wire`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rohrpost::fuzzing::broker_wire(data));
