//! The edge agent's configuration file (TOML), parsed and validated as the
//! agent does at start-up and on SIGHUP.
//!
//! Must hold: no panic; a file is accepted (with the board's identity) or
//! refused with at least one problem; the Debug of an accepted
//! configuration and the text of a refusal can be written (both are logged).
#![no_main]

use edge_agent::config::{Config, FileChecks};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, FileChecks::Off) {
        Ok((config, identity)) => {
            let _ = format!("{config:?} {identity:?}");
        }
        Err(errors) => {
            assert!(!errors.0.is_empty(), "refused without a problem");
            let _ = errors.to_string();
        }
    }
});
