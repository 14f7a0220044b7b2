//! Pickup-vs-return comparison: frame alignment, model-free change detection, and matching findings in vehicle-relative coordinates.
