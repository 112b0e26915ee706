//! Exact selection of the `r`-th largest key: radix selection on the bits that differ.

/// Slices up to this length finish [`select_kth`] by sorting.
const SORT_MAX: usize = 48;

/// The highest digit whose bucket holds the `r`-th largest value: `(digit, bucket size,
/// values in higher buckets)`.
#[inline(always)]
fn pick_digit(r: usize, bucket: impl Fn(usize) -> usize) -> (u32, usize, usize) {
    let mut acc = 0;
    for d in (0..256).rev() {
        let h = bucket(d);
        if acc + h >= r {
            return (d as u32, h, acc);
        }
        acc += h;
    }
    (0, 0, acc)
}

/// The `r`-th largest value of `keys` (`1 <= r <= len`) and how many values are
/// strictly greater than it. Radix selection on the bits that differ, 8 per round,
/// compacting the chosen bucket in place; small slices are sorted.
pub fn select_kth(keys: &mut [u32], mut r: usize) -> (u32, usize) {
    let mut len = keys.len();
    let mut greater = 0;
    loop {
        let cur = &mut keys[..len];
        if len <= SORT_MAX {
            cur.sort_unstable_by(|a, b| b.cmp(a));
            let t = cur[r - 1];
            let g = cur.iter().take_while(|&&x| x > t).count();
            return (t, greater + g);
        }
        let (mut mn, mut mx) = (u32::MAX, 0u32);
        for &x in cur.iter() {
            mn = mn.min(x);
            mx = mx.max(x);
        }
        if mn == mx {
            return (mn, greater);
        }
        let top = 31 - (mn ^ mx).leading_zeros();
        let shift = top.saturating_sub(7);
        // Four interleaved histograms, so runs of equal digits (clustered keys) do not
        // serialize on one counter.
        let mut hist = [[0u32; 256]; 4];
        let mut chunks = cur.chunks_exact(4);
        for c in &mut chunks {
            hist[0][((c[0] >> shift) & 0xff) as usize] += 1;
            hist[1][((c[1] >> shift) & 0xff) as usize] += 1;
            hist[2][((c[2] >> shift) & 0xff) as usize] += 1;
            hist[3][((c[3] >> shift) & 0xff) as usize] += 1;
        }
        for &x in chunks.remainder() {
            hist[0][((x >> shift) & 0xff) as usize] += 1;
        }
        let (digit, size, acc) = pick_digit(r, |d| {
            (hist[0][d] + hist[1][d] + hist[2][d] + hist[3][d]) as usize
        });
        r -= acc;
        greater += acc;
        if size <= SORT_MAX {
            // Gather the bucket into a local array (loads and stores never alias) and
            // finish by sorting it.
            let mut buf = [0u32; SORT_MAX + 1];
            let mut w = 0;
            for &x in cur.iter() {
                buf[w] = x;
                w = (w + ((((x >> shift) & 0xff) == digit) as usize)).min(SORT_MAX);
            }
            let b = &mut buf[..size];
            b.sort_unstable_by(|a, b| b.cmp(a));
            let t = b[r - 1];
            let g = b.iter().take_while(|&&x| x > t).count();
            return (t, greater + g);
        }
        let mut w = 0;
        for j in 0..len {
            let x = cur[j];
            cur[w] = x;
            w += (((x >> shift) & 0xff) == digit) as usize;
        }
        debug_assert_eq!(w, size);
        len = size;
    }
}
