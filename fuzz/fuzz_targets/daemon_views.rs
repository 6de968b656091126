#![no_main]
//! What a host's daemon state script printed (timedatectl, chronyc).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clockprov::fuzzing::daemon_views(data);
});
