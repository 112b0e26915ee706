//! Call-level scratch (what a call's units hand to one another: partial results, counts,
//! move plans) and the scheduler of in-place left moves.

use super::{for_each, Unit};
use crate::error::{Error, ErrorKind, Result};
use core::cell::RefCell;
use core::ops::Range;

#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Line([u8; 64]);

/// A per-thread, grow-only, 64-byte aligned scratch buffer (no allocation once it is
/// large enough). Hold it in a `thread_local!`.
pub(crate) struct Aligned(RefCell<Vec<Line>>);

impl Aligned {
    pub(crate) const fn new() -> Aligned {
        Aligned(RefCell::new(Vec::new()))
    }

    /// Runs `f` with at least `bytes` bytes of the buffer (a temporary buffer when it is
    /// already in use by an enclosing call on this thread).
    pub(crate) fn with<R>(&self, bytes: usize, f: impl FnOnce(*mut u8) -> R) -> Result<R> {
        let lines = bytes.div_ceil(64).max(1);
        let grow = |v: &mut Vec<Line>| -> Result<()> {
            if v.len() < lines {
                v.try_reserve_exact(lines - v.len()).map_err(|_| {
                    Error::new(ErrorKind::SizeOverflow, "scratch allocation failed")
                })?;
                v.resize(lines, Line([0; 64]));
            }
            Ok(())
        };
        match self.0.try_borrow_mut() {
            Ok(mut v) => {
                grow(&mut v)?;
                Ok(f(v.as_mut_ptr() as *mut u8))
            }
            Err(_) => {
                let mut v = Vec::new();
                grow(&mut v)?;
                Ok(f(v.as_mut_ptr() as *mut u8))
            }
        }
    }
}

thread_local! {
    /// The calling thread's call-level scratch. Units use their own thread's kernel
    /// workspaces, never this one.
    static CALL: Aligned = const { Aligned::new() };
}

/// Runs `f` with at least `bytes` bytes of 64-byte aligned scratch owned by the calling
/// thread (reused from call to call; a temporary buffer when it is already in use by an
/// enclosing call on this thread).
pub(crate) fn with_call_scratch<R>(bytes: usize, f: impl FnOnce(*mut u8) -> R) -> Result<R> {
    CALL.with(|c| c.with(bytes, f))
}

/// Most pieces a move plan holds.
pub(crate) const MAX_PIECES: usize = 4096;

/// In-place stable left moves in parallel waves.
///
/// Piece `p` reads the positions `src(p)` and writes `dst(p)`, where the `dst` ranges are
/// disjoint and ascending, the `src` ranges ascend (starts and ends nondecreasing), and
/// `dst(p).start <= src(p).start` (a piece copies forward, so its own overlap is fine).
/// Then piece `p` can only clobber the not-yet-read sources of *earlier* pieces: its wave
/// is one more than the latest wave of an earlier piece whose source meets its
/// destination. Pieces of one wave are independent; waves run one after the other. The
/// moved values are exact, so the outcome never depends on the threads.
pub(crate) struct MoveWaves {
    level: [u16; MAX_PIECES],
    n: usize,
    levels: usize,
}

impl MoveWaves {
    /// Plans `n <= MAX_PIECES` pieces.
    pub(crate) fn plan(
        n: usize,
        src: &dyn Fn(usize) -> Range<usize>,
        dst: &dyn Fn(usize) -> Range<usize>,
    ) -> MoveWaves {
        assert!(n <= MAX_PIECES, "too many pieces in a move plan");
        let mut w = MoveWaves {
            level: [0; MAX_PIECES],
            n,
            levels: 0,
        };
        for p in 0..n {
            let d = dst(p);
            let mut lvl = 0u16;
            if !d.is_empty() {
                for q in (0..p).rev() {
                    let s = src(q);
                    if s.end <= d.start {
                        break;
                    }
                    if !s.is_empty() && s.start < d.end {
                        lvl = lvl.max(w.level[q] + 1);
                    }
                }
            }
            w.level[p] = lvl;
            w.levels = w.levels.max(lvl as usize + 1);
        }
        w
    }

    /// Runs `piece(p)` for every piece, wave after wave (`work`: of the whole plan).
    pub(crate) fn run(&self, work: usize, piece: Unit<'_>) -> Result<()> {
        let mut first = Ok(());
        let mut ids = [0u16; MAX_PIECES];
        for l in 0..self.levels {
            let mut m = 0;
            for p in 0..self.n {
                if self.level[p] as usize == l {
                    ids[m] = p as u16;
                    m += 1;
                }
            }
            let ids = &ids[..m];
            let r = for_each(m, work / self.levels, &|i| piece(ids[i] as usize));
            if first.is_ok() {
                first = r;
            }
        }
        first
    }

    /// The number of waves.
    #[cfg(test)]
    pub(crate) fn waves(&self) -> usize {
        self.levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Stable left compaction of `keep` positions by pieces, run wave by wave with the
    /// pieces of each wave in reverse order: equals the sequential result.
    #[test]
    fn waves_compact_like_a_sequential_pass() {
        for &(n, step, piece) in &[
            (1000usize, 2usize, 7usize),
            (5000, 10, 64),
            (777, 1, 5),
            (4096, 3, 1),
        ] {
            let keep: Vec<usize> = (0..n).filter(|i| i % step == 0 || i % 7 == 3).collect();
            let data: Vec<u32> = (0..n as u32).collect();
            let expect: Vec<u32> = keep.iter().map(|&i| data[i]).collect();
            let pieces = keep.len().div_ceil(piece);
            let src = |p: usize| keep[p * piece]..keep[(keep.len().min((p + 1) * piece)) - 1] + 1;
            let dst = |p: usize| p * piece..keep.len().min((p + 1) * piece);
            let plan = MoveWaves::plan(pieces, &src, &dst);
            // Each wave's pieces in reverse order, element by element: a piece that
            // clobbered an unread source of a piece in its own wave would show.
            let buf = Mutex::new(data.clone());
            for l in 0..plan.waves() {
                for p in (0..pieces).rev().filter(|&p| plan.level[p] as usize == l) {
                    let mut b = buf.lock().unwrap();
                    for j in dst(p) {
                        b[j] = b[keep[j]];
                    }
                }
            }
            let seq = Mutex::new(data.clone());
            plan.run(0, &|p| {
                let mut b = seq.lock().unwrap();
                for j in dst(p) {
                    b[j] = b[keep[j]];
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(&seq.lock().unwrap()[..keep.len()], &expect[..]);
            assert_eq!(
                &buf.lock().unwrap()[..keep.len()],
                &expect[..],
                "{n} {step} {piece}"
            );
            if step == 1 {
                // Nothing moves: every piece is in place, one wave.
                assert_eq!(plan.waves(), 1);
            }
        }
    }
}
