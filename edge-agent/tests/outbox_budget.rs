//! The byte budget under a flood: it holds after every append, frames go
//! lowest priority and oldest first, events stay (unless configured), and the
//! drop counters equal what the test itself saw disappear.

#[path = "outbox_support/mod.rs"]
mod support;

use std::collections::BTreeMap;

use edge_agent::outbox::{EntryId, EntryKind, OutboxConfig, OutboxError, Priority};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use support::{config, event, image, metric, open};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Event,
    Image,
}

#[derive(Debug, Clone)]
struct Live {
    kind: Kind,
    priority: Priority,
    size: u64,
    key: String,
}

/// What the test believes is in the outbox, checked against it after every
/// operation.
#[derive(Default)]
struct Model {
    live: BTreeMap<EntryId, Live>,
    evicted: [u64; 2],
    refused: [u64; 2],
    too_large: [u64; 2],
}

fn idx(kind: Kind) -> usize {
    match kind {
        Kind::Event => 0,
        Kind::Image => 1,
    }
}

fn actual(o: &edge_agent::outbox::Outbox) -> BTreeMap<EntryId, (Kind, Priority, u64)> {
    o.pending(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|e| {
            let (kind, size) = match &e.kind {
                EntryKind::Event { payload, .. } => (Kind::Event, payload.len()),
                EntryKind::Image { jpeg, .. } => (Kind::Image, jpeg.len()),
            };
            (e.id, (kind, e.priority, size as u64))
        })
        .collect()
}

impl Model {
    /// Reconciles after an append of `new` (with its priority) that
    /// returned `result`; checks the eviction policy on what vanished.
    fn after_append(
        &mut self,
        o: &edge_agent::outbox::Outbox,
        cfg: &OutboxConfig,
        new: (Kind, Priority, u64, String),
        result: Result<EntryId, &OutboxError>,
    ) {
        let now = actual(o);
        let (kind, priority, size, key) = new;
        match result {
            Ok(id) => {
                let vanished: Vec<(EntryId, Live)> = self
                    .live
                    .iter()
                    .filter(|(id, _)| !now.contains_key(id))
                    .map(|(id, l)| (*id, l.clone()))
                    .collect();
                for (id, gone) in &vanished {
                    self.live.remove(id);
                    assert!(
                        gone.kind == Kind::Image || cfg.evict_events,
                        "an event was evicted: {gone:?}"
                    );
                    assert!(
                        gone.priority <= priority,
                        "evicted {gone:?} ranks above the newcomer {priority:?}"
                    );
                    self.evicted[idx(gone.kind)] += 1;
                }
                // Nothing that stays may rank below anything evicted, among
                // the entries the newcomer was allowed to evict.
                if let Some(worst_kept) = self
                    .live
                    .iter()
                    .filter(|(_, l)| {
                        l.priority <= priority && (l.kind == Kind::Image || cfg.evict_events)
                    })
                    .map(|(id, l)| (l.priority, *id))
                    .min()
                {
                    for (id, gone) in &vanished {
                        assert!(
                            (gone.priority, *id) < worst_kept,
                            "evicted {gone:?} (id {id:?}) while {worst_kept:?} stays"
                        );
                    }
                }
                self.live.insert(
                    id,
                    Live {
                        kind,
                        priority,
                        size,
                        key,
                    },
                );
            }
            Err(OutboxError::Full { .. }) => {
                self.refused[idx(kind)] += 1;
                // Refused means nothing was evicted either...
                assert_eq!(now.len(), self.live.len(), "a refusal evicted entries");
                // ...and refusing was right: all it could evict is too little.
                let evictable: u64 = self
                    .live
                    .values()
                    .filter(|l| {
                        l.priority <= priority && (l.kind == Kind::Image || cfg.evict_events)
                    })
                    .map(|l| l.size)
                    .sum();
                let total: u64 = self.live.values().map(|l| l.size).sum();
                assert!(total + size - evictable > cfg.max_bytes);
            }
            Err(OutboxError::TooLarge { size: s, max_bytes }) => {
                assert!(*s > *max_bytes && *s == size);
                self.too_large[idx(kind)] += 1;
                assert_eq!(now.len(), self.live.len(), "a refusal evicted entries");
            }
            Err(other) => panic!("unexpected error {other}"),
        }
        // The outbox holds exactly the model, and within the budget.
        let model: BTreeMap<EntryId, (Kind, Priority, u64)> = self
            .live
            .iter()
            .map(|(id, l)| (*id, (l.kind, l.priority, l.size)))
            .collect();
        assert_eq!(now, model);
        let bytes: u64 = model.values().map(|(_, _, s)| s).sum();
        let stats = o.stats().unwrap();
        assert_eq!(stats.bytes, bytes);
        assert_eq!(stats.entries, model.len() as u64);
        assert!(
            bytes <= cfg.max_bytes,
            "{bytes} bytes exceed the budget of {}",
            cfg.max_bytes
        );
    }
}

/// `steps` random operations: `event_pct`% events, 10% acks, the rest
/// frames of 5-60 KB ranked 1-5.
fn flood(cfg: OutboxConfig, seed: u64, steps: usize, event_pct: u32) -> Model {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut o = open(&cfg);
    let mut model = Model::default();
    let inspection = Uuid::now_v7();
    for n in 0..steps as u64 {
        let roll = rng.random_range(0..100);
        if roll < event_pct {
            // Every event encodes to the same length but for its seq digits.
            let next = event(o.outbox.last_seq() + 1, Uuid::nil());
            let size = inspection_core::wire::encode(&next).unwrap().len() as u64;
            let r = o.outbox.append_event(event);
            let key = r.as_ref().map(|a| a.msg_id.to_string()).unwrap_or_default();
            model.after_append(
                &o.outbox,
                &cfg,
                (Kind::Event, Priority::EVENT, size, key),
                r.as_ref().map(|a| a.entry.id),
            );
        } else if roll < 90 {
            let size = rng.random_range(5_000..60_000);
            let rank = rng.random_range(1..=5);
            let (sha, jpeg) = image(seed * 1_000_000 + n, size);
            let priority = Priority::frame(rank);
            let r = o.outbox.append_image(&sha, &jpeg, priority, inspection);
            model.after_append(
                &o.outbox,
                &cfg,
                (Kind::Image, priority, size as u64, sha.to_string()),
                r.as_ref().map(|a| a.id),
            );
        } else if let Some((&id, live)) = model
            .live
            .iter()
            .nth(rng.random_range(0..model.live.len().max(1)))
        {
            // The transport acks something now and then.
            let live = live.clone();
            match live.kind {
                Kind::Event => {
                    let msg: Uuid = live.key.parse().unwrap();
                    assert_eq!(o.outbox.ack_events(&[msg]).unwrap(), 1);
                }
                Kind::Image => {
                    assert!(o.outbox.ack_image(&live.key.parse().unwrap()).unwrap());
                }
            }
            model.live.remove(&id);
        }
    }
    // The counters say exactly what the test saw.
    let r = &o.registry;
    let series = |kind: &str, reason: &str| {
        metric(
            r,
            &format!("edge_outbox_dropped_total{{kind=\"{kind}\",reason=\"{reason}\"}}"),
        ) as u64
    };
    assert_eq!(series("image", "evicted_for_space"), model.evicted[1]);
    assert_eq!(series("event", "evicted_for_space"), model.evicted[0]);
    assert_eq!(series("image", "refused_full"), model.refused[1]);
    assert_eq!(series("event", "refused_full"), model.refused[0]);
    assert_eq!(series("image", "too_large"), model.too_large[1]);
    let dropped: u64 = model
        .evicted
        .iter()
        .chain(&model.refused)
        .chain(&model.too_large)
        .sum();
    assert_eq!(o.outbox.stats().unwrap().dropped_total, dropped);
    model
}

#[test]
fn a_flood_of_frames_keeps_the_budget_and_never_evicts_events() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        max_bytes: 600_000,
        ..config(dir.path())
    };
    let model = flood(cfg, 1, 800, 20);
    assert!(
        model.evicted[1] > 100,
        "the flood must evict: {}",
        model.evicted[1]
    );
    assert_eq!(model.evicted[0], 0);
    assert!(
        model.refused[1] > 0,
        "low-ranked frames must be refused at times"
    );
}

#[test]
fn with_evict_events_events_go_too_but_only_after_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        max_bytes: 50_000,
        evict_events: true,
        ..config(dir.path())
    };
    let model = flood(cfg, 2, 600, 80);
    assert!(model.evicted[1] > 0, "frames must be evicted");
    assert!(model.evicted[0] > 0, "events must be evicted too");
    // Events rank 255, above every frame: the model's order check means no
    // event went while a frame was there to go instead.
}

#[test]
fn events_alone_fill_the_budget_then_are_refused_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        max_bytes: 20_000,
        ..config(dir.path())
    };
    let mut o = open(&cfg);
    let (sha, jpeg) = image(1, 5_000);
    o.outbox
        .append_image(&sha, &jpeg, Priority::frame(1), Uuid::now_v7())
        .unwrap();
    let mut stored = 0u64;
    let err = loop {
        match o.outbox.append_event(event) {
            Ok(a) => {
                stored += 1;
                assert_eq!(a.seq, stored);
            }
            Err(e) => break e,
        }
    };
    assert!(matches!(err, OutboxError::Full { .. }), "{err}");
    // The frame went first, to make room for events.
    assert_eq!(
        metric(
            &o.registry,
            "edge_outbox_dropped_total{kind=\"image\",reason=\"evicted_for_space\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &o.registry,
            "edge_outbox_dropped_total{kind=\"event\",reason=\"refused_full\"}"
        ),
        1.0
    );
    // A refused event consumes no seq: the next one that fits continues.
    let first = o.outbox.pending(1).unwrap()[0].clone();
    if let EntryKind::Event { msg_id, .. } = first.kind {
        o.outbox.ack_events(&[msg_id]).unwrap();
    }
    assert_eq!(o.outbox.append_event(event).unwrap().seq, stored + 1);

    let (big_sha, big) = image(2, 20_001);
    let err = o
        .outbox
        .append_image(&big_sha, &big, Priority::frame(1), Uuid::now_v7())
        .unwrap_err();
    assert!(matches!(err, OutboxError::TooLarge { .. }), "{err}");
    assert_eq!(
        metric(
            &o.registry,
            "edge_outbox_dropped_total{kind=\"image\",reason=\"too_large\"}"
        ),
        1.0
    );
}

#[test]
fn a_worse_frame_never_displaces_a_better_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = OutboxConfig {
        max_bytes: 30_000,
        ..config(dir.path())
    };
    let mut o = open(&cfg);
    let inspection = Uuid::now_v7();
    for n in 0..3 {
        let (sha, jpeg) = image(n, 10_000);
        o.outbox
            .append_image(&sha, &jpeg, Priority::frame(1), inspection)
            .unwrap();
    }
    let (sha, jpeg) = image(10, 10_000);
    let err = o
        .outbox
        .append_image(&sha, &jpeg, Priority::frame(3), inspection)
        .unwrap_err();
    assert!(matches!(err, OutboxError::Full { .. }), "{err}");
    // Same rank: the oldest goes.
    let before = o.outbox.pending(10).unwrap();
    let (sha, jpeg) = image(11, 10_000);
    let a = o
        .outbox
        .append_image(&sha, &jpeg, Priority::frame(1), inspection)
        .unwrap();
    assert_eq!(a.evicted, 1);
    let after: Vec<EntryId> = o.outbox.pending(10).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(after, vec![before[1].id, before[2].id, a.id]);
}
