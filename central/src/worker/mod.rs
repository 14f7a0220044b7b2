//! The `worker` role: claims processing jobs and turns a completed inspection
//! into findings, a plate and a comparison.
//!
//! ```text
//! DESIGN
//!
//! JOBS
//!
//! The bridge's store transaction that completes an inspection (started,
//! completed, every announced frame stored) also queues its
//! `process_inspection` job, so a job exists exactly when there is work.
//! A worker claims the oldest due job with a lease (`lease_s`) and renews it
//! every `heartbeat_s` while it works. A worker killed mid-job stops
//! renewing; when the lease ends another worker claims the job, which counts
//! as an attempt. A failed attempt is retried after an exponential delay
//! with jitter; after the store's `job_max_attempts` the job is dead and the
//! inspection `failed`, with the last error kept for operators.
//!
//! IMAGES
//!
//! Devices upload images over HTTPS after (or while) their events travel
//! over MQTT, so a complete inspection may name images the object store does
//! not have yet. The worker then defers the job (`waiting_for_images`,
//! re-checked every `image_recheck_s`, not counted as an attempt) until
//! `image_wait_s` after the job was queued; after that the inspection is
//! `images_missing` and its status detail names them. An inspection is
//! processed whole or not at all.
//!
//! PER INSPECTION
//!
//! Every image is read and checked again (a complete JPEG; central's quality
//! thresholds): a corrupt or rejected frame is recorded as such and skipped.
//! Usable frames go to the damage model (when one is configured; none ships
//! with the project, which is a state in the result, not an error) and to
//! the plate detector, concurrently: the detectors batch what arrives
//! together. Plate boxes are read by OCR (text detection when the detector
//! found none) and one plate is voted across frames. A return is compared
//! with the newest processed pickup of the same plate, per camera position:
//! model findings matched by class and vehicle-relative overlap are
//! `pre_existing`, the rest `new`; change detection between the best pickup
//! and return frames of each position adds `possible_new_damage` regions that
//! no model finding explains. The result is stored in one transaction.
//!
//! NOTHING ENDS THE LOOP
//!
//! Every error is an attempt's outcome (retried, then dead) or, when the
//! store itself fails, a pause before the next claim. The worker stops only
//! on shutdown, after finishing the jobs it holds.
//! ```

mod config;
mod metrics;
mod pipeline;
mod run;

pub use config::WorkerConfig;
pub use metrics::WorkerMetrics;
pub use pipeline::{Components, Outcome, ProcessError};
pub use run::Worker;
