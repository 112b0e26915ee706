//! The SIMD layer: one vector type per ISA tier ([`Tier`]) with the operations the
//! kernels use, so that each algorithm is written once, generic over the tier, and
//! compiled inside each tier's `#[target_feature]` entry points (`tier_fn!`).
//!
//! A tier provides `LANES` f32 lanes (`F`), as many i32 lanes (`I`), a lane mask (`M`)
//! and the operations below; everything else (the 16 canonical lanes `V16`, loads of
//! f16/bf16 widened to f32, partial loads and stores, the canonical reductions, exp2 and
//! the sigmoid recipe) is written once on top of them. Every method is
//! `#[inline(always)]` in the implementations: an intrinsic that is not inlined into the
//! caller's `#[target_feature]` function becomes a call per operation.
//!
//! The arithmetic methods are safe functions that may only run inside a function
//! compiled for the tier (they are `pub(crate)` and reached only through the entry points
//! `tier_fn!` builds); the memory methods are `unsafe` for their pointers.
//!
//! What a new tier implements: the `impl Tier` block (see `scalar.rs` for the smallest
//! one) and its arm in `tier_fn!` and `for_tier!`; then the kernels' entry points for
//! it (one line each) and, where the tier has a faster instruction, an override
//! (`SCALEF`, the partial loads).

pub(crate) mod scalar;

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon;

pub(crate) use scalar::Scalar;

#[cfg(target_arch = "x86_64")]
pub(crate) use avx2::Avx2;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::Avx512;
#[cfg(target_arch = "aarch64")]
pub(crate) use neon::Neon;

use half::{bf16, f16};

/// Calls `simd::$cb!{"<the tier's target features>", args...}`: the one place each tier's
/// feature string is written (the `TIER_*` constants and every entry point use it).
macro_rules! for_tier {
    (avx2, $cb:ident, $($args:tt)*) => {
        $crate::simd::$cb! { "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt", $($args)* }
    };
    (avx512, $cb:ident, $($args:tt)*) => {
        $crate::simd::$cb! {
            "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl",
            $($args)*
        }
    };
    (avx512bf16, $cb:ident, $($args:tt)*) => {
        $crate::simd::$cb! {
            "avx,avx2,fma,bmi1,bmi2,f16c,lzcnt,movbe,popcnt,avx512f,avx512bw,avx512cd,avx512dq,avx512vl,avx512bf16",
            $($args)*
        }
    };
    (neon, $cb:ident, $($args:tt)*) => {
        $crate::simd::$cb! { "neon", $($args)* }
    };
}
pub(crate) use for_tier;

/// `$item` compiled with the tier's target features.
macro_rules! with_features {
    ($features:literal, $($item:tt)*) => {
        #[target_feature(enable = $features)]
        $($item)*
    };
}
pub(crate) use with_features;

/// `pub const $name: &str = "<the tier's target features>";`
macro_rules! tier_const {
    ($features:literal, $(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        pub const $name: &str = $features;
    };
}
pub(crate) use tier_const;

/// An entry point compiled for a tier: `tier_fn!(avx2, pub unsafe fn f(...) { ... })`
/// (the scalar tier takes the function as it is).
macro_rules! tier_fn {
    (scalar, $($item:tt)*) => { $($item)* };
    ($tier:ident, $($item:tt)*) => {
        $crate::simd::for_tier!($tier, with_features, $($item)*);
    };
}
pub(crate) use tier_fn;

/// Input element types, widened exactly to f32 (the rounding stores are [`store_elem`]).
pub trait Elem: Copy + Default + 'static {
    /// Which of the three types (loads and stores dispatch on it at compile time).
    const KIND: Kind;
    /// Exact conversion to f32.
    fn to_f32(self) -> f32;
}

/// The element types of [`Elem`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    F32,
    F16,
    BF16,
}

impl Elem for f32 {
    const KIND: Kind = Kind::F32;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}
impl Elem for f16 {
    const KIND: Kind = Kind::F16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}
impl Elem for bf16 {
    const KIND: Kind = Kind::BF16;
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

/// One ISA tier's vectors: `LANES` f32 lanes and the operations on them.
pub(crate) trait Tier: Copy + 'static {
    /// f32 lanes per vector (1, 4, 8 or 16; at most 16).
    const LANES: usize;
    /// Whether [`Tier::scalef`] exists (single-rounding `x * 2^e`, AVX-512 `vscalefps`).
    const SCALEF: bool = false;
    /// `LANES` f32.
    type F: Copy;
    /// `LANES` i32.
    type I: Copy;
    /// A lane mask (from compares, for [`Tier::select`]).
    type M: Copy;
    /// The 16 canonical lanes of a dot product: `16 / LANES` vectors (`v16!`).
    type V16: Copy;

    fn splat(x: f32) -> Self::F;
    fn add(a: Self::F, b: Self::F) -> Self::F;
    fn sub(a: Self::F, b: Self::F) -> Self::F;
    fn mul(a: Self::F, b: Self::F) -> Self::F;
    fn div(a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`, rounded once.
    fn fma(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `c - a * b`, rounded once.
    fn fnma(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `a < b ? a : b` (x86 `minps`: the second operand when either is NaN).
    fn min(a: Self::F, b: Self::F) -> Self::F;
    /// `|a|` (clears the sign bit).
    fn abs(a: Self::F) -> Self::F;
    /// Lanes whose sign bit is set.
    fn sign(a: Self::F) -> Self::M;
    /// Lanes holding a NaN.
    fn is_nan(a: Self::F) -> Self::M;
    /// `m ? a : b` lanewise.
    fn select(m: Self::M, a: Self::F, b: Self::F) -> Self::F;
    /// `a > b ? a : b` (x86 `maxps`: the second operand when either is NaN).
    fn max(a: Self::F, b: Self::F) -> Self::F;
    /// Lanes where `a < b` (not where either is NaN).
    fn lt(a: Self::F, b: Self::F) -> Self::M;
    /// Lanes where `a != b` or either is NaN.
    fn ne(a: Self::F, b: Self::F) -> Self::M;
    fn and_m(a: Self::M, b: Self::M) -> Self::M;
    fn or_m(a: Self::M, b: Self::M) -> Self::M;
    /// Lane `i` set where bit `i` of `bits` is (bits from `LANES` on are ignored).
    fn mask_from_bits(bits: u32) -> Self::M;
    /// Bit `i` set where lane `i` is.
    fn mask_bits(m: Self::M) -> u32;
    /// `on ? fma(a, b, c) : c` in every lane.
    #[inline(always)]
    fn fma_if(on: bool, a: Self::F, b: Self::F, c: Self::F) -> Self::F {
        Self::select(
            Self::mask_from_bits(if on { u32::MAX } else { 0 }),
            Self::fma(a, b, c),
            c,
        )
    }
    /// `x * 2^e` rounded once (`e` integral); only called when [`Tier::SCALEF`].
    #[inline(always)]
    fn scalef(x: Self::F, _e: Self::F) -> Self::F {
        x
    }
    /// The canonical halving tree inside one vector: lanes `i + LANES/2` added to lanes
    /// `i`, and so on down to one lane.
    fn hsum(v: Self::F) -> f32;

    fn splat_i(x: i32) -> Self::I;
    fn bits(a: Self::F) -> Self::I;
    fn from_bits(a: Self::I) -> Self::F;
    fn add_i(a: Self::I, b: Self::I) -> Self::I;
    fn sub_i(a: Self::I, b: Self::I) -> Self::I;
    /// Signed minimum.
    fn min_i(a: Self::I, b: Self::I) -> Self::I;
    /// `a << 23` (the exponent field).
    fn shl23(a: Self::I) -> Self::I;
    /// `a >> 3`, logical.
    fn shr3(a: Self::I) -> Self::I;
    /// `t[k mod 8]` per lane (`t` holds the 8 entries twice).
    fn lookup8(t: &[f32; 16], k: Self::I) -> Self::F;

    /// # Safety
    /// `LANES` floats readable at `p`.
    unsafe fn load(p: *const f32) -> Self::F;
    /// # Safety
    /// `LANES` floats writable at `p`.
    unsafe fn store(p: *mut f32, v: Self::F);
    /// `LANES` f16 widened exactly.
    /// # Safety
    /// `LANES` elements readable at `p`.
    unsafe fn load_f16(p: *const f16) -> Self::F;
    /// `LANES` bf16 widened exactly.
    /// # Safety
    /// `LANES` elements readable at `p`.
    unsafe fn load_bf16(p: *const bf16) -> Self::F;
    /// `LANES` lanes from the `2 * LANES` bf16 at `p` taken in pairs (a pair is one
    /// little-endian 32-bit word): the odd element of each pair (`odd`, the high half)
    /// or the even one, widened exactly.
    /// # Safety
    /// `2 * LANES` elements readable at `p`.
    unsafe fn load_bf16_pairs(p: *const bf16, odd: bool) -> Self::F;
    /// As [`Tier::load_bf16_pairs`] when only the first `k < 2 * LANES` elements are
    /// valid (zeros past them); reads only those.
    /// # Safety
    /// `k` elements readable at `p`.
    #[inline(always)]
    unsafe fn load_bf16_pairs_part(p: *const bf16, odd: bool, k: usize) -> Self::F {
        let mut buf = [bf16::ZERO; 32];
        // SAFETY: k < 2 * LANES <= 32 elements at p; the buffer holds 32.
        unsafe {
            core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), k);
            Self::load_bf16_pairs(buf.as_ptr(), odd)
        }
    }
    /// Rounds to f16 (nearest even, subnormals kept; the canonical f32 NaN gives 0x7e00).
    /// # Safety
    /// `LANES` elements writable at `p`.
    unsafe fn store_f16(p: *mut f16, v: Self::F);
    /// Rounds to bf16 (nearest even on the bit pattern, subnormals kept; not for NaN
    /// payloads other than the canonical one).
    /// # Safety
    /// `LANES` elements writable at `p`.
    unsafe fn store_bf16(p: *mut bf16, v: Self::F);
    /// The first `k < LANES` elements at `p` widened, zeros past them; reads only those.
    /// # Safety
    /// `k` elements readable at `p`.
    #[inline(always)]
    unsafe fn load_part<T: Elem>(p: *const T, k: usize) -> Self::F {
        // SAFETY: passed on.
        unsafe { load_part_buffered::<Self, T>(p, k) }
    }
    /// Stores the first `k < LANES` lanes (rounded to `T`); writes only those.
    /// # Safety
    /// `k` elements writable at `p`.
    #[inline(always)]
    unsafe fn store_part<T: Elem>(p: *mut T, v: Self::F, k: usize) {
        // SAFETY: passed on.
        unsafe { store_part_buffered::<Self, T>(p, v, k) }
    }
    /// A prefetch of `p` into all cache levels (no effect on results; never faults).
    #[inline(always)]
    fn prefetch(_p: *const u8) {}
    /// A prefetch of `p` into the second-level cache (no effect on results).
    #[inline(always)]
    fn prefetch_l2(_p: *const u8) {}

    // The 16 canonical lanes, generated by `v16!` from the operations above.
    fn v16_zero() -> Self::V16;
    fn v16_splat(x: f32) -> Self::V16;
    fn v16_fma(a: Self::V16, b: Self::V16, c: Self::V16) -> Self::V16;
    /// `on ? fma(a, b, c) : c` (see [`Tier::fma_if`]).
    fn v16_fma_if(on: bool, a: Self::V16, b: Self::V16, c: Self::V16) -> Self::V16;
    /// `f` on each vector.
    fn v16_map(a: Self::V16, f: impl Fn(Self::F) -> Self::F) -> Self::V16;
    /// `f` on each pair of vectors.
    fn v16_zip(a: Self::V16, b: Self::V16, f: impl Fn(Self::F, Self::F) -> Self::F) -> Self::V16;
    /// # Safety
    /// 16 floats writable at `p`.
    unsafe fn v16_store(p: *mut f32, v: Self::V16);
    /// The 16 odd (`odd`) or even elements of the 32 bf16 at `p` (see
    /// [`Tier::load_bf16_pairs`]).
    /// # Safety
    /// 32 elements readable at `p`.
    unsafe fn v16_load_pairs(p: *const bf16, odd: bool) -> Self::V16;
    /// As [`Tier::v16_load_pairs`] when only the first `k < 32` elements are valid
    /// (zeros past them; reads only those).
    /// # Safety
    /// `k` elements readable at `p`.
    unsafe fn v16_load_pairs_first(p: *const bf16, odd: bool, k: usize) -> Self::V16;
    /// # Safety
    /// 16 elements readable at `p`.
    unsafe fn v16_load<T: Elem>(p: *const T) -> Self::V16;
    /// The first `k < 16` elements, zeros past them (reads only those).
    /// # Safety
    /// `k` elements readable at `p`.
    unsafe fn v16_load_first<T: Elem>(p: *const T, k: usize) -> Self::V16;
    /// The canonical 16-lane tree: `s8[i] = a[i] + a[i+8]`, `s4[i] = s8[i] + s8[i+4]`,
    /// `s2[i] = s4[i] + s4[i+2]`, `s2[0] + s2[1]`.
    fn v16_reduce(v: Self::V16) -> f32;
    /// The canonical trees of `R x C` accumulators (`acc[c][r]`), tree `(c, r)` stored
    /// at `s[c * stride + r]`. Tiers with a transposed reduction of several trees at
    /// once override it.
    /// # Safety
    /// The `C` runs of `R` floats at `s`, `stride` apart, are writable.
    #[inline(always)]
    unsafe fn v16_store_trees<const R: usize, const C: usize>(
        acc: &[[Self::V16; R]; C],
        s: *mut f32,
        stride: usize,
    ) {
        // SAFETY: passed on.
        unsafe { store_trees_each::<Self, R, C>(acc, s, stride) }
    }
}

/// [`Tier::v16_store_trees`] one tree at a time.
///
/// # Safety
/// The `C` runs of `R` floats at `s`, `stride` apart, are writable.
#[inline(always)]
pub(crate) unsafe fn store_trees_each<S: Tier, const R: usize, const C: usize>(
    acc: &[[S::V16; R]; C],
    s: *mut f32,
    stride: usize,
) {
    for (c, row) in acc.iter().enumerate() {
        for (r, &a) in row.iter().enumerate() {
            // SAFETY: the caller's.
            unsafe { *s.add(c * stride + r) = S::v16_reduce(a) };
        }
    }
}

/// The `V16` part of a `Tier` impl: 16 canonical lanes as `$n` vectors of `LANES`
/// (vector `i` holds lanes `i * LANES ..`), and its operations.
macro_rules! v16 {
    ($n:literal) => {
        type V16 = [Self::F; $n];
        #[inline(always)]
        fn v16_zero() -> Self::V16 {
            [Self::splat(0.0); $n]
        }
        #[inline(always)]
        fn v16_splat(x: f32) -> Self::V16 {
            [Self::splat(x); $n]
        }
        #[inline(always)]
        fn v16_fma(a: Self::V16, b: Self::V16, c: Self::V16) -> Self::V16 {
            core::array::from_fn(|i| Self::fma(a[i], b[i], c[i]))
        }
        #[inline(always)]
        fn v16_fma_if(on: bool, a: Self::V16, b: Self::V16, c: Self::V16) -> Self::V16 {
            core::array::from_fn(|i| Self::fma_if(on, a[i], b[i], c[i]))
        }
        #[inline(always)]
        fn v16_map(a: Self::V16, f: impl Fn(Self::F) -> Self::F) -> Self::V16 {
            core::array::from_fn(|i| f(a[i]))
        }
        #[inline(always)]
        fn v16_zip(
            a: Self::V16,
            b: Self::V16,
            f: impl Fn(Self::F, Self::F) -> Self::F,
        ) -> Self::V16 {
            core::array::from_fn(|i| f(a[i], b[i]))
        }
        #[inline(always)]
        unsafe fn v16_store(p: *mut f32, v: Self::V16) {
            for (i, x) in v.into_iter().enumerate() {
                // SAFETY: 16 floats at p.
                unsafe { Self::store(p.add(i * Self::LANES), x) };
            }
        }
        #[inline(always)]
        unsafe fn v16_load_pairs(p: *const half::bf16, odd: bool) -> Self::V16 {
            // SAFETY: 32 elements at p.
            core::array::from_fn(|i| unsafe {
                Self::load_bf16_pairs(p.add(2 * i * Self::LANES), odd)
            })
        }
        #[inline(always)]
        unsafe fn v16_load_pairs_first(p: *const half::bf16, odd: bool, k: usize) -> Self::V16 {
            core::array::from_fn(|i| {
                let at = 2 * i * Self::LANES;
                // SAFETY: only elements below k are read.
                unsafe {
                    if k >= at + 2 * Self::LANES {
                        Self::load_bf16_pairs(p.add(at), odd)
                    } else if k > at {
                        Self::load_bf16_pairs_part(p.add(at), odd, k - at)
                    } else {
                        Self::splat(0.0)
                    }
                }
            })
        }
        #[inline(always)]
        unsafe fn v16_load<T: $crate::simd::Elem>(p: *const T) -> Self::V16 {
            // SAFETY: 16 elements at p.
            core::array::from_fn(|i| unsafe {
                $crate::simd::load_elem::<Self, T>(p.add(i * Self::LANES))
            })
        }
        #[inline(always)]
        unsafe fn v16_load_first<T: $crate::simd::Elem>(p: *const T, k: usize) -> Self::V16 {
            core::array::from_fn(|i| {
                let at = i * Self::LANES;
                // SAFETY: only elements below k are read.
                unsafe {
                    if k >= at + Self::LANES {
                        $crate::simd::load_elem::<Self, T>(p.add(at))
                    } else if k > at {
                        Self::load_part(p.add(at), k - at)
                    } else {
                        Self::splat(0.0)
                    }
                }
            })
        }
        #[inline(always)]
        fn v16_reduce(v: Self::V16) -> f32 {
            let mut v = v;
            let mut n = $n;
            while n > 1 {
                n /= 2;
                for i in 0..n {
                    v[i] = Self::add(v[i], v[i + n]);
                }
            }
            Self::hsum(v[0])
        }
    };
}
pub(crate) use v16;

/// `LANES` elements of `T` at `p`, widened.
///
/// # Safety
/// `LANES` elements readable at `p`; the tier's features are enabled.
#[inline(always)]
pub(crate) unsafe fn load_elem<S: Tier, T: Elem>(p: *const T) -> S::F {
    // SAFETY: passed on; T is the type KIND names.
    unsafe {
        match T::KIND {
            Kind::F32 => S::load(p as *const f32),
            Kind::F16 => S::load_f16(p as *const f16),
            Kind::BF16 => S::load_bf16(p as *const bf16),
        }
    }
}

/// Stores `LANES` lanes rounded to `T` (see [`Tier::store_f16`], [`Tier::store_bf16`]).
///
/// # Safety
/// `LANES` elements writable at `p`; the tier's features are enabled.
#[inline(always)]
pub(crate) unsafe fn store_elem<S: Tier, T: Elem>(p: *mut T, v: S::F) {
    // SAFETY: passed on; T is the type KIND names.
    unsafe {
        match T::KIND {
            Kind::F32 => S::store(p as *mut f32, v),
            Kind::F16 => S::store_f16(p as *mut f16, v),
            Kind::BF16 => S::store_bf16(p as *mut bf16, v),
        }
    }
}

/// [`Tier::load_part`] through a zero-filled buffer (tiers without masked loads).
///
/// # Safety
/// `k < LANES` elements readable at `p`.
#[inline(always)]
pub(crate) unsafe fn load_part_buffered<S: Tier, T: Elem>(p: *const T, k: usize) -> S::F {
    let mut buf = [T::default(); 16];
    // SAFETY: k < LANES <= 16 elements at p; the buffer holds 16.
    unsafe {
        core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), k);
        load_elem::<S, T>(buf.as_ptr())
    }
}

/// [`Tier::store_part`] through a buffer (tiers without masked stores).
///
/// # Safety
/// `k < LANES` elements writable at `p`.
#[inline(always)]
pub(crate) unsafe fn store_part_buffered<S: Tier, T: Elem>(p: *mut T, v: S::F, k: usize) {
    let mut buf = [T::default(); 16];
    // SAFETY: the buffer holds 16 >= LANES elements; k are writable at p.
    unsafe {
        store_elem::<S, T>(buf.as_mut_ptr(), v);
        core::ptr::copy_nonoverlapping(buf.as_ptr(), p, k);
    }
}

/// The canonical quiet NaN in every NaN lane of `v`.
#[inline(always)]
pub(crate) fn canon_nan<S: Tier>(v: S::F) -> S::F {
    S::select(
        S::is_nan(v),
        S::from_bits(S::splat_i(crate::numerics::CANONICAL_NAN as i32)),
        v,
    )
}

/// `n` elements from `x` to `y` through `f`, `U` vectors per step, then one, then a
/// partial vector: the elementwise loop of every tier.
///
/// # Safety
/// `x` and `y` valid for `n` elements, equal or disjoint.
#[inline(always)]
pub(crate) unsafe fn map<S: Tier, const U: usize>(
    x: *const f32,
    y: *mut f32,
    n: usize,
    f: impl Fn(S::F) -> S::F,
) {
    let w = S::LANES;
    let mut i = 0;
    // SAFETY (every block): offsets stay below n; every vector is loaded before the
    // store that may alias it.
    unsafe {
        while i + U * w <= n {
            let v: [S::F; U] = core::array::from_fn(|u| f(S::load(x.add(i + u * w))));
            for (u, v) in v.into_iter().enumerate() {
                S::store(y.add(i + u * w), v);
            }
            i += U * w;
        }
        while i + w <= n {
            S::store(y.add(i), f(S::load(x.add(i))));
            i += w;
        }
        if i < n {
            S::store_part(y.add(i), f(S::load_part(x.add(i), n - i)), n - i);
        }
    }
}
