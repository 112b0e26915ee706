//! The scalar and lane-wise numerics of attention shared by every tier: the canonical
//! exp2 (written once over [`Tier`]), the f64 logarithm and exponential of the
//! log-sum-exps, the output rounding and the packed (canonical) element order.

use super::OutType;
use crate::simd::{self, Elem, Kind, Tier};
use half::{bf16, f16};

/// The exp2 polynomial on `[-0.5, 0.5]`, highest degree first (Cephes `exp2f`).
pub const EXP2_POLY: [f32; 7] = [
    1.535_336_2e-4,
    1.339_887_4e-3,
    9.618_437_4e-3,
    5.550_332_5e-2,
    2.402_264_8e-1,
    6.931_472e-1,
    1.0,
];
/// The round-to-nearest shifter `1.5 * 2^23`.
pub const SHIFTER: f32 = 12_582_912.0;
/// Below this, `exp2` returns +0 (so `2^n` never leaves the normal range).
pub const EXP2_MIN: f32 = -125.0;

/// The canonical exp2 of every lane (see the module doc of `attend`): NaN for NaN, `+0`
/// below [`EXP2_MIN`], else `2^n * p(t - n)` with `n = round_half_even(t)`.
#[inline(always)]
pub(crate) fn exp2v<S: Tier>(t: S::F) -> S::F {
    let sh = S::splat(SHIFTER);
    let r = S::add(t, sh);
    let n = S::sub(r, sh);
    let f = S::sub(t, n);
    let mut y = S::splat(EXP2_POLY[0]);
    for &c in &EXP2_POLY[1..] {
        y = S::fma(y, f, S::splat(c));
    }
    let ni = S::shl23(S::sub_i(S::bits(r), S::bits(sh)));
    let res = S::from_bits(S::add_i(S::bits(y), ni));
    let res = S::select(S::lt(t, S::splat(EXP2_MIN)), S::splat(0.0), res);
    S::select(S::is_nan(t), t, res)
}

/// The canonical exp2 of one value (the scalar tier's lane of [`exp2v`]).
#[inline(always)]
pub fn exp2_f32(t: f32) -> f32 {
    exp2v::<simd::Scalar>(t)
}

/// `c = scale * log2(e)`, rounded once.
#[inline(always)]
pub fn scale_log2e(scale: f32) -> f32 {
    (scale as f64 * core::f64::consts::LOG2_E) as f32
}

/// The ALiBi term of one (query head, query, key) in the log2 domain:
/// `f32(-slope * log2(e)) * f32(|q_pos - k_pos|)`, each factor rounded once (the
/// distance is exact below 2^24), the product rounded once. Scalar code, the same on
/// every tier.
#[inline(always)]
pub fn alibi_log2(slope: f32, q_pos: u32, k_pos: u32) -> f32 {
    let s = (-(slope as f64) * core::f64::consts::LOG2_E) as f32;
    s * q_pos.abs_diff(k_pos) as f32
}

/// Above this `|y|`, `tanh(y)` rounds to 1 in f32 (the argument of [`logitv`]'s exp is
/// clamped here so it stays finite).
pub const TANH_CLAMP: f32 = 10.0;

/// How a dot product `s` becomes a logit in the log2 domain: `c * s` with
/// `c = scale * log2(e)`, or with a logit softcap `cap > 0`,
/// `(cap * log2(e)) * tanh(s * (scale / cap))` (Gemma 2's `cap * tanh(scale s / cap)`).
/// Every constant is rounded once, so every tier computes the same bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Logit {
    /// `scale * log2(e)` (no softcap).
    pub c: f32,
    /// `scale / cap`; 0 without a softcap.
    pub k1: f32,
    /// `cap * log2(e)`; 0 without a softcap.
    pub k2: f32,
}

impl Logit {
    /// `softcap = 0`: none; otherwise finite and > 0 (the callers validate).
    pub fn new(scale: f32, softcap: f32) -> Self {
        if softcap == 0.0 {
            Logit {
                c: scale_log2e(scale),
                k1: 0.0,
                k2: 0.0,
            }
        } else {
            Logit {
                c: 0.0,
                k1: (scale as f64 / softcap as f64) as f32,
                k2: (softcap as f64 * core::f64::consts::LOG2_E) as f32,
            }
        }
    }
}

/// The log2-domain logit of every lane (see [`Logit`]). The softcap's tanh is
/// `sign(y) (1 - 2 / (exp(2 |y|) + 1))` with the canonical [`exp2v`] and `|y|` clamped
/// to [`TANH_CLAMP`]: absolute error below 2^-22, so the logit's is below
/// `2^-22 * cap * log2(e)` plus the dot product's (tanh contracts it). NaN stays NaN;
/// `s = +-inf` gives `+-cap`.
#[inline(always)]
pub(crate) fn logitv<S: Tier>(lg: Logit, s: S::F) -> S::F {
    if lg.k2 == 0.0 {
        return S::mul(s, S::splat(lg.c));
    }
    let y = S::mul(s, S::splat(lg.k1));
    let a = S::min(S::abs(y), S::splat(TANH_CLAMP));
    let e = exp2v::<S>(S::mul(a, S::splat(2.0 * core::f32::consts::LOG2_E)));
    let one = S::splat(1.0);
    let t = S::sub(one, S::div(S::splat(2.0), S::add(e, one)));
    let t = S::mul(t, S::splat(lg.k2));
    let r = S::select(S::sign(y), S::sub(S::splat(0.0), t), t);
    S::select(S::is_nan(y), y, r)
}

/// `ln(2) * (m + log2(l))` in f64, rounded once.
#[inline(always)]
pub fn lse_of(m: f32, l: f32) -> f32 {
    (m as f64 * core::f64::consts::LN_2 + ln_f64(l as f64)) as f32
}

/// Natural logarithm in f64 for finite `x > 0` (within 2 ulp; portable, so identical on
/// every tier). `ln(0) = -inf`, `ln(+inf) = +inf`, NaN and negatives give NaN.
pub fn ln_f64(x: f64) -> f64 {
    if x.is_nan() || x < 0.0 {
        return f64::NAN;
    }
    if x == 0.0 {
        return f64::NEG_INFINITY;
    }
    if x.is_infinite() {
        return x;
    }
    let (mut x, mut e) = (x, 0i64);
    if x < f64::MIN_POSITIVE {
        x *= 2f64.powi(60);
        e -= 60;
    }
    let bits = x.to_bits();
    e += ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
    if m > core::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln(m) = 2 atanh(z), z = (m - 1) / (m + 1), |z| < 0.172.
    let z = (m - 1.0) / (m + 1.0);
    let z2 = z * z;
    let mut s = 0.0;
    let mut k = 27.0;
    while k > 1.0 {
        s = (s + 1.0 / k) * z2;
        k -= 2.0;
    }
    let ln_m = 2.0 * z * (1.0 + s);
    e as f64 * core::f64::consts::LN_2 + ln_m
}

/// `exp(x)` in f64 for `x <= 0` (NaN for NaN, 0 below -745; within 2 ulp); portable.
pub fn exp_f64(x: f64) -> f64 {
    if x.is_nan() {
        return x;
    }
    if x < -745.0 {
        return 0.0;
    }
    if x > 709.0 {
        return f64::INFINITY;
    }
    let n = (x * core::f64::consts::LOG2_E + 6_755_399_441_055_744.0) - 6_755_399_441_055_744.0;
    // Cody-Waite: ln2 = hi + lo with hi exact in 32 bits.
    const LN2_HI: f64 = 6.931_471_803_691_238_2e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    // Taylor to degree 13 on |r| <= 0.347: truncation below 1e-17.
    let mut p = 1.0;
    let mut k = 13.0;
    while k >= 1.0 {
        p = 1.0 + r * p / k;
        k -= 1.0;
    }
    let ni = n as i64;
    if ni < -1020 {
        p * f64::from_bits(((ni + 1023 + 60) as u64) << 52) * 2f64.powi(-60)
    } else {
        p * f64::from_bits(((ni + 1023) as u64) << 52)
    }
}

/// `x`, or the canonical quiet NaN (0x7fc00000) when `x` is a NaN: the tiers may reach
/// a NaN through differently ordered operations, which on x86 keep different operands'
/// payloads, so every NaN result is stored canonically to stay bit-identical.
#[inline(always)]
pub fn canon_nan(x: f32) -> f32 {
    crate::numerics::canon_nan(x)
}

/// Rounds and stores `x` as the output type at `p` (element offset `e`); a NaN is
/// stored as the type's canonical quiet NaN (f32 0x7fc00000, f16 0x7e00, bf16 0x7fc0).
///
/// # Safety
/// `p` valid for element `e` of `t`.
#[inline(always)]
pub unsafe fn store_out(p: *mut u8, t: OutType, e: usize, x: f32) {
    let x = canon_nan(x);
    // SAFETY: the caller guarantees element e of type t is writable at p (unaligned
    // writes, since the safe API only checks alignment of the element type).
    unsafe {
        match t {
            OutType::F32 => (p as *mut f32).add(e).write_unaligned(x),
            OutType::F16 => (p as *mut u16)
                .add(e)
                .write_unaligned(f16::from_f32(x).to_bits()),
            OutType::BF16 => (p as *mut u16)
                .add(e)
                .write_unaligned(bf16::from_f32(x).to_bits()),
        }
    }
}

/// Where element `j` of a row lives in the packed f32 layout of queries and output
/// accumulators: the identity for f32/f16; for bf16 each chunk of 32 holds its 16 odd
/// elements, then its 16 even elements (the order in which the lanes consume them).
#[inline(always)]
pub fn canon_pos<T: Elem>(j: usize) -> usize {
    if T::KIND == Kind::BF16 {
        let c = j & !31;
        let t = j & 31;
        if t & 1 == 1 {
            c + (t >> 1)
        } else {
            c + 16 + (t >> 1)
        }
    } else {
        j
    }
}

/// `d` rounded up to a multiple of 32.
#[inline(always)]
pub const fn pad32(d: usize) -> usize {
    (d + 31) & !31
}
