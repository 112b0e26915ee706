//! One table of kernels per ISA level, switched as a unit. This file is the dispatch
//! policy: which registry entry each level uses.

use tokenroute_kernels::attend::{self, AttendFn, BoundFn, MergeFn, SummaryFn};
use tokenroute_kernels::compact::{self, CopyRowsFn, ScatterAddFn};
use tokenroute_kernels::score::{self, ScoreFn};
use tokenroute_kernels::select::{
    self, CountNonzeroFn, IndicesToMaskFn, MaskToIndicesFn, ThresholdFn, TopkFn,
};
use tokenroute_kernels::sigmoid::{self, SigmoidF32};
use tokenroute_kernels::softmax::{self, SoftmaxFn};
use tokenroute_kernels::Isa;

use half::{bf16, f16};

/// The kernels of one ISA level. Holding a `&Kernels` proves the CPU can run them:
/// the only ways to get one are [`Kernels::for_isa`] and [`Kernels::active`].
#[derive(Debug)]
pub struct Kernels {
    isa: Isa,
    pub(crate) sigmoid_f32: SigmoidF32,
    pub(crate) score_f32: ScoreFn<f32>,
    pub(crate) score_f16: ScoreFn<f16>,
    pub(crate) score_bf16: ScoreFn<bf16>,
    pub(crate) copy_rows: CopyRowsFn,
    pub(crate) scatter_add_f32: ScatterAddFn<f32>,
    pub(crate) scatter_add_f16: ScatterAddFn<f16>,
    pub(crate) scatter_add_bf16: ScatterAddFn<bf16>,
    pub(crate) select_threshold_f32: ThresholdFn,
    pub(crate) select_topk_f32: TopkFn,
    pub(crate) select_mask_to_indices: MaskToIndicesFn,
    pub(crate) select_indices_to_mask: IndicesToMaskFn,
    pub(crate) select_count_nonzero_u8: CountNonzeroFn,
    pub(crate) attend_f32: AttendFn<f32>,
    pub(crate) attend_f16: AttendFn<f16>,
    pub(crate) attend_bf16: AttendFn<bf16>,
    pub(crate) attend_merge: MergeFn,
    pub(crate) key_summary_f32: SummaryFn<f32>,
    pub(crate) key_summary_f16: SummaryFn<f16>,
    pub(crate) key_summary_bf16: SummaryFn<bf16>,
    pub(crate) key_bound_f32: BoundFn<f32>,
    pub(crate) key_bound_f16: BoundFn<f16>,
    pub(crate) key_bound_bf16: BoundFn<bf16>,
    pub(crate) softmax_f32: SoftmaxFn<f32>,
    pub(crate) softmax_f16: SoftmaxFn<f16>,
    pub(crate) softmax_bf16: SoftmaxFn<bf16>,
}

static SCALAR: Kernels = Kernels {
    isa: Isa::Scalar,
    sigmoid_f32: sigmoid::scalar::f32_rr2_lut8_p4_div_u1,
    score_f32: score::scalar::f32_fma16_u1,
    score_f16: score::scalar::f16_fma16_u1,
    score_bf16: score::scalar::bf16_fma16_u1,
    copy_rows: compact::scalar::bytes_rows_memcpy,
    scatter_add_f32: compact::scalar::f32_scatter_add_u1,
    scatter_add_f16: compact::scalar::f16_scatter_add_u1,
    scatter_add_bf16: compact::scalar::bf16_scatter_add_u1,
    select_threshold_f32: select::scalar::f32_threshold_u4,
    select_topk_f32: select::scalar::f32_topk_band_u4,
    select_mask_to_indices: select::scalar::u8_mask_to_indices_u1,
    select_indices_to_mask: select::scalar::u32_indices_to_mask_u1,
    select_count_nonzero_u8: select::scalar::u8_count_nonzero_u1,
    attend_f32: attend::scalar::f32_fma16_b64,
    attend_f16: attend::scalar::f16_fma16_b64,
    attend_bf16: attend::scalar::bf16_fma16_b64,
    attend_merge: attend::scalar::f32_merge_u1,
    key_summary_f32: attend::scalar::f32_summary_u1,
    key_summary_f16: attend::scalar::f16_summary_u1,
    key_summary_bf16: attend::scalar::bf16_summary_u1,
    key_bound_f32: attend::scalar::f32_bound_u1,
    key_bound_f16: attend::scalar::f16_bound_u1,
    key_bound_bf16: attend::scalar::bf16_bound_u1,
    softmax_f32: softmax::scalar::f32_online_b64,
    softmax_f16: softmax::scalar::f16_online_b64,
    softmax_bf16: softmax::scalar::bf16_online_b64,
};

#[cfg(target_arch = "x86_64")]
static AVX2: Kernels = Kernels {
    isa: Isa::Avx2,
    sigmoid_f32: sigmoid::avx2::f32_rr2_lut8_p4_div_u16,
    score_f32: score::avx2::f32_fma16_r4e2,
    score_f16: score::avx2::f16_fma16_r4e2,
    score_bf16: score::avx2::bf16_fma16_r4e2,
    copy_rows: compact::avx2::bytes_rows_y256nt,
    scatter_add_f32: compact::avx2::f32_scatter_add_u4,
    scatter_add_f16: compact::avx2::f16_scatter_add_u4,
    scatter_add_bf16: compact::avx2::bf16_scatter_add_u4,
    select_threshold_f32: select::avx2::f32_threshold_lut_u32,
    select_topk_f32: select::avx2::f32_topk_band_lut_u32,
    select_mask_to_indices: select::avx2::u8_mask_to_indices_lut_u8,
    select_indices_to_mask: select::avx2::u32_indices_to_mask_u1,
    select_count_nonzero_u8: select::avx2::u8_count_nonzero_u8,
    attend_f32: attend::avx2::f32_fma16_b64,
    attend_f16: attend::avx2::f16_fma16_b64,
    attend_bf16: attend::avx2::bf16_fma16_b64,
    attend_merge: attend::avx2::f32_merge_u8,
    key_summary_f32: attend::avx2::f32_summary_v16,
    key_summary_f16: attend::avx2::f16_summary_v16,
    key_summary_bf16: attend::avx2::bf16_summary_v16,
    key_bound_f32: attend::avx2::f32_bound_v16,
    key_bound_f16: attend::avx2::f16_bound_v16,
    key_bound_bf16: attend::avx2::bf16_bound_v16,
    softmax_f32: softmax::avx2::f32_online_b64,
    softmax_f16: softmax::avx2::f16_online_b64,
    softmax_bf16: softmax::avx2::bf16_online_b64,
};

#[cfg(target_arch = "x86_64")]
static AVX512: Kernels = Kernels {
    isa: Isa::Avx512,
    sigmoid_f32: sigmoid::avx512::f32_rr2_lut8_p4_div_u64,
    score_f32: score::avx512::f32_fma16_r4e4_r2e8,
    score_f16: score::avx512::f16_fma16_sized,
    score_bf16: score::avx512::bf16_fma16_sized,
    copy_rows: compact::avx512::bytes_rows_y256nt,
    scatter_add_f32: compact::avx512::f32_scatter_add_u4,
    scatter_add_f16: compact::avx512::f16_scatter_add_u4,
    scatter_add_bf16: compact::avx512::bf16_scatter_add_u4,
    select_threshold_f32: select::avx512::f32_threshold_vcompress_u64,
    select_topk_f32: select::avx512::f32_topk_band_vcompress_u64,
    select_mask_to_indices: select::avx512::u8_mask_to_indices_vcompress_u16,
    select_indices_to_mask: select::avx512::u32_indices_to_mask_u1,
    select_count_nonzero_u8: select::avx512::u8_count_nonzero_u16,
    attend_f32: attend::avx512::f32_fma16_b64,
    attend_f16: attend::avx512::f16_fma16_b64,
    attend_bf16: attend::avx512::bf16_fma16_b64,
    attend_merge: attend::avx512::f32_merge_u16,
    key_summary_f32: attend::avx512::f32_summary_v16,
    key_summary_f16: attend::avx512::f16_summary_v16,
    key_summary_bf16: attend::avx512::bf16_summary_v16,
    key_bound_f32: attend::avx512::f32_bound_v16,
    key_bound_f16: attend::avx512::f16_bound_v16,
    key_bound_bf16: attend::avx512::bf16_bound_v16,
    softmax_f32: softmax::avx512::f32_online_b64,
    softmax_f16: softmax::avx512::f16_online_b64,
    softmax_bf16: softmax::avx512::bf16_online_b64,
};

#[cfg(target_arch = "aarch64")]
static NEON: Kernels = Kernels {
    isa: Isa::Neon,
    sigmoid_f32: sigmoid::neon::f32_rr2_lut8_p4_div_u8,
    score_f32: score::neon::f32_fma16_r4e2,
    score_f16: score::neon::f16_fma16_r4e2,
    score_bf16: score::neon::bf16_fma16_r4e2,
    copy_rows: compact::neon::bytes_rows_q64,
    scatter_add_f32: compact::neon::f32_scatter_add_u4,
    scatter_add_f16: compact::neon::f16_scatter_add_u4,
    scatter_add_bf16: compact::neon::bf16_scatter_add_u4,
    select_threshold_f32: select::neon::f32_threshold_tbl_u16,
    select_topk_f32: select::neon::f32_topk_band_tbl_u16,
    select_mask_to_indices: select::neon::u8_mask_to_indices_tbl_u4,
    select_indices_to_mask: select::neon::u32_indices_to_mask_u1,
    select_count_nonzero_u8: select::neon::u8_count_nonzero_u4,
    attend_f32: attend::neon::f32_fma16_b64,
    attend_f16: attend::neon::f16_fma16_b64,
    attend_bf16: attend::neon::bf16_fma16_b64,
    attend_merge: attend::neon::f32_merge_u4,
    key_summary_f32: attend::neon::f32_summary_v16,
    key_summary_f16: attend::neon::f16_summary_v16,
    key_summary_bf16: attend::neon::bf16_summary_v16,
    key_bound_f32: attend::neon::f32_bound_v16,
    key_bound_f16: attend::neon::f16_bound_v16,
    key_bound_bf16: attend::neon::bf16_bound_v16,
    softmax_f32: softmax::neon::f32_online_b64,
    softmax_f16: softmax::neon::f16_online_b64,
    softmax_bf16: softmax::neon::bf16_online_b64,
};

impl Kernels {
    /// The table of `isa`, or `None` when this build or this CPU lacks it.
    pub fn for_isa(isa: Isa) -> Option<&'static Kernels> {
        if !isa.is_supported() {
            return None;
        }
        match isa {
            Isa::Scalar => Some(&SCALAR),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => Some(&AVX2),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => Some(&AVX512),
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => Some(&NEON),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The active table (see the `isa` module for how it is chosen).
    pub fn active() -> crate::Result<&'static Kernels> {
        crate::isa::active_kernels()
    }

    /// The tables of every level this CPU supports, lowest first.
    pub fn all_supported() -> impl Iterator<Item = &'static Kernels> {
        Isa::ALL.into_iter().filter_map(Kernels::for_isa)
    }

    /// This table's ISA level.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// The opt-in bf16 attention kernel built on AVX512-BF16 dot products, when this
    /// level has one and the CPU supports it (runtime detection; not a separate level).
    pub(crate) fn attend_bf16_dot(&self) -> Option<AttendFn<bf16>> {
        #[cfg(target_arch = "x86_64")]
        if self.isa == Isa::Avx512 && std::arch::is_x86_feature_detected!("avx512bf16") {
            return Some(attend::avx512::bf16_dpbf16_b64);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_exist_exactly_for_supported_levels() {
        for isa in Isa::ALL {
            match Kernels::for_isa(isa) {
                Some(k) => assert_eq!(k.isa(), isa),
                None => assert!(!isa.is_supported()),
            }
        }
        assert!(Kernels::for_isa(Isa::Scalar).is_some());
    }
}
