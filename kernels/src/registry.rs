//! The registry entry type shared by every kernel family.

use crate::Isa;
use core::fmt;

/// One compiled kernel variant: where it lives, the tier it needs, and the function.
///
/// A kernel at Rust path `<family>::<isa>::<dtype>_<algo>` has the registry id
/// `<dtype>_<family>__<isa>_<algo>` (see `kernels/README.md`); [`kernel!`](crate::kernel)
/// builds the entry from the path, so the id and the path cannot disagree.
#[derive(Clone, Copy)]
pub struct KernelInfo<F> {
    /// Family module name, e.g. `sigmoid`.
    pub family: &'static str,
    /// Function name inside `<family>::<isa>`, e.g. `f32_rr2_lut8_p4_div_u64`.
    pub name: &'static str,
    /// The tier whose features the function is compiled for.
    pub isa: Isa,
    pub f: F,
}

impl<F> KernelInfo<F> {
    /// The registry id, e.g. `f32_sigmoid__avx512_rr2_lut8_p4_div_u64`.
    pub fn id(&self) -> KernelId<'_> {
        KernelId {
            family: self.family,
            name: self.name,
            isa: self.isa,
        }
    }
}

impl<F> fmt::Debug for KernelInfo<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.id())
    }
}

/// Display form of a registry id.
pub struct KernelId<'a> {
    family: &'a str,
    name: &'a str,
    isa: Isa,
}

impl fmt::Display for KernelId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (dtype, algo) = self.name.split_once('_').unwrap_or((self.name, ""));
        write!(f, "{dtype}_{}__{}_{algo}", self.family, self.isa.name())
    }
}

/// `kernel!(sigmoid::avx512::f32_rr2_lut8_p4_div_u64)` builds the [`KernelInfo`] of that
/// function: family `sigmoid`, tier `Isa::Avx512`, name `f32_rr2_lut8_p4_div_u64`.
#[macro_export]
macro_rules! kernel {
    ($family:ident :: $isa:ident :: $name:ident) => {
        $crate::KernelInfo {
            family: stringify!($family),
            name: stringify!($name),
            isa: $crate::kernel!(@isa $isa),
            f: $crate::$family::$isa::$name,
        }
    };
    (@isa scalar) => { $crate::Isa::Scalar };
    (@isa avx2) => { $crate::Isa::Avx2 };
    (@isa avx512) => { $crate::Isa::Avx512 };
    (@isa neon) => { $crate::Isa::Neon };
}
