//! Axis-aligned boxes in pixel coordinates, shared by detection and the wire.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An axis-aligned box, `x1 <= x2` and `y1 <= y2`, in pixels of the image it
/// refers to (the original camera frame unless a function says otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BBox {
    /// A box from its corners; the corners are reordered if needed.
    pub fn new(x1: f32, y1: f32, x2: f32, y2: f32) -> Self {
        Self {
            x1: x1.min(x2),
            y1: y1.min(y2),
            x2: x1.max(x2),
            y2: y1.max(y2),
        }
    }

    /// A box from its centre and size, the layout YOLOv8 heads emit.
    pub fn from_cxcywh(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        Self::new(cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
    }

    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }

    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }

    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }

    /// The overlap of two boxes, or `None` when they do not overlap.
    pub fn intersection(&self, other: &BBox) -> Option<BBox> {
        let x1 = self.x1.max(other.x1);
        let y1 = self.y1.max(other.y1);
        let x2 = self.x2.min(other.x2);
        let y2 = self.y2.min(other.y2);
        (x2 > x1 && y2 > y1).then_some(BBox { x1, y1, x2, y2 })
    }

    /// Intersection over union in `[0, 1]`; 0 for disjoint or empty boxes.
    pub fn iou(&self, other: &BBox) -> f32 {
        let inter = self.intersection(other).map_or(0.0, |b| b.area());
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// The box limited to an image of `width` x `height` pixels.
    pub fn clamp_to(&self, width: f32, height: f32) -> BBox {
        BBox {
            x1: self.x1.clamp(0.0, width),
            y1: self.y1.clamp(0.0, height),
            x2: self.x2.clamp(0.0, width),
            y2: self.y2.clamp(0.0, height),
        }
    }

    /// True when every coordinate is finite.
    pub fn is_finite(&self) -> bool {
        self.x1.is_finite() && self.y1.is_finite() && self.x2.is_finite() && self.y2.is_finite()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_identical_disjoint_and_half_overlapping_boxes() {
        let a = BBox::new(0.0, 0.0, 10.0, 10.0);
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&BBox::new(20.0, 20.0, 30.0, 30.0)), 0.0);
        // Overlap 5x10 = 50, union 150.
        let b = BBox::new(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
    }

    #[test]
    fn corners_are_reordered_and_cxcywh_converts() {
        assert_eq!(
            BBox::new(10.0, 8.0, 2.0, 4.0),
            BBox::new(2.0, 4.0, 10.0, 8.0)
        );
        assert_eq!(
            BBox::from_cxcywh(5.0, 5.0, 4.0, 2.0),
            BBox::new(3.0, 4.0, 7.0, 6.0)
        );
    }

    #[test]
    fn clamp_keeps_boxes_inside_the_image() {
        let b = BBox::new(-5.0, -1.0, 700.0, 30.0).clamp_to(640.0, 480.0);
        assert_eq!(b, BBox::new(0.0, 0.0, 640.0, 30.0));
    }
}
