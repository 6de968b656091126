#![no_main]
//! A host's clock readings (text), against controller times (the input's first bytes).

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (times, text) = data.split_at((data.len() / 2) & !7);
    let controller: Vec<f64> = times
        .chunks_exact(8)
        .map(|b| f64::from_le_bytes(b.try_into().unwrap_or_default()))
        .collect();
    clockprov::fuzzing::clock_readings(&String::from_utf8_lossy(text), &controller);
});
