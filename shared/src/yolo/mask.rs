//! Instance masks of seg heads: `sigmoid(coeffs · proto)`, cropped to the
//! box and mapped to original-image pixels.

use super::decode::checked_len;
use super::{Detection, Letterbox, YoloError};
use crate::geometry::BBox;

/// The largest mask (in pixels) [`mask_for`] builds: a guard against a
/// letterbox describing an absurd source size (2^28 pixels is 16k x 16k).
const MAX_MASK_PIXELS: u64 = 1 << 28;

/// The prototype output of a seg head (`[1, nm, mh, mw]`, usually
/// `[1, 32, S/4, S/4]`), borrowed from the runtime's buffer.
#[derive(Debug, Clone, Copy)]
pub struct Proto<'a> {
    data: &'a [f32],
    channels: usize,
    height: usize,
    width: usize,
}

impl<'a> Proto<'a> {
    /// Wraps a batch-1 prototype tensor of shape `[1, nm, mh, mw]` (or
    /// `[nm, mh, mw]`).
    pub fn new(data: &'a [f32], shape: &[usize]) -> Result<Self, YoloError> {
        match shape {
            [1, rest @ ..] if rest.len() == 3 => Self::item(data, shape, 0),
            [_, _, _] => Self::item(data, &[1, shape[0], shape[1], shape[2]], 0),
            _ => Err(rank_error(shape)),
        }
    }

    /// Item `batch_index` of a batched prototype tensor `[B, nm, mh, mw]`.
    pub fn item(data: &'a [f32], shape: &[usize], batch_index: usize) -> Result<Self, YoloError> {
        let &[batch, channels, height, width] = shape else {
            return Err(rank_error(shape));
        };
        if channels == 0 || height == 0 || width == 0 {
            return Err(YoloError::ShapeRank {
                what: "mask prototypes",
                expected: "non-zero [batch, mask coefficients, height, width]",
                actual: shape.to_vec(),
            });
        }
        let expected = checked_len("mask prototypes", shape)?;
        if data.len() != expected {
            return Err(YoloError::DataLength {
                what: "mask prototypes",
                shape: shape.to_vec(),
                expected,
                actual: data.len(),
            });
        }
        if batch_index >= batch {
            return Err(YoloError::BatchIndex {
                index: batch_index,
                batch,
            });
        }
        let len = channels * height * width;
        Ok(Self {
            data: &data[batch_index * len..(batch_index + 1) * len],
            channels,
            height,
            width,
        })
    }

    /// Number of prototypes (mask coefficients per detection).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Height of the prototype grid.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Width of the prototype grid.
    pub fn width(&self) -> usize {
        self.width
    }
}

fn rank_error(shape: &[usize]) -> YoloError {
    YoloError::ShapeRank {
        what: "mask prototypes",
        expected: "[batch, mask coefficients, height, width]",
        actual: shape.to_vec(),
    }
}

/// A binary mask over the integer-aligned box of a detection in the original
/// image: `data[y * width + x]` is 1 where pixel `(bbox.x1 + x, bbox.y1 + y)`
/// belongs to the object, else 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mask {
    /// Left edge (column) of the covered region in original pixels.
    pub left: u32,
    /// Top edge (row) of the covered region in original pixels.
    pub top: u32,
    /// Columns covered.
    pub width: u32,
    /// Rows covered.
    pub height: u32,
    /// Row-major 0/1 values, `width * height` of them.
    pub data: Vec<u8>,
}

impl Mask {
    /// The covered region as a box in original pixels (integer corners).
    pub fn bbox(&self) -> BBox {
        BBox {
            x1: self.left as f32,
            y1: self.top as f32,
            x2: self.left.saturating_add(self.width) as f32,
            y2: self.top.saturating_add(self.height) as f32,
        }
    }

    /// Whether original-image pixel `(x, y)` is part of the object; false
    /// outside the covered region.
    pub fn contains(&self, x: u32, y: u32) -> bool {
        let (Some(dx), Some(dy)) = (x.checked_sub(self.left), y.checked_sub(self.top)) else {
            return false;
        };
        if dx >= self.width || dy >= self.height {
            return false;
        }
        self.data
            .get(dy as usize * self.width as usize + dx as usize)
            .is_some_and(|&v| v != 0)
    }

    /// Number of object pixels.
    pub fn area(&self) -> usize {
        self.data.iter().filter(|&&v| v != 0).count()
    }
}

/// Per output column (or row): the two prototype cells to blend and the
/// weight of the second one.
struct Tap {
    i0: usize,
    i1: usize,
    frac: f32,
}

/// Bilinear taps (half-pixel centres, edges clamped, as PyTorch's
/// `interpolate(mode="bilinear", align_corners=False)`) for original pixels
/// `start..start + count` along one axis. `grid >= 1` (checked by [`Proto`]).
fn taps(start: u32, count: u32, scale: f64, pad: u32, grid: usize, size: u32) -> Vec<Tap> {
    let per_px = grid as f64 / f64::from(size);
    let max = (grid - 1) as f64;
    (0..count)
        .map(|i| {
            let letterbox = (f64::from(start + i) + 0.5) * scale + f64::from(pad);
            let u = (letterbox * per_px - 0.5).clamp(0.0, max);
            let i0 = u.floor() as usize;
            let i1 = (i0 + 1).min(grid - 1);
            Tap {
                i0,
                i1,
                frac: (u - i0 as f64) as f32,
            }
        })
        .collect()
}

/// The mask of a seg detection over its box in the original image.
///
/// The mask logits `coeffs · proto` are evaluated on the prototype cells
/// under the box, passed through a sigmoid, sampled bilinearly at the centre
/// of each original pixel (through the letterbox mapping), thresholded at 0.5
/// and cropped to the detection box (a pixel counts when its centre is inside).
pub fn mask_for(
    det: &Detection,
    proto: &Proto<'_>,
    letterbox: &Letterbox,
) -> Result<Mask, YoloError> {
    if det.mask_coeffs.len() != proto.channels {
        return Err(YoloError::MaskCoeffMismatch {
            coeffs: det.mask_coeffs.len(),
            proto_channels: proto.channels,
        });
    }
    let b = det.bbox;
    let (sw, sh) = (letterbox.src_width as f32, letterbox.src_height as f32);
    let degenerate = YoloError::DegenerateBox {
        x1: b.x1,
        y1: b.y1,
        x2: b.x2,
        y2: b.y2,
    };
    // Letterbox fields are public: refuse a zero size or a NaN/negative scale.
    let usable = letterbox.size > 0 && letterbox.scale > 0.0;
    if !b.is_finite() || !usable {
        return Err(degenerate);
    }
    let c = b.clamp_to(sw, sh);
    // Casts saturate; the clamp keeps them within the image anyway.
    let (left, top) = (c.x1.floor() as u32, c.y1.floor() as u32);
    let (right, bottom) = (c.x2.ceil() as u32, c.y2.ceil() as u32);
    if right <= left || bottom <= top || c.area() <= 0.0 {
        return Err(degenerate);
    }
    let (width, height) = (right - left, bottom - top);
    if u64::from(width) * u64::from(height) > MAX_MASK_PIXELS {
        return Err(YoloError::MaskTooLarge { width, height });
    }

    let scale = f64::from(letterbox.scale);
    let (gw, gh) = (proto.width, proto.height);
    let mut tx = taps(left, width, scale, letterbox.pad_x, gw, letterbox.size);
    let mut ty = taps(top, height, scale, letterbox.pad_y, gh, letterbox.size);
    // Only the grid cells under the box are evaluated; taps become relative.
    let (gx0, gx1) = rebase(&mut tx);
    let (gy0, gy1) = rebase(&mut ty);

    // Sigmoid of the logits on the needed sub-grid, accumulated prototype by
    // prototype so each pass reads contiguous rows.
    let (sub_w, sub_h) = (gx1 - gx0 + 1, gy1 - gy0 + 1);
    let mut grid = vec![0.0f32; sub_w * sub_h];
    let plane = gw * gh;
    for (k, &coef) in det.mask_coeffs.iter().enumerate() {
        let p = &proto.data[k * plane..(k + 1) * plane];
        for (gy, out_row) in grid.chunks_exact_mut(sub_w).enumerate() {
            let start = (gy0 + gy) * gw + gx0;
            for (o, &v) in out_row.iter_mut().zip(&p[start..start + sub_w]) {
                *o += coef * v;
            }
        }
    }
    for v in &mut grid {
        *v = 1.0 / (1.0 + (-*v).exp());
    }

    let mut data = vec![0u8; width as usize * height as usize];
    for ((y, t), row) in ty
        .iter()
        .enumerate()
        .zip(data.chunks_exact_mut(width as usize))
    {
        let cy = (top + y as u32) as f32 + 0.5;
        if cy < b.y1 || cy > b.y2 {
            continue;
        }
        let r0 = &grid[t.i0 * sub_w..(t.i0 + 1) * sub_w];
        let r1 = &grid[t.i1 * sub_w..(t.i1 + 1) * sub_w];
        for ((x, s), out) in tx.iter().enumerate().zip(row.iter_mut()) {
            let cx = (left + x as u32) as f32 + 0.5;
            if cx < b.x1 || cx > b.x2 {
                continue;
            }
            let top_v = r0[s.i0] + (r0[s.i1] - r0[s.i0]) * s.frac;
            let bot_v = r1[s.i0] + (r1[s.i1] - r1[s.i0]) * s.frac;
            let v = top_v + (bot_v - top_v) * t.frac;
            *out = u8::from(v > 0.5);
        }
    }
    Ok(Mask {
        left,
        top,
        width,
        height,
        data,
    })
}

/// The lowest and highest grid cell the taps read; the taps are made
/// relative to the lowest.
fn rebase(taps: &mut [Tap]) -> (usize, usize) {
    let lo = taps.iter().map(|t| t.i0).min().unwrap_or(0);
    let hi = taps.iter().map(|t| t.i1).max().unwrap_or(0);
    for t in taps {
        t.i0 -= lo;
        t.i1 -= lo;
    }
    (lo, hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two 8x8 prototypes for a 32x32 input (proto = input / 4): prototype 0
    /// is +10 on the left half and -10 on the right, prototype 1 is 1
    /// everywhere.
    fn proto_data() -> Vec<f32> {
        let mut d = vec![0.0; 2 * 64];
        for y in 0..8 {
            for x in 0..8 {
                d[y * 8 + x] = if x < 4 { 10.0 } else { -10.0 };
                d[64 + y * 8 + x] = 1.0;
            }
        }
        d
    }

    fn det(bbox: BBox, coeffs: Vec<f32>) -> Detection {
        Detection {
            bbox,
            score: 0.9,
            class_id: 0,
            mask_coeffs: coeffs,
        }
    }

    #[test]
    fn mask_follows_the_prototypes_and_the_box() {
        let data = proto_data();
        let proto = Proto::new(&data, &[1, 2, 8, 8]).unwrap();
        // 64x32 source in a 32 input: scale 0.5, pad_y 8.
        let lb = Letterbox::new(64, 32, 32).unwrap();
        assert_eq!((lb.scale, lb.pad_x, lb.pad_y), (0.5, 0, 8));
        let m = mask_for(
            &det(BBox::new(8.0, 4.0, 56.5, 28.0), vec![1.0, 0.0]),
            &proto,
            &lb,
        )
        .unwrap();
        assert_eq!((m.left, m.top, m.width, m.height), (8, 4, 49, 24));
        assert_eq!(m.data.len(), 49 * 24);
        // Left half of the source (x < 32) is the object, right half is not.
        assert!(m.contains(8, 4));
        assert!(m.contains(31, 20));
        assert!(!m.contains(32, 20));
        assert!(!m.contains(56, 10));
        assert!(!m.contains(7, 10), "outside the region");
        assert_eq!(m.area(), 24 * 24);
        assert_eq!(m.bbox(), BBox::new(8.0, 4.0, 57.0, 28.0));

        // Flipped coefficients select the right half; the last column, half
        // covered by the box, has its centre on the edge and counts.
        let m = mask_for(
            &det(BBox::new(8.0, 4.0, 56.5, 28.0), vec![-1.0, 0.0]),
            &proto,
            &lb,
        )
        .unwrap();
        assert!(!m.contains(31, 20));
        assert!(m.contains(32, 20));
        assert!(m.contains(56, 20));
        // The crop: a box over the left quarter only keeps its own pixels.
        let m = mask_for(
            &det(BBox::new(0.0, 0.0, 10.0, 32.0), vec![1.0, 0.0]),
            &proto,
            &lb,
        )
        .unwrap();
        assert_eq!(m.area(), 10 * 32);
        // A constant positive logit fills the box; a negative one empties it.
        let m = mask_for(
            &det(BBox::new(0.0, 0.0, 64.0, 32.0), vec![0.0, 1.0]),
            &proto,
            &lb,
        )
        .unwrap();
        assert_eq!(m.area(), 64 * 32);
        let m = mask_for(
            &det(BBox::new(0.0, 0.0, 64.0, 32.0), vec![0.0, -1.0]),
            &proto,
            &lb,
        )
        .unwrap();
        assert_eq!(m.area(), 0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let data = proto_data();
        let lb = Letterbox::new(64, 32, 32).unwrap();
        let proto = Proto::new(&data, &[2, 8, 8]).unwrap();
        assert_eq!((proto.channels(), proto.height(), proto.width()), (2, 8, 8));
        assert!(matches!(
            mask_for(&det(BBox::new(0.0, 0.0, 5.0, 5.0), vec![]), &proto, &lb),
            Err(YoloError::MaskCoeffMismatch {
                coeffs: 0,
                proto_channels: 2
            })
        ));
        for b in [
            BBox::new(5.0, 5.0, 5.0, 9.0),
            BBox::new(100.0, 0.0, 200.0, 5.0),
            BBox {
                x1: f32::NAN,
                y1: 0.0,
                x2: 5.0,
                y2: 5.0,
            },
        ] {
            assert!(matches!(
                mask_for(&det(b, vec![1.0, 0.0]), &proto, &lb),
                Err(YoloError::DegenerateBox { .. })
            ));
        }
        assert!(matches!(
            Proto::new(&data, &[1, 2, 8]),
            Err(YoloError::DataLength { .. })
        ));
        assert!(matches!(
            Proto::new(&data, &[1, 2, 8, 8, 1]),
            Err(YoloError::ShapeRank { .. })
        ));
        assert!(matches!(
            Proto::new(&data, &[2, 2, 8, 8]),
            Err(YoloError::ShapeRank { .. })
        ));
        assert!(matches!(
            Proto::new(&[], &[1, 0, 8, 8]),
            Err(YoloError::ShapeRank { .. })
        ));
        assert!(matches!(
            Proto::item(&data, &[2, 1, 8, 8], 2),
            Err(YoloError::BatchIndex { index: 2, batch: 2 })
        ));
        let huge = Letterbox::new(40_000, 40_000, 32).unwrap();
        assert!(matches!(
            mask_for(
                &det(BBox::new(0.0, 0.0, 40_000.0, 40_000.0), vec![1.0, 0.0]),
                &proto,
                &huge
            ),
            Err(YoloError::MaskTooLarge { .. })
        ));
        let second = Proto::item(&data, &[2, 1, 8, 8], 1).unwrap();
        assert_eq!(second.data[0], 1.0);
        // NaN coefficients give an empty mask, not a panic.
        let m = mask_for(
            &det(BBox::new(0.0, 0.0, 8.0, 8.0), vec![f32::NAN, 0.0]),
            &proto,
            &lb,
        )
        .unwrap();
        assert_eq!(m.area(), 0);
    }
}
