//! Wire events for store tests and the store benchmark.

#![allow(dead_code)]

use inspection_core::wire::{Event, examples};
use uuid::Uuid;

/// The example inspection (`examples::inspection()`) with fresh ids: a new
/// inspection id and message ids, `seq` from `first_seq`.
pub fn inspection(first_seq: u64) -> Vec<Event> {
    let inspection_id = Uuid::now_v7();
    examples::inspection()
        .into_iter()
        .enumerate()
        .map(|(i, mut e)| {
            e.msg_id = Uuid::now_v7();
            e.seq = first_seq + i as u64;
            e.inspection_id = Some(inspection_id);
            e
        })
        .collect()
}
