#![no_main]
//! The inventory: YAML, fields, inventory-wide checks; errors name the file and a line.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    clockprov::fuzzing::yaml(&text);
    clockprov::fuzzing::inventory(&text);
});
