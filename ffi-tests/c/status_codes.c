/* Every status code, produced through the C API: each producer below is a call that
 * must return exactly that code (and, for an error, write nothing). The program prints
 * "produced: <code> <code> ..."; ffi-tests/tests/status_codes.rs requires that list to
 * cover every code that some function of tokenroute.h documents, plus OK and PANIC.
 *
 * TKR_STATUS_PANIC cannot be produced by a correct library from outside. Built with
 * -DTKR_TEST_HOOKS against a library built with the `test-hooks` cargo feature
 * (status_codes.rs does that), the program calls tkr_test_panic, which panics inside
 * the same guard as every entry point; the release library lacks that hook, so the
 * ordinary C test run skips it.
 *
 * A family adds its producers to the table (one line per status it can return). */
#include <math.h>

#include "check.h"

/* A parallel-for that runs nothing and reports failure. */
static int32_t failing_for(void *ctx, size_t n, tkr_task_fn task, void *task_ctx) {
    (void)ctx;
    (void)n;
    (void)task;
    (void)task_ctx;
    return 1;
}

#ifdef TKR_TEST_HOOKS
/* Not in tokenroute.h: exported only by a `test-hooks` build (src/ffi/testing.rs). */
tkr_status tkr_test_panic(uint32_t kind, float *out, size_t n);
#endif

#define MARK 0x7fa5a5a5u

static float buf_x[64], buf_y[64];
static uint16_t buf_h16[64];

static void reset(void) {
    for (int i = 0; i < 64; i++) {
        buf_x[i] = (float)i * 0.25f;
        uint32_t m = MARK;
        memcpy(&buf_y[i], &m, sizeof m);
        buf_h16[i] = 0x3f80; /* bf16 1.0 */
    }
}

static int y_untouched(void) {
    for (int i = 0; i < 64; i++) {
        uint32_t b;
        memcpy(&b, &buf_y[i], sizeof b);
        if (b != MARK) return 0;
    }
    return 1;
}

/* --- producers: each returns the status of one call ------------------------------ */

static tkr_status ok_sigmoid(void) { return tkr_sigmoid_f32(buf_x, 8, buf_y); }
static tkr_status ok_empty(void) { return tkr_sigmoid_f32(NULL, 0, NULL); }
static tkr_status null_sigmoid_x(void) { return tkr_sigmoid_f32(NULL, 3, buf_y); }
static tkr_status null_score_h(void) {
    return tkr_score(TKR_DTYPE_F32, NULL, 2, 4, 4, buf_x, 1, 4, NULL, TKR_ACT_NONE, buf_y, 1);
}
static tkr_status invalid_dtype(void) {
    return tkr_score(99, buf_x, 2, 4, 4, buf_x, 1, 4, NULL, TKR_ACT_NONE, buf_y, 1);
}
static tkr_status invalid_activation(void) {
    return tkr_score(TKR_DTYPE_F32, buf_x, 2, 4, 4, buf_x, 1, 4, NULL, 7, buf_y, 1);
}
static tkr_status invalid_no_routers(void) {
    return tkr_score(TKR_DTYPE_F32, buf_x, 2, 4, 4, buf_x, 0, 4, NULL, TKR_ACT_NONE, buf_y, 1);
}
static tkr_status invalid_misaligned(void) {
    return tkr_sigmoid_f32((const float *)((const char *)buf_x + 1), 4, buf_y);
}
static tkr_status invalid_misaligned_bf16(void) {
    return tkr_score(TKR_DTYPE_BF16, (const char *)buf_h16 + 1, 2, 4, 4, buf_h16, 1, 4, NULL,
                     TKR_ACT_NONE, buf_y, 1);
}
static tkr_status invalid_isa_id(void) { return tkr_set_isa(77); }
static tkr_status isa_unavailable(void) {
    uint32_t mask = tkr_supported_isas();
    for (uint32_t isa = TKR_ISA_SCALAR; isa <= TKR_ISA_NEON; isa++)
        if (!(mask & (1u << isa))) return tkr_set_isa(isa);
    return TKR_STATUS_OK; /* every level supported: no producer on this CPU */
}
static tkr_status size_overflow_sigmoid(void) { return tkr_sigmoid_f32(buf_x, SIZE_MAX / 2, buf_y); }
static tkr_status size_overflow_rows(void) {
    return tkr_score(TKR_DTYPE_F32, buf_x, SIZE_MAX / 2, 4, SIZE_MAX / 4, buf_x, 1, 4, NULL,
                     TKR_ACT_NONE, buf_y, 1);
}
static tkr_status bad_stride_h(void) {
    return tkr_score(TKR_DTYPE_F32, buf_x, 2, 4, 3, buf_x, 1, 4, NULL, TKR_ACT_NONE, buf_y, 1);
}
static tkr_status bad_stride_out(void) {
    return tkr_score(TKR_DTYPE_F32, buf_x, 2, 4, 4, buf_x, 2, 4, NULL, TKR_ACT_NONE, buf_y, 1);
}
static tkr_status overlap_sigmoid(void) { return tkr_sigmoid_f32(buf_y, 4, buf_y + 1); }
static tkr_status overlap_score(void) {
    return tkr_score(TKR_DTYPE_F32, buf_y, 2, 4, 4, buf_x, 1, 4, NULL, TKR_ACT_NONE, buf_y + 2, 1);
}
/* Selection. */
static uint32_t idx_buf[8] = {0, 2, 5, 1, 1, 7, 3, 4};
static tkr_status out_of_range_index(void) {
    return tkr_indices_to_mask(idx_buf, 8, (uint8_t *)buf_y, 6); /* 7 >= n = 6 */
}
static uint64_t ws_buf[8];
static tkr_status buffer_too_small_workspace(void) {
    /* Rows of 8 tokens need 64 bytes of workspace; 56 are given. */
    return tkr_topk_f32(buf_x, 1, 8, 8, 2, NULL, (uint32_t *)buf_y, 2, NULL, ws_buf, 56);
}
static tkr_status unsupported_options(void) {
    /* A caller compiled against a newer header: a larger struct with a field set
     * that this library does not know. */
    struct {
        tkr_topk_options known;
        uint64_t future;
    } newer;
    memset(&newer, 0, sizeof newer);
    newer.known.struct_size = sizeof newer;
    newer.future = 1;
    return tkr_topk_f32(buf_x, 1, 8, 8, 2, &newer.known, (uint32_t *)buf_y, 2, NULL, NULL, 0);
}
static tkr_status ok_topk(void) {
    tkr_topk_options o;
    CHECK_STATUS(tkr_topk_options_init(&o), TKR_STATUS_OK);
    return tkr_topk_f32(buf_x, 1, 8, 8, 2, &o, (uint32_t *)buf_y, 2, NULL, NULL, 0);
}
static tkr_status null_options_init(void) { return tkr_threshold_options_init(NULL); }
static tkr_status invalid_k(void) {
    return tkr_topk_f32(buf_x, 1, 8, 8, 9, NULL, (uint32_t *)buf_y, 9, NULL, NULL, 0);
}
static tkr_status overlap_mask(void) {
    size_t count;
    return tkr_mask_to_indices((const uint8_t *)buf_y, 8, (uint32_t *)buf_y, &count);
}
static tkr_status size_overflow_workspace(void) {
    size_t bytes;
    return tkr_topk_workspace_size(SIZE_MAX / 4, &bytes);
}

static const uint32_t dup_idx[3] = {4, 1, 4};
static tkr_status duplicate_scatter(void) {
    /* dst[idx[j]] = src[j]: two sources for row 4. */
    return tkr_scatter_rows(sizeof(float), 4, buf_x, 4, dup_idx, 3, buf_y, 16, 4);
}
static const uint32_t unsorted_keep[3] = {0, 5, 2};
static tkr_status unsorted_compact(void) {
    size_t n = 99;
    return tkr_compact_rows(sizeof(float), 4, buf_y, 16, 4, unsorted_keep, 3, &n);
}

/* The compaction, route and attention families' distinctive errors (each output in
 * buf_y, which must stay untouched). */
static const uint32_t oor_idx[2] = {3, 16};
static tkr_status gather_out_of_range(void) {
    return tkr_gather_rows(sizeof(float), 4, buf_x, 16, 4, oor_idx, 2, buf_y, 4);
}
static tkr_status gather_elem_size_0(void) {
    return tkr_gather_rows(0, 4, buf_x, 16, 4, oor_idx, 1, buf_y, 4);
}
static tkr_status scatter_add_out_of_range(void) {
    return tkr_scatter_add_rows(TKR_DTYPE_F32, 4, buf_y, 16, 4, oor_idx, 2, buf_x, 4, NULL);
}
static const uint32_t dup_keep[3] = {1, 1, 2};
static tkr_status compact_duplicate(void) {
    size_t n = 99;
    return tkr_compact_rows(sizeof(float), 4, buf_y, 16, 4, dup_keep, 3, &n);
}
static tkr_status compact_keep_inside_data(void) {
    return tkr_compact_rows(sizeof(float), 4, buf_y, 16, 4, (const uint32_t *)(buf_y + 8), 2, NULL);
}
static tkr_status kv_unknown_layout(void) {
    return tkr_kv_compact(7, 4, buf_y, 4, 2, 8, 16, 8, dup_keep + 1, 2, TKR_KV_KEEP_SHARED, NULL);
}
static const uint32_t per_head_keep[4] = {0, 2, 3, 1}; /* head 1 descends */
static tkr_status kv_per_head_unsorted(void) {
    return tkr_kv_compact(TKR_KV_HEAD_MAJOR, 4, buf_y, 4, 2, 8, 8, 32, per_head_keep, 2,
                          TKR_KV_KEEP_PER_HEAD, NULL);
}
static tkr_status kv_head_stride_small(void) {
    /* Head-major: the head stride must hold n_tokens rows (4 * 8 = 32 > 31). */
    return tkr_kv_compact(TKR_KV_HEAD_MAJOR, 4, buf_y, 4, 2, 8, 8, 31, per_head_keep, 2,
                          TKR_KV_KEEP_SHARED, NULL);
}
static tkr_status kv_keep_inside_cache(void) {
    return tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 4, buf_y, 4, 2, 8, 16, 8, (const uint32_t *)(buf_y + 4),
                          2, TKR_KV_KEEP_SHARED, NULL);
}
static tkr_status route_capacity_small(void) {
    size_t c = 0;
    return tkr_route(TKR_DTYPE_F32, buf_x, 16, 4, 4, buf_x, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 5,
                     0.0f, NULL, (uint32_t *)buf_y, buf_y + 8, buf_y + 16, 4, 4, &c, NULL, 0);
}
static tkr_status route_k_above_n(void) {
    size_t c = 0;
    return tkr_route(TKR_DTYPE_F32, buf_x, 3, 4, 4, buf_x, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 4,
                     0.0f, NULL, (uint32_t *)buf_y, buf_y + 8, buf_y + 16, 4, 4, &c, NULL, 0);
}
static tkr_status route_h_null(void) {
    size_t c = 0;
    return tkr_route(TKR_DTYPE_F32, NULL, 3, 4, 4, buf_x, NULL, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK, 2,
                     0.0f, NULL, (uint32_t *)buf_y, buf_y + 8, buf_y + 16, 4, 4, &c, NULL, 0);
}
/* Attention on q = buf_x[0..16] ([2, 2, 4]), k = buf_x[16..48], v = buf_x[32..64]
 * ([4, 2, 4]), out = buf_y. */
static tkr_status attend(uint32_t hq, uint32_t hkv, size_t d, const tkr_attention_keys *k,
                         const tkr_attention_options *o, const float *q) {
    return tkr_attention(TKR_DTYPE_F32, q, 2, hq, d, hq * d, d, buf_x + 16, buf_x + 32, 4, hkv,
                         hkv * d, d, hkv * d, d, k, o, buf_y, hq * d, d);
}
static const uint32_t key_idx[3] = {0, 4, 1};
static tkr_status attention_key_out_of_range(void) {
    tkr_attention_keys k;
    tkr_attention_keys_init(&k);
    k.kind = TKR_KEYS_INDICES;
    k.indices = key_idx;
    k.n_indices = 3;
    return attend(2, 2, 4, &k, NULL, buf_x);
}
static tkr_status attention_block_out_of_range(void) {
    static const size_t offs[2] = {0, 2};
    static const uint32_t ids[2] = {0, 2}; /* 2 blocks of 2 keys */
    tkr_attention_keys k;
    tkr_attention_keys_init(&k);
    k.kind = TKR_KEYS_BLOCKS;
    k.block_size = 2;
    k.query_block_size = 2;
    k.block_offsets = offs;
    k.block_ids = ids;
    k.n_block_ids = 2;
    return attend(2, 2, 4, &k, NULL, buf_x);
}
static tkr_status attention_heads_not_dividing(void) { return attend(3, 2, 4, NULL, NULL, buf_x); }
static tkr_status attention_head_dim_0(void) { return attend(2, 2, 0, NULL, NULL, buf_x); }
static tkr_status attention_causal_without_positions(void) {
    tkr_attention_options o;
    tkr_attention_options_init(&o);
    o.flags = TKR_ATTENTION_CAUSAL;
    return attend(2, 2, 4, NULL, &o, buf_x);
}
static tkr_status attention_scale_inf(void) {
    tkr_attention_options o;
    tkr_attention_options_init(&o);
    o.scale = INFINITY;
    return attend(2, 2, 4, NULL, &o, buf_x);
}
static tkr_status attention_lse_inside_out(void) {
    tkr_attention_options o;
    tkr_attention_options_init(&o);
    o.lse = buf_y + 2;
    return attend(2, 2, 4, NULL, &o, buf_x);
}
static tkr_status attention_out_over_q(void) {
    /* out = buf_y, q = buf_y + 4 (q read where out is written). */
    return attend(2, 2, 4, NULL, NULL, buf_y + 4);
}
static tkr_status attention_rows_overlap(void) {
    return tkr_attention(TKR_DTYPE_F32, buf_x, 2, 2, 4, 4, 3, buf_x + 16, buf_x + 32, 4, 2, 8, 4, 8, 4,
                         NULL, NULL, buf_y, 8, 4);
}
static tkr_status merge_head_dim_0(void) {
    return tkr_attention_merge(TKR_DTYPE_F32, buf_x, 2, 2, 0, 8, 4, buf_x + 32, 2, buf_y, 4, NULL);
}
static tkr_status summary_block_end_past(void) {
    /* 4 keys in blocks of 2: block_end 3 > 2. */
    return tkr_key_block_summary(TKR_DTYPE_F32, buf_x, 4, 2, 4, 8, 4, 2, 0, 3, buf_y, buf_y + 32);
}
static tkr_status summary_reversed(void) {
    return tkr_key_block_summary(TKR_DTYPE_F32, buf_x, 4, 2, 4, 8, 4, 2, 2, 1, buf_y, buf_y + 32);
}
static tkr_status bound_heads_not_dividing(void) {
    return tkr_key_block_bound(TKR_DTYPE_F32, buf_x, 2, 3, 4, 12, 4, buf_x + 24, buf_x + 40, 2, 2,
                               buf_y, 2);
}
static tkr_status quest_keeps_above_k(void) {
    size_t offs[5], kk = 0;
    return tkr_quest_select_blocks(TKR_DTYPE_F32, buf_x, 2, 2, 4, 8, 4, buf_x + 24, buf_x + 40, 2, 2, 2,
                                   2, 1, (uint32_t *)buf_y, offs, &kk);
}
#ifdef TKR_TEST_HOOKS
static tkr_status panic_static(void) { return tkr_test_panic(0, buf_y, 8); }
static tkr_status panic_formatted(void) { return tkr_test_panic(1, NULL, 0); }
#endif

/* The calling thread's parallel-for fails: the call completes its outputs inline and
 * says PARALLEL_FAILED. A score over 4096 x 128 floats has enough work to split. */
static tkr_status parallel_callback_fails(void) {
    static float h[4096 * 128], w[128], want[4096], out[4096];
    for (int i = 0; i < 4096 * 128; i++) h[i] = (float)(i % 7) * 0.125f;
    for (int i = 0; i < 128; i++) w[i] = 0.01f;
    tkr_status st = tkr_score(TKR_DTYPE_F32, h, 4096, 128, 128, w, 1, 128, NULL, TKR_ACT_NONE,
                              want, 1);
    if (st != TKR_STATUS_OK) return st;
    st = tkr_set_thread_parallel_for(failing_for, NULL);
    if (st != TKR_STATUS_OK) return st;
    st = tkr_score(TKR_DTYPE_F32, h, 4096, 128, 128, w, 1, 128, NULL, TKR_ACT_NONE, out, 1);
    tkr_set_thread_parallel_for(NULL, NULL);
    /* Complete outputs, equal to the inline call's (999: not a status, so a mismatch). */
    return memcmp(out, want, sizeof out) == 0 ? st : (tkr_status)999;
}
static tkr_status thread_count_zero(void) { return tkr_set_num_threads(0); }
static tkr_status parallel_for_null_with_ctx(void) {
    static int ctx;
    return tkr_set_parallel_for(NULL, &ctx);
}

typedef struct {
    const char *what;
    tkr_status want;
    tkr_status (*call)(void);
    /* Whether the call may write buf_y (only successful calls may). */
    int writes;
} producer;

static const producer PRODUCERS[] = {
    {"sigmoid", TKR_STATUS_OK, ok_sigmoid, 1},
    {"sigmoid (NULL, 0)", TKR_STATUS_OK, ok_empty, 0},
    {"sigmoid x NULL", TKR_STATUS_NULL_POINTER, null_sigmoid_x, 0},
    {"score h NULL", TKR_STATUS_NULL_POINTER, null_score_h, 0},
    {"score dtype 99", TKR_STATUS_INVALID_ARGUMENT, invalid_dtype, 0},
    {"score activation 7", TKR_STATUS_INVALID_ARGUMENT, invalid_activation, 0},
    {"score 0 routers", TKR_STATUS_INVALID_ARGUMENT, invalid_no_routers, 0},
    {"sigmoid misaligned x", TKR_STATUS_INVALID_ARGUMENT, invalid_misaligned, 0},
    {"score misaligned bf16 h", TKR_STATUS_INVALID_ARGUMENT, invalid_misaligned_bf16, 0},
    {"set_isa 77", TKR_STATUS_INVALID_ARGUMENT, invalid_isa_id, 0},
    {"set_isa to a level this CPU lacks", TKR_STATUS_ISA_UNAVAILABLE, isa_unavailable, 0},
    {"sigmoid n = SIZE_MAX/2", TKR_STATUS_SIZE_OVERFLOW, size_overflow_sigmoid, 0},
    {"score rows * stride overflows", TKR_STATUS_SIZE_OVERFLOW, size_overflow_rows, 0},
    {"score h stride < d", TKR_STATUS_BAD_STRIDE, bad_stride_h, 0},
    {"score out stride < routers", TKR_STATUS_BAD_STRIDE, bad_stride_out, 0},
    {"sigmoid y = x + 1", TKR_STATUS_OVERLAP, overlap_sigmoid, 0},
    {"score out inside h", TKR_STATUS_OVERLAP, overlap_score, 0},
    {"topk with default options", TKR_STATUS_OK, ok_topk, 1},
    {"topk k > n", TKR_STATUS_INVALID_ARGUMENT, invalid_k, 0},
    {"threshold_options_init(NULL)", TKR_STATUS_NULL_POINTER, null_options_init, 0},
    {"indices_to_mask index >= n", TKR_STATUS_OUT_OF_RANGE, out_of_range_index, 0},
    {"topk workspace too small", TKR_STATUS_BUFFER_TOO_SMALL, buffer_too_small_workspace, 0},
    {"topk options with an unknown field set", TKR_STATUS_UNSUPPORTED, unsupported_options, 0},
    {"mask_to_indices out_idx over mask", TKR_STATUS_OVERLAP, overlap_mask, 0},
    {"topk_workspace_size(SIZE_MAX / 4)", TKR_STATUS_SIZE_OVERFLOW, size_overflow_workspace, 0},
    {"scatter_rows with a repeated index", TKR_STATUS_DUPLICATE_INDEX, duplicate_scatter, 0},
    {"compact_rows keep not ascending", TKR_STATUS_UNSORTED_INDEX, unsorted_compact, 0},
    {"gather_rows index >= n_src_rows", TKR_STATUS_OUT_OF_RANGE, gather_out_of_range, 0},
    {"gather_rows elem_size 0", TKR_STATUS_INVALID_ARGUMENT, gather_elem_size_0, 0},
    {"scatter_add_rows index >= n_h_rows", TKR_STATUS_OUT_OF_RANGE, scatter_add_out_of_range, 0},
    {"compact_rows equal neighbours", TKR_STATUS_DUPLICATE_INDEX, compact_duplicate, 0},
    {"compact_rows keep inside data", TKR_STATUS_OVERLAP, compact_keep_inside_data, 0},
    {"kv_compact layout 7", TKR_STATUS_INVALID_ARGUMENT, kv_unknown_layout, 0},
    {"kv_compact per-head list descending", TKR_STATUS_UNSORTED_INDEX, kv_per_head_unsorted, 0},
    {"kv_compact head stride < n_tokens rows", TKR_STATUS_BAD_STRIDE, kv_head_stride_small, 0},
    {"kv_compact keep inside the cache", TKR_STATUS_OVERLAP, kv_keep_inside_cache, 0},
    {"route out_capacity < k", TKR_STATUS_BUFFER_TOO_SMALL, route_capacity_small, 0},
    {"route k > n_tokens", TKR_STATUS_INVALID_ARGUMENT, route_k_above_n, 0},
    {"route h NULL", TKR_STATUS_NULL_POINTER, route_h_null, 0},
    {"attention key index >= n_k", TKR_STATUS_OUT_OF_RANGE, attention_key_out_of_range, 0},
    {"attention block id >= n_blocks", TKR_STATUS_OUT_OF_RANGE, attention_block_out_of_range, 0},
    {"attention 3 query heads over 2 KV heads", TKR_STATUS_INVALID_ARGUMENT, attention_heads_not_dividing, 0},
    {"attention head_dim 0", TKR_STATUS_INVALID_ARGUMENT, attention_head_dim_0, 0},
    {"attention causal without positions", TKR_STATUS_NULL_POINTER, attention_causal_without_positions, 0},
    {"attention scale inf", TKR_STATUS_INVALID_ARGUMENT, attention_scale_inf, 0},
    {"attention lse inside out", TKR_STATUS_OVERLAP, attention_lse_inside_out, 0},
    {"attention out over q", TKR_STATUS_OVERLAP, attention_out_over_q, 0},
    {"attention head stride < head_dim", TKR_STATUS_BAD_STRIDE, attention_rows_overlap, 0},
    {"attention_merge head_dim 0", TKR_STATUS_INVALID_ARGUMENT, merge_head_dim_0, 0},
    {"key_block_summary block_end past the last block", TKR_STATUS_OUT_OF_RANGE, summary_block_end_past, 0},
    {"key_block_summary begin > end", TKR_STATUS_INVALID_ARGUMENT, summary_reversed, 0},
    {"key_block_bound 3 query heads over 2 KV heads", TKR_STATUS_INVALID_ARGUMENT, bound_heads_not_dividing, 0},
    {"quest_select_blocks keep_first + keep_last > k", TKR_STATUS_INVALID_ARGUMENT, quest_keeps_above_k, 0},
    {"thread parallel-for returns 1", TKR_STATUS_PARALLEL_FAILED, parallel_callback_fails, 0},
    {"set_num_threads(0)", TKR_STATUS_INVALID_ARGUMENT, thread_count_zero, 0},
    {"set_parallel_for(NULL, ctx)", TKR_STATUS_NULL_POINTER, parallel_for_null_with_ctx, 0},
#ifdef TKR_TEST_HOOKS
    {"tkr_test_panic (static message)", TKR_STATUS_PANIC, panic_static, 0},
    {"tkr_test_panic (formatted message)", TKR_STATUS_PANIC, panic_formatted, 0},
#endif
};

int main(void) {
    check_expected_isa();
    uint32_t level = tkr_get_isa();
    int produced[64] = {0};
    size_t count = sizeof PRODUCERS / sizeof PRODUCERS[0];
    for (size_t i = 0; i < count; i++) {
        const producer *p = &PRODUCERS[i];
        reset();
        tkr_status got = p->call();
        if (got != p->want) {
            fprintf(stderr, "%s: returned %s, want %s\n", p->what, tkr_status_string(got),
                    tkr_status_string(p->want));
            tkr_test_failures++;
            continue;
        }
        if (!p->writes && !y_untouched()) {
            fprintf(stderr, "%s: returned %s but wrote its output\n", p->what, tkr_status_string(got));
            tkr_test_failures++;
        }
        /* Every failure leaves a message; a caught panic says so, with its text. */
        if (got != TKR_STATUS_OK && tkr_last_error_message()[0] == 0) {
            fprintf(stderr, "%s: no tkr_last_error_message\n", p->what);
            tkr_test_failures++;
        }
        if (got == TKR_STATUS_PANIC)
            CHECK(strstr(tkr_last_error_message(), "panic caught") != NULL &&
                  strstr(tkr_last_error_message(), "deliberate panic") != NULL);
        /* The library stays usable (after a caught panic too) and on its level. */
        CHECK(tkr_get_isa() == level);
        reset();
        CHECK_STATUS(tkr_sigmoid_f32(buf_x, 4, buf_y), TKR_STATUS_OK);
        CHECK(buf_y[0] == 0.5f);
        if (got < 64) produced[got] = 1;
    }
    /* An unknown code has a name too. */
    CHECK(strcmp(tkr_status_string(4000000000u), "TKR_STATUS_UNKNOWN") == 0);
    printf("produced:");
    for (int s = 0; s < 64; s++)
        if (produced[s]) printf(" %s", tkr_status_string((tkr_status)s));
    printf("\n");
    return finish_tests("status_codes");
}
