//! The vehicle's plate from its frames' reads.

use std::collections::BTreeMap;

use inspection_core::plate::{self, Country};

use crate::store::{PlateOutcome, PlateReadRecord, VehiclePlate};

/// The plate most of the confidence agrees on, from the `Read` records with a
/// plate; `None` without any.
///
/// Reads are grouped by canonical plate; each group weighs the sum of its
/// confidences and the heaviest wins (ties: more votes, then the plate's
/// order, so the result is deterministic). The combined confidence is the
/// winner's share of all read confidence times the chance that not every
/// agreeing read is wrong, `1 - Π(1 - c)`: frames that agree raise it, frames
/// that read another plate lower it.
pub fn vote(reads: &[PlateReadRecord]) -> Option<VehiclePlate> {
    struct Group {
        weight: f32,
        miss: f32,
        votes: u32,
        countries: BTreeMap<String, f32>,
    }
    let mut groups: BTreeMap<&str, Group> = BTreeMap::new();
    let mut total = 0f32;
    let mut readable = 0u32;
    for r in reads {
        let (PlateOutcome::Read, Some(plate)) = (r.outcome, r.plate.as_deref()) else {
            continue;
        };
        let c = r.confidence.clamp(0.0, 1.0);
        readable += 1;
        total += c;
        let g = groups.entry(plate).or_insert(Group {
            weight: 0.0,
            miss: 1.0,
            votes: 0,
            countries: BTreeMap::new(),
        });
        g.weight += c;
        g.miss *= 1.0 - c;
        g.votes += 1;
        if let Some(country) = &r.country {
            *g.countries.entry(country.clone()).or_default() += c;
        }
    }
    let (plate, g) = groups.into_iter().max_by(|(pa, a), (pb, b)| {
        a.weight
            .total_cmp(&b.weight)
            .then(a.votes.cmp(&b.votes))
            .then(pb.cmp(pa))
    })?;
    let country = g
        .countries
        .iter()
        .max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(c, _)| c.clone())
        .unwrap_or_default();
    let display = country
        .parse::<Country>()
        .ok()
        .and_then(|c| plate::validate(plate, c).ok())
        .map_or_else(|| plate.to_owned(), |c| c.display);
    let share = if total > 0.0 { g.weight / total } else { 0.0 };
    Some(VehiclePlate {
        plate: plate.to_owned(),
        display,
        country,
        confidence: share * (1.0 - g.miss),
        votes: g.votes,
        readable_frames: readable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use inspection_core::ids::CameraId;

    fn read(plate: &str, country: &str, confidence: f32) -> PlateReadRecord {
        PlateReadRecord {
            camera: "front".parse::<CameraId>().unwrap(),
            sha256: "0".repeat(64),
            outcome: PlateOutcome::Read,
            bbox: None,
            box_source: None,
            raw_text: Some(plate.into()),
            plate: Some(plate.into()),
            country: Some(country.into()),
            confidence,
        }
    }

    fn unreadable() -> PlateReadRecord {
        PlateReadRecord {
            outcome: PlateOutcome::Unreadable,
            plate: None,
            country: None,
            confidence: 0.3,
            ..read("X", "DE", 0.3)
        }
    }

    #[test]
    fn agreeing_frames_win_and_raise_the_confidence() {
        let one = vote(&[read("ABC123", "BE", 0.9)]).unwrap();
        let three = vote(&[
            read("ABC123", "BE", 0.9),
            read("ABC123", "BE", 0.85),
            unreadable(),
            read("ABC123", "BE", 0.92),
        ])
        .unwrap();
        assert_eq!(three.plate, "ABC123");
        assert_eq!(three.country, "BE");
        assert_eq!(three.display, "ABC-123");
        assert_eq!((three.votes, three.readable_frames), (3, 3));
        assert!((one.confidence - 0.9).abs() < 1e-6, "{one:?}");
        assert!(three.confidence > one.confidence, "{three:?}");
    }

    #[test]
    fn disagreement_lowers_the_confidence() {
        let agree = vote(&[read("AB123CD", "FR", 0.9), read("AB123CD", "FR", 0.9)]).unwrap();
        let split = vote(&[
            read("AB123CD", "FR", 0.9),
            read("AB123CD", "FR", 0.9),
            read("AB128CD", "FR", 0.85),
        ])
        .unwrap();
        assert_eq!(split.plate, "AB123CD");
        assert_eq!(split.display, "AB-123-CD");
        assert_eq!((split.votes, split.readable_frames), (2, 3));
        assert!(
            split.confidence < agree.confidence - 0.2,
            "{split:?} vs {agree:?}"
        );
    }

    #[test]
    fn confidence_outweighs_a_count_of_weak_reads() {
        let v = vote(&[
            read("AB123CD", "FR", 0.99),
            read("AB123CD", "FR", 0.98),
            read("AB128CD", "FR", 0.81),
            read("AB128CD", "FR", 0.81),
        ])
        .unwrap();
        assert_eq!(v.plate, "AB123CD");
        assert!(v.confidence < 0.6, "{v:?}");
    }

    #[test]
    fn no_reads_no_plate() {
        assert_eq!(vote(&[]), None);
        assert_eq!(vote(&[unreadable(), unreadable()]), None);
    }
}
