#![no_main]
//! OpenSSH client configs and lookups in them; errors name the file and a line.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clockprov::fuzzing::ssh_config(&String::from_utf8_lossy(data));
});
