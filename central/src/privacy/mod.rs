//! Personal data kept out of places it does not belong: endpoints outside
//! the EU refused ([`ResidencyConfig`]), vehicles in logs as keyed hashes
//! ([`vehicle_tag`]). DATA-PROTECTION.md has the whole picture.

mod residency;
mod tag;

pub use residency::{EU_REGIONS, Region, ResidencyConfig, Verdict};
pub use tag::{LogKeyError, init_log_key, vehicle_tag};
