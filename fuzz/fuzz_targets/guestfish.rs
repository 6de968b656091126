#![no_main]
//! guestfish replies, unit files and dpkg status from images, libvirt domain XML.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    clockprov::fuzzing::guestfish(data);
});
