/* tkr-test: std=c11 (uses _Static_assert) */
/* The ABI's numbers, restated by hand: changing any of them needs an edit here too,
 * which review can see. Compiled (and run) as part of the C tests. */
#include <stddef.h>

#include "check.h"

_Static_assert(sizeof(tkr_status) == 4, "tkr_status is uint32_t");
_Static_assert(TKR_STATUS_OK == 0, "status");
_Static_assert(TKR_STATUS_NULL_POINTER == 1, "status");
_Static_assert(TKR_STATUS_INVALID_ARGUMENT == 2, "status");
_Static_assert(TKR_STATUS_OUT_OF_RANGE == 3, "status");
_Static_assert(TKR_STATUS_BUFFER_TOO_SMALL == 4, "status");
_Static_assert(TKR_STATUS_ISA_UNAVAILABLE == 5, "status");
_Static_assert(TKR_STATUS_UNSUPPORTED == 6, "status");
_Static_assert(TKR_STATUS_PANIC == 7, "status");
_Static_assert(TKR_STATUS_SIZE_OVERFLOW == 8, "status");
_Static_assert(TKR_STATUS_BAD_STRIDE == 9, "status");
_Static_assert(TKR_STATUS_OVERLAP == 10, "status");
_Static_assert(TKR_STATUS_DUPLICATE_INDEX == 11, "status");
_Static_assert(TKR_STATUS_UNSORTED_INDEX == 12, "status");
_Static_assert(TKR_STATUS_PARALLEL_FAILED == 13, "status");
_Static_assert(TKR_ISA_AUTO == 0 && TKR_ISA_SCALAR == 1 && TKR_ISA_AVX2 == 2 && TKR_ISA_AVX512 == 3 &&
                   TKR_ISA_NEON == 4,
               "isa ids");
_Static_assert(TKR_DTYPE_F32 == 1 && TKR_DTYPE_F16 == 2 && TKR_DTYPE_BF16 == 3, "dtype codes");
_Static_assert(TKR_ACT_NONE == 0 && TKR_ACT_SIGMOID == 1, "activation codes");
_Static_assert(TKR_KV_TOKEN_MAJOR == 1 && TKR_KV_HEAD_MAJOR == 2, "kv layout codes");
_Static_assert(TKR_KV_KEEP_SHARED == 0 && TKR_KV_KEEP_PER_HEAD == 1, "kv keep modes");
_Static_assert(TKR_ATTENTION_CAUSAL == 1 && TKR_ATTENTION_BF16_DOT == 2, "attention flags");
_Static_assert(TKR_KEYS_DENSE == 0 && TKR_KEYS_INDICES == 1 && TKR_KEYS_BLOCKS == 2, "key set kinds");
_Static_assert(TKR_BLOCK_LISTS_SHARED == 0 && TKR_BLOCK_LISTS_PER_KV_HEAD == 1 &&
                   TKR_BLOCK_LISTS_PER_Q_HEAD == 2,
               "block list groups");
_Static_assert(sizeof(void *) != 8 || sizeof(tkr_attention_options) == 168, "options size");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, v_head_dim) == 152, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, bias_dtype) == 160, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, bias) == 120, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, bias_batch_stride) == 144, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, alibi_slopes) == 112, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, softcap) == 104, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, window_right) == 96, "options layout");
_Static_assert(TKR_ATTENTION_WINDOW_RIGHT == 4, "attention flags");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, sinks) == 88, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, causal_align) == 72, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, batch) == 80, "options layout");
_Static_assert(sizeof(tkr_attention_batch) == 12 * sizeof(size_t), "batch size");
_Static_assert(offsetof(tkr_attention_batch, cu_seqlens_q) == 2 * sizeof(size_t), "batch layout");
_Static_assert(offsetof(tkr_attention_batch, k_positions_batch_stride) == 11 * sizeof(size_t), "batch layout");
_Static_assert(TKR_KEYS_SEQ_INDICES == 3, "key kinds");
_Static_assert(TKR_CAUSAL_ALIGN_POSITIONS == 0 && TKR_CAUSAL_ALIGN_TOP_LEFT == 1 && TKR_CAUSAL_ALIGN_BOTTOM_RIGHT == 2, "causal alignments");
_Static_assert(offsetof(tkr_attention_options, struct_size) == 0, "options layout");
_Static_assert(offsetof(tkr_attention_options, scale) == sizeof(size_t), "options layout");
_Static_assert(offsetof(tkr_attention_options, out_dtype) == sizeof(size_t) + 12, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, q_positions) == 24, "options layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_options, mass_head_stride) == 64, "options layout");
_Static_assert(sizeof(void *) != 8 || sizeof(tkr_attention_keys) == 80, "keys size");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_keys, index_offsets) == 72, "keys layout");
_Static_assert(offsetof(tkr_attention_keys, kind) == sizeof(size_t), "keys layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_keys, indices) == 16, "keys layout");
_Static_assert(sizeof(void *) != 8 || offsetof(tkr_attention_keys, n_block_ids) == 64, "keys layout");
_Static_assert(TKR_ABI_VERSION == 2, "abi version");
_Static_assert(TKR_TOPK_ORDER_SCORE == 1 && TKR_TOPK_CAPACITY == 2, "top-k flags");
_Static_assert(TKR_ROUTE_TOPK == 1 && TKR_ROUTE_THRESHOLD == 2, "route select modes");
_Static_assert(TKR_MAX_ROW == 4294967295u, "longest selection row");

#include <stddef.h>
#if UINTPTR_MAX == UINT64_MAX
/* The option structs on 64-bit targets: no implicit padding anywhere. */
_Static_assert(sizeof(tkr_topk_options) == 88, "tkr_topk_options size");
_Static_assert(offsetof(tkr_topk_options, struct_size) == 0 && offsetof(tkr_topk_options, flags) == 8 &&
                   offsetof(tkr_topk_options, reserved) == 12 && offsetof(tkr_topk_options, keep_first) == 16 &&
                   offsetof(tkr_topk_options, keep_last) == 24 && offsetof(tkr_topk_options, keep_mask) == 32 &&
                   offsetof(tkr_topk_options, keep_mask_row_stride) == 40 &&
                   offsetof(tkr_topk_options, valid_lens) == 48 && offsetof(tkr_topk_options, row_k) == 56 &&
                   offsetof(tkr_topk_options, capacity) == 64 && offsetof(tkr_topk_options, out_scores) == 72 &&
                   offsetof(tkr_topk_options, out_scores_row_stride) == 80,
               "tkr_topk_options layout");
_Static_assert(sizeof(tkr_threshold_options) == 80, "tkr_threshold_options size");
_Static_assert(offsetof(tkr_threshold_options, struct_size) == 0 && offsetof(tkr_threshold_options, flags) == 8 &&
                   offsetof(tkr_threshold_options, reserved) == 12 &&
                   offsetof(tkr_threshold_options, keep_first) == 16 &&
                   offsetof(tkr_threshold_options, keep_last) == 24 &&
                   offsetof(tkr_threshold_options, keep_mask) == 32 &&
                   offsetof(tkr_threshold_options, keep_mask_row_stride) == 40 &&
                   offsetof(tkr_threshold_options, valid_lens) == 48 &&
                   offsetof(tkr_threshold_options, row_tau) == 56 &&
                   offsetof(tkr_threshold_options, out_mask) == 64 &&
                   offsetof(tkr_threshold_options, out_mask_row_stride) == 72,
               "tkr_threshold_options layout");
_Static_assert(sizeof(tkr_softmax_options) == 32, "tkr_softmax_options size");
_Static_assert(offsetof(tkr_softmax_options, struct_size) == 0 && offsetof(tkr_softmax_options, scale) == 8 &&
                   offsetof(tkr_softmax_options, out_dtype) == 12 && offsetof(tkr_softmax_options, bias) == 16 &&
                   offsetof(tkr_softmax_options, bias_row_stride) == 24,
               "tkr_softmax_options layout");
_Static_assert(sizeof(tkr_route_options) == 48, "tkr_route_options size");
_Static_assert(offsetof(tkr_route_options, struct_size) == 0 && offsetof(tkr_route_options, flags) == 8 &&
                   offsetof(tkr_route_options, reserved) == 12 && offsetof(tkr_route_options, keep_first) == 16 &&
                   offsetof(tkr_route_options, keep_last) == 24 && offsetof(tkr_route_options, keep_mask) == 32 &&
                   offsetof(tkr_route_options, capacity) == 40,
               "tkr_route_options layout");
#endif

int main(void) {
    check_expected_isa();
    return finish_tests("abi_check");
}
