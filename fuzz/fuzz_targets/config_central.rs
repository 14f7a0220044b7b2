//! central's configuration file as an operator writes it (TOML), parsed and
//! validated as `central run` and `central validate` do.
//!
//! Must hold: no panic; a file is accepted or refused with at least one
//! problem; the Debug of an accepted configuration and the text of a refusal
//! can be written (both are logged).
#![no_main]

use central::config::{Config, FileChecks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, FileChecks::Off) {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a problem");
            let _ = errors.to_string();
        }
    }
});
