#![no_main]
//! What a host's facts script printed.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clockprov::fuzzing::facts(data);
});
