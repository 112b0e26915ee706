//! The machine's own ceilings, measured in-process on one core: read bandwidth (a
//! SIMD sum), copy bandwidth (memcpy) and f32 FMA peak (a register-resident loop).

use std::hint::black_box;

/// Sum of `x` with eight independent vector accumulators: every byte read once.
pub fn read_sum(x: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            return unsafe { read_sum_avx512(x) };
        }
        if std::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX.
            return unsafe { read_sum_avx(x) };
        }
    }
    read_sum_portable(x)
}

fn read_sum_portable(x: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    let chunks = x.chunks_exact(32);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..32 {
            acc[i] += c[i];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn read_sum_avx512(x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm512_setzero_ps(); 8];
    let chunks = x.chunks_exact(128);
    let rest = chunks.remainder();
    for c in chunks {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: c has 128 floats.
            *a = _mm512_add_ps(*a, unsafe { _mm512_loadu_ps(c.as_ptr().add(k * 16)) });
        }
    }
    acc.iter().map(|a| _mm512_reduce_add_ps(*a)).sum::<f32>() + rest.iter().sum::<f32>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn read_sum_avx(x: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_setzero_ps(); 8];
    let chunks = x.chunks_exact(64);
    let rest = chunks.remainder();
    for c in chunks {
        for (k, a) in acc.iter_mut().enumerate() {
            // SAFETY: c has 64 floats.
            *a = _mm256_add_ps(*a, unsafe { _mm256_loadu_ps(c.as_ptr().add(k * 8)) });
        }
    }
    let mut out = [0f32; 8];
    let mut s = _mm256_setzero_ps();
    for a in acc {
        s = _mm256_add_ps(s, a);
    }
    // SAFETY: out holds 8 floats.
    unsafe { _mm256_storeu_ps(out.as_mut_ptr(), s) };
    out.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// The flops `fma_loop(iters)` does on this CPU.
pub fn fma_loop_flops(iters: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            return iters * 12 * 16 * 2;
        }
        if std::is_x86_feature_detected!("fma") {
            return iters * 12 * 8 * 2;
        }
    }
    iters * 12 * 4 * 2
}

/// Twelve independent FMA chains on `iters` rounds: returns the flops done
/// (2 per lane per FMA). Register-resident: no memory traffic.
pub fn fma_loop(iters: u64) -> u64 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            unsafe { fma_avx512(iters) };
            return iters * 12 * 16 * 2;
        }
        if std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX and FMA.
            unsafe { fma_avx2(iters) };
            return iters * 12 * 8 * 2;
        }
    }
    fma_portable(iters);
    iters * 12 * 4 * 2
}

macro_rules! twelve_chains {
    ($iters:expr, $set1:path, $fma:path, $add:path, $sink:expr) => {{
        let b = $set1(0.999_9);
        let c = $set1(1.0e-4);
        let (mut a0, mut a1, mut a2, mut a3) = ($set1(1.0), $set1(1.1), $set1(1.2), $set1(1.3));
        let (mut a4, mut a5, mut a6, mut a7) = ($set1(1.4), $set1(1.5), $set1(1.6), $set1(1.7));
        let (mut a8, mut a9, mut a10, mut a11) = ($set1(1.8), $set1(1.9), $set1(2.0), $set1(2.1));
        for _ in 0..$iters {
            a0 = $fma(a0, b, c);
            a1 = $fma(a1, b, c);
            a2 = $fma(a2, b, c);
            a3 = $fma(a3, b, c);
            a4 = $fma(a4, b, c);
            a5 = $fma(a5, b, c);
            a6 = $fma(a6, b, c);
            a7 = $fma(a7, b, c);
            a8 = $fma(a8, b, c);
            a9 = $fma(a9, b, c);
            a10 = $fma(a10, b, c);
            a11 = $fma(a11, b, c);
        }
        let s = $add(
            $add($add(a0, a1), $add(a2, a3)),
            $add($add(a4, a5), $add(a6, a7)),
        );
        let s = $add(s, $add($add(a8, a9), $add(a10, a11)));
        $sink(s);
    }};
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fma_avx512(iters: u64) {
    use std::arch::x86_64::*;
    twelve_chains!(iters, _mm512_set1_ps, _mm512_fmadd_ps, _mm512_add_ps, |s| {
        black_box(_mm512_reduce_add_ps(s));
    });
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,fma")]
unsafe fn fma_avx2(iters: u64) {
    use std::arch::x86_64::*;
    twelve_chains!(iters, _mm256_set1_ps, _mm256_fmadd_ps, _mm256_add_ps, |s| {
        black_box(s);
    });
}

fn fma_portable(iters: u64) {
    #[cfg(target_arch = "aarch64")]
    // SAFETY: NEON is part of the aarch64 baseline.
    unsafe {
        use std::arch::aarch64::*;
        let fma = |a, b, c| vfmaq_f32(c, a, b);
        twelve_chains!(iters, vdupq_n_f32, fma, vaddq_f32, |s| {
            black_box(s);
        });
    }
    #[cfg(not(target_arch = "aarch64"))]
    {
        let fma = |a: f32, b: f32, c: f32| a.mul_add(b, c);
        let id = |x: f32| x;
        let add = |a: f32, b: f32| a + b;
        twelve_chains!(iters, id, fma, add, |s| {
            black_box(s);
        });
    }
}

/// The part `i` of `t` nearly equal parts of `0..n`, 64-byte aligned boundaries.
fn part(n: usize, i: usize, t: usize) -> core::ops::Range<usize> {
    let per = n.div_ceil(t).div_ceil(16) * 16;
    (i * per).min(n)..((i + 1) * per).min(n)
}

/// Runs `f(i)` for `i < t` on `t` threads of the library's pool (inline for 1).
fn on_threads(t: usize, f: &(dyn Fn(usize) + Sync)) {
    if t <= 1 {
        f(0);
        return;
    }
    tokenroute::parallel::with_executor(tokenroute::parallel::Executor::Threads(t), || {
        tokenroute::parallel::run_tasks(t, usize::MAX, f).expect("the pool runs every task")
    });
}

/// [`read_sum`] of `x` split across `t` threads.
pub fn read_par(x: &[f32], t: usize) {
    on_threads(t, &|i| {
        black_box(read_sum(&x[part(x.len(), i, t)]));
    });
}

/// `dst.copy_from_slice(src)` split across `t` threads.
pub fn copy_par(dst: &mut [f32], src: &[f32], t: usize) {
    let (d, n) = (dst.as_mut_ptr() as usize, dst.len());
    on_threads(t, &|i| {
        let r = part(n, i, t);
        // SAFETY: the parts are disjoint ranges of `dst`, which outlives the call.
        let out = unsafe { core::slice::from_raw_parts_mut((d as *mut f32).add(r.start), r.len()) };
        out.copy_from_slice(&src[r]);
    });
    black_box(dst);
}

/// [`fma_loop`] on each of `t` threads: returns the flops done in all.
pub fn fma_par(iters: u64, t: usize) -> u64 {
    on_threads(t, &|_| {
        black_box(fma_loop(black_box(iters)));
    });
    fma_loop_flops(iters) * t as u64
}
