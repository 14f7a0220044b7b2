//! Findings in vehicle-relative coordinates, and matching a return inspection's findings to the pickup's.

use crate::BBox;

/// Expresses `bbox` relative to the vehicle's box: the vehicle spans 0-1 on
/// each axis, so the same spot of the car has the same coordinates in two
/// photos taken from slightly different places.
///
/// A vehicle box narrower or lower than one pixel is treated as one pixel,
/// so the result is always finite for finite input.
pub fn to_vehicle_relative(bbox: &BBox, vehicle: &BBox) -> BBox {
    let (vw, vh) = (vehicle.width().max(1.0), vehicle.height().max(1.0));
    BBox::new(
        (bbox.x1 - vehicle.x1) / vw,
        (bbox.y1 - vehicle.y1) / vh,
        (bbox.x2 - vehicle.x1) / vw,
        (bbox.y2 - vehicle.y1) / vh,
    )
}

/// The inverse of [`to_vehicle_relative`]: a vehicle-relative box back in
/// the pixels of the frame `vehicle` is given in.
pub fn from_vehicle_relative(relative: &BBox, vehicle: &BBox) -> BBox {
    let (vw, vh) = (vehicle.width().max(1.0), vehicle.height().max(1.0));
    BBox::new(
        vehicle.x1 + relative.x1 * vw,
        vehicle.y1 + relative.y1 * vh,
        vehicle.x1 + relative.x2 * vw,
        vehicle.y1 + relative.y2 * vh,
    )
}

/// Matches each return finding to a pickup finding of the same class, so the
/// caller can label it `pre-existing` (matched) or `new` (unmatched).
///
/// Both lists hold `(class, box)` with boxes in vehicle-relative coordinates
/// (see [`to_vehicle_relative`]). Pairs are taken greedily by descending
/// IoU (ties: lower return index, then lower pickup index, so the result is
/// deterministic); a pair needs the same class and an IoU of at least
/// `min_iou` (and above 0), and each pickup finding is used at most once.
/// The result has one entry per return finding: the index of its pickup
/// finding, or `None` when it is new.
///
/// Greedy is what detection evaluation (COCO, Pascal VOC) uses; an optimal
/// assignment only differs when boxes overlap several others almost equally,
/// where neither answer is clearly right and a reviewer looks anyway.
pub fn match_findings<C: PartialEq>(
    pickup: &[(C, BBox)],
    ret: &[(C, BBox)],
    min_iou: f32,
) -> Vec<Option<usize>> {
    let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
    for (ri, (rc, rb)) in ret.iter().enumerate() {
        for (pi, (pc, pb)) in pickup.iter().enumerate() {
            if rc != pc {
                continue;
            }
            let iou = rb.iou(pb);
            if iou > 0.0 && iou >= min_iou {
                pairs.push((iou, ri, pi));
            }
        }
    }
    pairs.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let mut matched = vec![None; ret.len()];
    let mut used = vec![false; pickup.len()];
    for (_, ri, pi) in pairs {
        if matched[ri].is_none() && !used[pi] {
            matched[ri] = Some(pi);
            used[pi] = true;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_coordinates_round_trip() {
        let vehicle = BBox::new(100.0, 50.0, 500.0, 250.0);
        let b = BBox::new(200.0, 100.0, 300.0, 150.0);
        let rel = to_vehicle_relative(&b, &vehicle);
        assert_eq!(rel, BBox::new(0.25, 0.25, 0.5, 0.5));
        assert_eq!(from_vehicle_relative(&rel, &vehicle), b);
        let degenerate = BBox::new(10.0, 10.0, 10.0, 10.0);
        assert!(to_vehicle_relative(&b, &degenerate).is_finite());
    }

    #[test]
    fn the_same_spot_matches_after_the_car_moved() {
        // The car stood 40 px further right and 10% larger at return.
        let pick_vehicle = BBox::new(100.0, 50.0, 500.0, 250.0);
        let ret_vehicle = BBox::new(140.0, 40.0, 580.0, 260.0);
        let pick_dent = BBox::new(200.0, 100.0, 240.0, 130.0);
        let ret_dent = BBox::new(250.0, 95.0, 294.0, 128.0);
        let raw_iou = pick_dent.iou(&ret_dent);
        let p = [("dent", to_vehicle_relative(&pick_dent, &pick_vehicle))];
        let r = [("dent", to_vehicle_relative(&ret_dent, &ret_vehicle))];
        assert!(raw_iou < 0.1, "{raw_iou}");
        assert_eq!(match_findings(&p, &r, 0.5), vec![Some(0)]);
    }

    #[test]
    fn greedy_same_class_each_pickup_once() {
        let a = BBox::new(0.1, 0.1, 0.3, 0.3);
        let a_shifted = BBox::new(0.12, 0.1, 0.32, 0.3);
        let a_far = BBox::new(0.15, 0.12, 0.35, 0.32);
        let b = BBox::new(0.6, 0.6, 0.8, 0.8);
        let pickup = [("scratch", a), ("dent", b)];
        let ret = [
            ("scratch", a_far),     // overlaps `a`, but less than the next one
            ("scratch", a_shifted), // best match for `a`
            ("scratch", b),         // same place as the dent, other class: new
            ("dent", b),            // pre-existing
        ];
        assert_eq!(
            match_findings(&pickup, &ret, 0.3),
            vec![None, Some(0), None, Some(1)]
        );
        assert_eq!(
            match_findings(&pickup, &ret, 0.99),
            vec![None, None, None, Some(1)]
        );
        assert!(
            match_findings::<&str>(&[], &ret, 0.5)
                .iter()
                .all(Option::is_none)
        );
    }
}
