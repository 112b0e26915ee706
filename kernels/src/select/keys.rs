//! The order of scores as integer keys, and the predicates the vector passes evaluate
//! on the bits of a score (see the module doc).

/// The bits of `+inf`; every non-NaN magnitude is at most this.
pub const INF_BITS: u32 = 0x7f80_0000;

/// The signed order key of a score's bits: NaN (any) -> `i32::MIN`, `±0 -> 0`, else
/// `sign ? -mag : mag`. Numbers map to `-INF_BITS ..= INF_BITS`.
#[inline(always)]
pub const fn skey(bits: u32) -> i32 {
    let mag = bits & 0x7fff_ffff;
    if mag > INF_BITS {
        i32::MIN
    } else if bits >> 31 != 0 {
        -(mag as i32)
    } else {
        mag as i32
    }
}

/// The unsigned order key: `skey ^ 0x8000_0000` (NaN -> 0).
#[inline(always)]
pub const fn ukey(bits: u32) -> u32 {
    (skey(bits) as u32) ^ 0x8000_0000
}

/// A predicate "key of the bits > t" in the form the vector code evaluates with two
/// integer compares; `npn` ("not a positive NaN") is `bits as i32 <= INF_BITS`:
/// - `SGt(c)` (for `t >= 0`): `bits as i32 > c as i32 && npn`;
/// - `ULt(c)` (for `t < 0`): `bits < c && npn` (unsigned), `c = 0x8000_0000 + |t|`;
/// - `All`: always true (the key is >= the NaN key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pred {
    SGt(u32),
    ULt(u32),
    All,
}

/// `Pred` modes as const-generic parameters of the vector loops.
pub const M_SGT: u8 = 0;
pub const M_ULT: u8 = 1;
pub const M_ALL: u8 = 2;

impl Pred {
    /// `skey(x) > t`. `t >= INF_BITS` is never true (`SGt(INF_BITS)`).
    #[inline(always)]
    pub const fn gt(t: i32) -> Pred {
        if t >= INF_BITS as i32 {
            Pred::SGt(INF_BITS)
        } else if t >= 0 {
            Pred::SGt(t as u32)
        } else if t < -(INF_BITS as i32) - 1 {
            // Every number and no NaN (t is the NaN key or below every number).
            Pred::ULt(0x8000_0000 + INF_BITS + 1)
        } else {
            Pred::ULt(0x8000_0000u32.wrapping_add(t.unsigned_abs()))
        }
    }

    /// `skey(x) >= t`.
    #[inline(always)]
    pub const fn ge(t: i32) -> Pred {
        if t == i32::MIN {
            Pred::All
        } else {
            Pred::gt(t - 1)
        }
    }

    /// The never-true predicate.
    pub const NEVER: Pred = Pred::SGt(INF_BITS);

    /// Scalar evaluation on the bits of a score.
    #[inline(always)]
    pub const fn eval(self, bits: u32) -> bool {
        let npn = (bits as i32) <= INF_BITS as i32;
        match self {
            Pred::SGt(c) => (bits as i32) > c as i32 && npn,
            Pred::ULt(c) => bits < c && npn,
            Pred::All => true,
        }
    }

    /// `(mode, constant)` for the vector loops.
    #[inline(always)]
    pub const fn parts(self) -> (u8, u32) {
        match self {
            Pred::SGt(c) => (M_SGT, c),
            Pred::ULt(c) => (M_ULT, c),
            Pred::All => (M_ALL, 0),
        }
    }

    /// The threshold predicate `s > tau` (never true for a NaN tau).
    #[inline(always)]
    pub const fn above(tau: f32) -> Pred {
        let b = tau.to_bits();
        if b & 0x7fff_ffff > INF_BITS {
            Pred::NEVER
        } else {
            Pred::gt(skey(b))
        }
    }
}

/// A signed integer key whose maximum over a set of score bits is the bits of its
/// largest score (sign-magnitude to two's complement: `-0 < +0`, a positive NaN above
/// `+inf`, a negative NaN below `-inf`). Its own inverse.
#[inline(always)]
pub const fn max_key(bits: u32) -> i32 {
    (bits ^ (((bits as i32) >> 31) as u32 >> 1)) as i32
}
