//! Shared pieces of the fuzz targets: decoding shapes and values from the fuzzer's
//! bytes, guard-page memory for the C-ABI argument target, and comparison helpers.
//!
//! - [`Input`] reads the fuzzer's bytes as a stream (zeros once exhausted), with
//!   generators biased towards the values that break kernels: tail lengths, NaN of
//!   either sign and any payload, infinities, signed zeros, subnormals, ties.
//! - [`Guarded`] is an mmap'd buffer with an inaccessible page on both sides, placed
//!   flush against one of them, its slack filled with canary bytes; inputs are made
//!   read-only after filling. A read or write past either end faults at once (with or
//!   without AddressSanitizer); [`Guarded::slack_intact`] checks the canaries.
//! - [`args`] holds the argument cases of the `ffi_args` target, one module per family.

pub mod args;

use half::{bf16, f16};

/// The fuzzer's bytes as a stream; reads past the end give zeros.
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input { data }
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn u8(&mut self) -> u8 {
        match self.data.split_first() {
            Some((b, rest)) => {
                self.data = rest;
                *b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        (self.u32() as u64) | ((self.u32() as u64) << 32)
    }

    pub fn bool(&mut self) -> bool {
        self.u8() & 1 == 1
    }

    /// A value in `0..=max`, small values more likely (one byte for small ranges).
    pub fn below(&mut self, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let raw = if max < 256 {
            self.u8() as usize
        } else {
            self.u16() as usize
        };
        raw % (max + 1)
    }

    /// A length: mostly small and around SIMD widths (0..=max), so that every tail
    /// length of every tier is reached.
    pub fn len(&mut self, max: usize) -> usize {
        match self.u8() % 4 {
            0 => self.below(max.min(20)),
            1 => {
                // Around a multiple of 16 or 64.
                let base = [16usize, 32, 48, 64, 128][self.below(4)];
                let v = (base + self.below(6)).saturating_sub(3);
                v.min(max)
            }
            _ => self.below(max),
        }
    }

    /// A size for the argument target: small, huge, or at an overflow boundary.
    pub fn size(&mut self) -> usize {
        match self.u8() % 16 {
            0 => usize::MAX,
            1 => usize::MAX / 2 + self.below(2),
            2 => usize::MAX / 4 + self.below(2),
            3 => 1usize << (30 + self.below(33)),
            4 => self.u64() as usize,
            5 => (usize::MAX / 2) / (1 + self.below(16)),
            _ => self.below(70),
        }
    }

    /// An f32 from a palette: raw bits, exact small values (ties), special values,
    /// subnormals, or moderate normal values.
    pub fn f32(&mut self) -> f32 {
        match self.u8() % 8 {
            0 => f32::from_bits(self.u32()),
            1 => (self.u8() as i8) as f32 / 8.0,
            2 => SPECIALS[self.below(SPECIALS.len() - 1)],
            3 => {
                let sign = (self.u8() as u32 & 1) << 31;
                f32::from_bits(sign | (self.u32() & 0x007f_ffff))
            }
            _ => {
                let m = self.u16() as i16 as f32 / 4096.0;
                let e = self.below(8) as i32 - 4;
                m * 2f32.powi(e * 3)
            }
        }
    }

    /// An f16 (as its bits): raw bits, or a palette f32 rounded to nearest even.
    pub fn f16_bits(&mut self) -> u16 {
        if self.u8() % 4 == 0 {
            self.u16()
        } else {
            f16::from_f32(self.f32()).to_bits()
        }
    }

    /// A bf16 (as its bits): raw bits, or a palette f32 rounded to nearest even.
    pub fn bf16_bits(&mut self) -> u16 {
        if self.u8() % 4 == 0 {
            self.u16()
        } else {
            bf16::from_f32(self.f32()).to_bits()
        }
    }
}

/// Special f32 values: NaNs (quiet and signalling, both signs), infinities, signed
/// zeros, the subnormal extremes, the normal extremes, values near the sigmoid's
/// clamps and ties.
pub const SPECIALS: [f32; 24] = [
    f32::NAN,
    f32::from_bits(0xffc0_0000),
    f32::from_bits(0x7f80_0001),
    f32::from_bits(0xff80_0123),
    f32::INFINITY,
    f32::NEG_INFINITY,
    0.0,
    -0.0,
    f32::from_bits(1),
    f32::from_bits(0x8000_0001),
    f32::from_bits(0x007f_ffff),
    f32::from_bits(0x807f_ffff),
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    f32::MAX,
    f32::MIN,
    104.0,
    -104.0,
    88.72284,
    -87.33655,
    -103.97208,
    0.5,
    -0.5,
    1.0,
];

/// The f32's bits with every NaN made the canonical quiet NaN (the levels agree bit
/// for bit except on the sign and payload of a NaN sigmoid result).
pub fn canon(x: f32) -> u32 {
    if x.is_nan() {
        0x7fc0_0000
    } else {
        x.to_bits()
    }
}

/// f32 ulp at `|x|` (the subnormal spacing at the bottom), in f64.
pub fn ulp32(x: f64) -> f64 {
    let a = x.abs().max(f32::MIN_POSITIVE as f64) as f32;
    let a = if a.is_infinite() { f32::MAX } else { a };
    (f32::from_bits(a.to_bits() + 1) - a) as f64
}

/// The exact-ish sigmoid in f64.
pub fn sigmoid64(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

const PAGE: usize = 4096;

/// Where a [`Guarded`] buffer sits in its pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// Its first byte follows the leading guard page (catches under-reads).
    Start,
    /// Its last byte precedes the trailing guard page (catches over-reads).
    End,
}

/// `len` bytes between two inaccessible pages; the rest of its pages hold `0xA5`.
pub struct Guarded {
    base: *mut u8,
    total: usize,
    data: *mut u8,
    len: usize,
}

pub const CANARY: u8 = 0xA5;

impl Guarded {
    /// `len` bytes (may be 0) next to a guard page: flush against it, or `misalign`
    /// bytes away (an odd `misalign` with an even `len` gives an odd address in both
    /// places).
    pub fn new(len: usize, place: Place, misalign: usize) -> Guarded {
        let inner = (len + misalign).div_ceil(PAGE).max(1) * PAGE;
        let total = inner + 2 * PAGE;
        // SAFETY: anonymous private mapping; checked for failure.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert!(base != libc::MAP_FAILED, "mmap failed");
        let base = base as *mut u8;
        // SAFETY: both guard pages lie inside the mapping.
        unsafe {
            assert_eq!(libc::mprotect(base as _, PAGE, libc::PROT_NONE), 0);
            assert_eq!(
                libc::mprotect(base.add(PAGE + inner) as _, PAGE, libc::PROT_NONE),
                0
            );
            core::ptr::write_bytes(base.add(PAGE), CANARY, inner);
        }
        let off = match place {
            Place::Start => misalign,
            // Flush against the trailing guard, then `misalign` bytes earlier.
            Place::End => inner - len - misalign,
        };
        // SAFETY: off + len <= inner.
        let data = unsafe { base.add(PAGE + off) };
        Guarded {
            base,
            total,
            data,
            len,
        }
    }

    pub fn ptr(&self) -> *mut u8 {
        self.data
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The buffer's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes at `data` (still readable when read-only).
        unsafe { core::slice::from_raw_parts(self.data, self.len) }
    }

    /// The buffer's bytes, writable (not after [`Guarded::freeze`]).
    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` writable bytes at `data`.
        unsafe { core::slice::from_raw_parts_mut(self.data, self.len) }
    }

    /// Makes the whole inner area read-only: any write by the code under test faults.
    pub fn freeze(&self) {
        let inner = self.total - 2 * PAGE;
        // SAFETY: the inner pages lie inside the mapping.
        unsafe {
            assert_eq!(
                libc::mprotect(self.base.add(PAGE) as _, inner, libc::PROT_READ),
                0
            )
        };
    }

    /// Whether every byte of the inner pages outside the buffer still holds the canary.
    pub fn slack_intact(&self) -> bool {
        let inner = self.total - 2 * PAGE;
        // SAFETY: the inner pages are readable.
        let all = unsafe { core::slice::from_raw_parts(self.base.add(PAGE), inner) };
        let off = self.data as usize - (self.base as usize + PAGE);
        all[..off].iter().all(|&b| b == CANARY)
            && all[off + self.len..].iter().all(|&b| b == CANARY)
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped.
        unsafe { libc::munmap(self.base as _, self.total) };
    }
}

/// Elements spanned by `rows` rows of `cols` at `stride` (the C API's rule), or None on
/// overflow; `Err(())` when `stride < cols`.
pub fn span(rows: usize, cols: usize, stride: usize) -> Result<Option<usize>, ()> {
    if stride < cols {
        return Err(());
    }
    if rows == 0 {
        return Ok(Some(0));
    }
    Ok((rows - 1)
        .checked_mul(stride)
        .and_then(|x| x.checked_add(cols)))
}
