//! Scalar numerics shared by every family and tier: the exact software fused
//! multiply-add of the scalar tier, the canonical 16-lane reduction tree and the
//! canonical NaN.

/// The bit pattern of the canonical quiet NaN stored wherever a kernel's NaN result
/// could otherwise carry an instruction-set-dependent payload.
pub const CANONICAL_NAN: u32 = 0x7fc0_0000;

/// `x`, or the canonical quiet NaN ([`CANONICAL_NAN`]) when `x` is a NaN.
#[inline(always)]
pub fn canon_nan(x: f32) -> f32 {
    if x.is_nan() {
        f32::from_bits(CANONICAL_NAN)
    } else {
        x
    }
}

/// The canonical 16-lane reduction tree: `s8[i] = a[i] + a[i+8]`, `s4[i] = s8[i] +
/// s8[i+4]`, `s2[i] = s4[i] + s4[i+2]`, `s2[0] + s2[1]`.
#[inline(always)]
pub fn reduce16(a: &[f32; 16]) -> f32 {
    let mut s8 = [0f32; 8];
    for i in 0..8 {
        s8[i] = a[i] + a[i + 8];
    }
    let s4 = [s8[0] + s8[4], s8[1] + s8[5], s8[2] + s8[6], s8[3] + s8[7]];
    let s2 = [s4[0] + s4[2], s4[1] + s4[3]];
    s2[0] + s2[1]
}

/// Exactly rounded `a * b + c` for f32 without hardware FMA or libm: the product is
/// exact in f64, the f64 sum is rounded to odd (TwoSum + sticky bit), and rounding
/// that to f32 is then the correctly rounded fused result (53 >= 2 * 24 + 2).
#[inline(always)]
pub fn fma_f32(a: f32, b: f32, c: f32) -> f32 {
    let p = a as f64 * b as f64;
    let c = c as f64;
    let s = p + c;
    if !s.is_finite() {
        return s as f32;
    }
    let bb = s - p;
    let err = (p - (s - bb)) + (c - bb);
    let bits = s.to_bits();
    let s = if err != 0.0 && bits & 1 == 0 {
        // Move to the odd neighbour on err's side of s.
        if (err > 0.0) == (s > 0.0) {
            f64::from_bits(bits + 1)
        } else {
            f64::from_bits(bits - 1)
        }
    } else {
        s
    };
    s as f32
}
