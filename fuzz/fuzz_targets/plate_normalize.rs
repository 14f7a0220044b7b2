//! Plate text as OCR or a staff search box gives it, normalised and matched
//! against every country's formats.
//!
//! Must hold: no panic; the normal form is `A-Z0-9` only and normalising it
//! again changes nothing; every candidate's plate is canonical and validates
//! again as its own country with the same plate.
#![no_main]

use inspection_core::plate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let normal = plate::normalize(&text);
    assert!(
        normal
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        "{normal:?}"
    );
    assert_eq!(plate::normalize(&normal), normal);
    if let Ok(candidates) = plate::try_candidates(&text) {
        for c in candidates {
            assert_eq!(plate::normalize(&c.plate), c.plate);
            let again = plate::validate(&c.plate, c.country)
                .unwrap_or_else(|e| panic!("{c:?} does not validate again: {e}"));
            assert_eq!(again.plate, c.plate);
        }
    }
});
