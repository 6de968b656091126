#![no_main]
//! known_hosts files, and keys checked against them.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clockprov::fuzzing::known_hosts(data);
});
