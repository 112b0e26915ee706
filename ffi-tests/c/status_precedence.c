/* Which status wins when a call breaks several rules at once (README "API conventions",
 * item 4; header "Status precedence"). The checks run in four stages and the earliest
 * failing stage decides:
 *   1. values: ISA level, enum codes, flags, option structs, dimensions and
 *      parameters that need no buffer read (INVALID_ARGUMENT, UNSUPPORTED);
 *   2. buffers: strides, sizes, pointers, capacities (BAD_STRIDE, SIZE_OVERFLOW,
 *      NULL_POINTER, INVALID_ARGUMENT for a misaligned pointer or an input that sizes
 *      the call, BUFFER_TOO_SMALL);
 *   3. overlap between buffers (OVERLAP);
 *   4. the contents of index inputs (OUT_OF_RANGE, DUPLICATE_INDEX, UNSORTED_INDEX).
 * Every case below breaks two rules of different stages, in every family, and requires
 * the earlier stage's status with nothing written. */
#include <stdint.h>

#include "check.h"

#define MARK 0x7fa5a5a5u
#define N 256

/* One pool that every case carves its buffers from, so that overlaps are easy to make. */
static float pool[N];
static uint32_t ids[16];

static void reset(void) {
    for (int i = 0; i < N; i++) {
        uint32_t m = MARK;
        memcpy(&pool[i], &m, sizeof m);
    }
}

/* Nothing written: every float of the pool still holds the mark, except the
 * [skip_from, skip_to) range that a case uses as an input of other values. */
static int untouched(int skip_from, int skip_to) {
    for (int i = 0; i < N; i++) {
        if (i >= skip_from && i < skip_to) continue;
        uint32_t b;
        memcpy(&b, &pool[i], sizeof b);
        if (b != MARK) return 0;
    }
    return 1;
}

#define CASE(call, want)                                                          \
    do {                                                                          \
        reset();                                                                  \
        CHECK_STATUS(call, want);                                                 \
        CHECK(untouched(N, N));                                                   \
    } while (0)

/* Index lists: in range for the calls below unless a case says otherwise. */
static const uint32_t IDX_OOR[3] = {0, 99, 1};   /* 99 out of range */
static const uint32_t IDX_DUP[3] = {1, 0, 1};    /* duplicate */
static const uint32_t IDX_UNSORTED[3] = {2, 0, 1}; /* not ascending */

static void score_family(void) {
    float *h = pool, *w = pool + 32, *out = pool + 64;
    /* 1 over 2: unknown dtype / activation / n_routers = 0 beat a NULL h or a bad
     * stride. */
    CASE(tkr_score(99, NULL, 2, 4, 4, w, 1, 4, NULL, TKR_ACT_NONE, out, 1),
         TKR_STATUS_INVALID_ARGUMENT);
    CASE(tkr_score(TKR_DTYPE_F32, h, 2, 4, 3, w, 1, 4, NULL, 7, out, 1),
         TKR_STATUS_INVALID_ARGUMENT);
    CASE(tkr_score(TKR_DTYPE_F32, NULL, 2, 4, 4, w, 0, 4, NULL, TKR_ACT_NONE, out, 1),
         TKR_STATUS_INVALID_ARGUMENT);
    /* 2 over 3: a bad stride / NULL beats scores overlapping h. */
    CASE(tkr_score(TKR_DTYPE_F32, h, 2, 4, 3, w, 1, 4, NULL, TKR_ACT_NONE, h + 1, 1),
         TKR_STATUS_BAD_STRIDE);
    CASE(tkr_score(TKR_DTYPE_F32, h, 2, 4, 4, NULL, 1, 4, NULL, TKR_ACT_NONE, h + 1, 1),
         TKR_STATUS_NULL_POINTER);
    /* sigmoid: a misaligned x (2) beats y overlapping x (3). */
    CASE(tkr_sigmoid_f32((const float *)((const char *)pool + 1), 4, pool + 1),
         TKR_STATUS_INVALID_ARGUMENT);
}

static void select_family(void) {
    float *scores = pool;
    uint32_t *out = (uint32_t *)(pool + 64);
    size_t *counts = (size_t *)(void *)(pool + 128);
    uint64_t *ws = (uint64_t *)(void *)(pool + 160);
    tkr_topk_options to;
    tkr_threshold_options tho;
    CHECK_STATUS(tkr_topk_options_init(&to), TKR_STATUS_OK);
    CHECK_STATUS(tkr_threshold_options_init(&tho), TKR_STATUS_OK);

    /* topk, 1 over 2: k > n beats a NULL scores; unknown flags beat a NULL out_idx. */
    CASE(tkr_topk_f32(NULL, 1, 8, 8, 9, NULL, out, 9, NULL, NULL, 0),
         TKR_STATUS_INVALID_ARGUMENT);
    to.flags = 0x80u;
    CASE(tkr_topk_f32(scores, 1, 8, 8, 2, &to, NULL, 2, NULL, NULL, 0),
         TKR_STATUS_INVALID_ARGUMENT);
    to.flags = 0;
    /* topk, 2 over 3: a short workspace beats out_idx overlapping scores. */
    CASE(tkr_topk_f32(scores, 1, 8, 8, 2, NULL, (uint32_t *)scores, 2, NULL, ws, 8),
         TKR_STATUS_BUFFER_TOO_SMALL);
    /* topk, 2 over 3: a bad out_row_stride beats out_counts overlapping scores. */
    CASE(tkr_topk_f32(scores, 2, 8, 8, 2, NULL, out, 1, (size_t *)(void *)scores, NULL, 0),
         TKR_STATUS_BAD_STRIDE);
    /* threshold, 1 over 2: unknown flags beat a NULL scores. */
    tho.flags = 0x80u;
    CASE(tkr_threshold_f32(NULL, 1, 8, 8, 0.5f, &tho, out, 8, counts),
         TKR_STATUS_INVALID_ARGUMENT);
    tho.flags = 0;
    /* threshold, 2 over 3: a bad out_row_stride beats out_counts overlapping scores. */
    CASE(tkr_threshold_f32(scores, 2, 8, 8, 0.5f, NULL, out, 1, (size_t *)(void *)scores),
         TKR_STATUS_BAD_STRIDE);
    /* mask_to_indices, 1 over 2: n >= 2^32 beats a NULL mask. */
#if SIZE_MAX > 0xffffffffu
    CASE(tkr_mask_to_indices(NULL, (size_t)1 << 32, out, counts),
         TKR_STATUS_INVALID_ARGUMENT);
#endif
    /* indices_to_mask: 2 over 4 (NULL out_mask, index out of range) and 3 over 4
     * (out_mask overlapping indices, index out of range). */
    CASE(tkr_indices_to_mask(IDX_OOR, 3, NULL, 4), TKR_STATUS_NULL_POINTER);
    reset();
    memcpy(pool, IDX_OOR, sizeof IDX_OOR);
    CHECK_STATUS(tkr_indices_to_mask((const uint32_t *)pool, 3, (uint8_t *)pool + 4, 4),
                 TKR_STATUS_OVERLAP);
    CHECK(untouched(0, 3));

    /* route, 1 over 2: unknown select mode beats a NULL h; k > n_tokens beats a NULL
     * out_count. */
    {
        float *hw = pool;
        float *rows = pool + 64;
        CASE(tkr_route(TKR_DTYPE_F32, NULL, 4, 2, 2, hw + 16, NULL, TKR_ACT_NONE, 9, 1, 0.0f,
                       NULL, NULL, NULL, rows, 2, 4, counts, NULL, 0),
             TKR_STATUS_INVALID_ARGUMENT);
        CASE(tkr_route(TKR_DTYPE_F32, hw, 4, 2, 2, hw + 16, NULL, TKR_ACT_NONE,
                       TKR_ROUTE_TOPK, 5, 0.0f, NULL, NULL, NULL, rows, 2, 5, NULL, NULL, 0),
             TKR_STATUS_INVALID_ARGUMENT);
        /* route, 2 over 3: out_capacity below k beats out_rows overlapping h. */
        CASE(tkr_route(TKR_DTYPE_F32, hw, 4, 2, 2, hw + 16, NULL, TKR_ACT_NONE,
                       TKR_ROUTE_TOPK, 2, 0.0f, NULL, NULL, NULL, hw, 2, 1, counts, NULL, 0),
             TKR_STATUS_BUFFER_TOO_SMALL);
        /* route, 2 over 3: a bad out_rows_stride beats out_rows overlapping h. */
        CASE(tkr_route(TKR_DTYPE_F32, hw, 4, 2, 2, hw + 16, NULL, TKR_ACT_NONE,
                       TKR_ROUTE_TOPK, 2, 0.0f, NULL, NULL, NULL, hw, 1, 2, counts, NULL, 0),
             TKR_STATUS_BAD_STRIDE);
    }
}

static void compact_family(void) {
    float *src = pool, *dst = pool + 64;
    size_t *count = (size_t *)(void *)(pool + 200);
    /* gather, 1 over 2: elem_size = 0 beats a NULL src. */
    CASE(tkr_gather_rows(0, 2, NULL, 4, 2, IDX_OOR, 3, dst, 2), TKR_STATUS_INVALID_ARGUMENT);
    /* gather, 2 over 4: a bad src stride / a NULL dst beat an index out of range. */
    CASE(tkr_gather_rows(4, 2, src, 4, 1, IDX_OOR, 3, dst, 2), TKR_STATUS_BAD_STRIDE);
    CASE(tkr_gather_rows(4, 2, src, 4, 2, IDX_OOR, 3, NULL, 2), TKR_STATUS_NULL_POINTER);
    /* gather, 3 over 4: dst overlapping src beats an index out of range. */
    CASE(tkr_gather_rows(4, 2, src, 4, 2, IDX_OOR, 3, src + 2, 2), TKR_STATUS_OVERLAP);
    /* scatter, 3 over 4: dst overlapping src beats a duplicate index. */
    CASE(tkr_scatter_rows(4, 2, src, 2, IDX_DUP, 3, src + 1, 4, 2), TKR_STATUS_OVERLAP);
    /* scatter, 2 over 4: a bad dst stride beats a duplicate index. */
    CASE(tkr_scatter_rows(4, 2, src, 2, IDX_DUP, 3, dst, 4, 1), TKR_STATUS_BAD_STRIDE);
    /* scatter_add, 1 over 2: unknown dtype beats a NULL h; 3 over 4: y overlapping h
     * beats an index out of range; 2 over 4: NULL y beats it too. */
    CASE(tkr_scatter_add_rows(99, 2, NULL, 4, 2, IDX_OOR, 3, src, 2, NULL),
         TKR_STATUS_INVALID_ARGUMENT);
    CASE(tkr_scatter_add_rows(TKR_DTYPE_F32, 2, dst, 4, 2, IDX_OOR, 3, dst + 1, 2, NULL),
         TKR_STATUS_OVERLAP);
    CASE(tkr_scatter_add_rows(TKR_DTYPE_F32, 2, dst, 4, 2, IDX_OOR, 3, NULL, 2, NULL),
         TKR_STATUS_NULL_POINTER);
    /* compact_rows: 2 over 4 (NULL data, unsorted keep), 3 over 4 (out_n_rows inside
     * data, unsorted keep), 1 over 2 (elem_size = 0, NULL data). */
    CASE(tkr_compact_rows(4, 2, NULL, 4, 2, IDX_UNSORTED, 3, count), TKR_STATUS_NULL_POINTER);
    CASE(tkr_compact_rows(4, 2, dst, 4, 2, IDX_UNSORTED, 3, (size_t *)(void *)dst),
         TKR_STATUS_OVERLAP);
    CASE(tkr_compact_rows(0, 2, NULL, 4, 2, IDX_UNSORTED, 3, count),
         TKR_STATUS_INVALID_ARGUMENT);
    /* kv_compact: 1 over 2 (unknown layout, NULL cache), 2 over 4 (bad token stride,
     * duplicate keep index). */
    CASE(tkr_kv_compact(99, 4, NULL, 4, 1, 2, 2, 2, IDX_UNSORTED, 3, TKR_KV_KEEP_SHARED,
                        count),
         TKR_STATUS_INVALID_ARGUMENT);
    CASE(tkr_kv_compact(TKR_KV_TOKEN_MAJOR, 4, dst, 4, 1, 2, 1, 2, IDX_DUP, 3,
                        TKR_KV_KEEP_SHARED, count),
         TKR_STATUS_BAD_STRIDE);
}

static void attention_family(void) {
    /* q, k, v: [tokens, 1 head, 2] f32 token-major; out [2 queries, 1, 2]. */
    float *q = pool, *k = pool + 16, *v = pool + 32, *out = pool + 64;
    tkr_attention_keys keys;
    CHECK_STATUS(tkr_attention_keys_init(&keys), TKR_STATUS_OK);
    keys.kind = TKR_KEYS_INDICES;
    keys.indices = IDX_OOR;
    keys.n_indices = 3;
    /* 1 over 3 (the case): n_k = 2^32 beats out overlapping the (huge) k. */
#if SIZE_MAX > 0xffffffffu
    CASE(tkr_attention(TKR_DTYPE_F32, q, 2, 1, 2, 2, 2, k, v, (size_t)1 << 32, 1, 2, 2, 2, 2,
                       NULL, NULL, k + 8, 2, 2),
         TKR_STATUS_INVALID_ARGUMENT);
#endif
    /* 1 over 2: head counts that do not divide beat a NULL q. */
    CASE(tkr_attention(TKR_DTYPE_F32, NULL, 2, 3, 2, 6, 2, k, v, 4, 2, 4, 2, 4, 2, NULL,
                       NULL, out, 6, 2),
         TKR_STATUS_INVALID_ARGUMENT);
    /* 1 over 2: an unknown block_lists code, block_size = 0, a non-finite scale and
     * sinks with a mass output (UNSUPPORTED) beat a NULL q. */
    {
        tkr_attention_keys bk;
        tkr_attention_options ao;
        CHECK_STATUS(tkr_attention_keys_init(&bk), TKR_STATUS_OK);
        bk.kind = TKR_KEYS_BLOCKS;
        bk.block_size = 2;
        bk.query_block_size = 1;
        bk.block_lists = 99;
        CASE(tkr_attention(TKR_DTYPE_F32, NULL, 2, 1, 2, 2, 2, k, v, 4, 1, 2, 2, 2, 2, &bk,
                           NULL, out, 2, 2),
             TKR_STATUS_INVALID_ARGUMENT);
        bk.block_lists = TKR_BLOCK_LISTS_SHARED;
        bk.block_size = 0;
        CASE(tkr_attention(TKR_DTYPE_F32, NULL, 2, 1, 2, 2, 2, k, v, 4, 1, 2, 2, 2, 2, &bk,
                           NULL, out, 2, 2),
             TKR_STATUS_INVALID_ARGUMENT);
        CHECK_STATUS(tkr_attention_options_init(&ao), TKR_STATUS_OK);
        ao.scale = 1.0f / 0.0f;
        CASE(tkr_attention(TKR_DTYPE_F32, NULL, 2, 1, 2, 2, 2, k, v, 4, 1, 2, 2, 2, 2, NULL,
                           &ao, out, 2, 2),
             TKR_STATUS_INVALID_ARGUMENT);
        ao.scale = 0.0f;
        ao.sinks = pool + 100;
        ao.mass = pool + 110;
        CASE(tkr_attention(TKR_DTYPE_F32, NULL, 2, 1, 2, 2, 2, k, v, 4, 1, 2, 2, 2, 2, NULL,
                           &ao, out, 2, 2),
             TKR_STATUS_UNSUPPORTED);
    }
    /* 2 over 4: a NULL v beats a key index out of range. */
    CASE(tkr_attention(TKR_DTYPE_F32, q, 2, 1, 2, 2, 2, k, NULL, 4, 1, 2, 2, 2, 2, &keys,
                       NULL, out, 2, 2),
         TKR_STATUS_NULL_POINTER);
    /* 3 over 4: out overlapping q beats a key index out of range. */
    CASE(tkr_attention(TKR_DTYPE_F32, q, 2, 1, 2, 2, 2, k, v, 4, 1, 2, 2, 2, 2, &keys, NULL,
                       q + 1, 2, 2),
         TKR_STATUS_OVERLAP);
    /* 2 over 3: a bad out stride beats out overlapping q. */
    CASE(tkr_attention(TKR_DTYPE_F32, q, 2, 1, 2, 2, 2, k, v, 4, 1, 2, 2, 2, 2, NULL, NULL,
                       q + 1, 1, 2),
         TKR_STATUS_BAD_STRIDE);

    /* merge, 1 over 2: unknown out_dtype beats a NULL part_out; 2 over 3: a bad
     * out_row_stride beats out overlapping part_out. */
    CASE(tkr_attention_merge(99, NULL, 2, 2, 2, 4, 2, q + 16, 2, out, 2, NULL),
         TKR_STATUS_INVALID_ARGUMENT);
    CASE(tkr_attention_merge(TKR_DTYPE_F32, q, 2, 2, 2, 4, 2, q + 16, 2, q + 1, 1, NULL),
         TKR_STATUS_BAD_STRIDE);

    /* key_block_summary, 1 over 2: block_size = 0 beats a NULL k; 1 over 3: a block
     * range past the keys (a value, OUT_OF_RANGE) beats kmin == kmax (overlap). */
    CASE(tkr_key_block_summary(TKR_DTYPE_F32, NULL, 4, 1, 2, 2, 2, 0, 0, 2, out, out + 8),
         TKR_STATUS_INVALID_ARGUMENT);
    CASE(tkr_key_block_summary(TKR_DTYPE_F32, k, 4, 1, 2, 2, 2, 2, 0, 3, out, out),
         TKR_STATUS_OUT_OF_RANGE);
    /* key_block_summary, 2 over 3: a bad k stride beats kmin == kmax. */
    CASE(tkr_key_block_summary(TKR_DTYPE_F32, k, 4, 1, 2, 1, 1, 2, 0, 2, out, out),
         TKR_STATUS_BAD_STRIDE);

    /* key_block_bound, 1 over 2: head counts that do not divide beat a NULL q; 2 over
     * 3: a NULL kmax beats bound overlapping q. */
    CASE(tkr_key_block_bound(TKR_DTYPE_F32, NULL, 1, 3, 2, 6, 2, k, v, 2, 2, out, 2),
         TKR_STATUS_INVALID_ARGUMENT);
    CASE(tkr_key_block_bound(TKR_DTYPE_F32, q, 1, 1, 2, 2, 2, k, NULL, 2, 1, q, 2),
         TKR_STATUS_NULL_POINTER);

    /* quest_select_blocks, 1 over 2: head counts that do not divide beat a NULL q;
     * 2 over 3: a NULL block_offsets beats block_ids overlapping q. */
    {
        uint32_t *bids = (uint32_t *)(void *)(pool + 128);
        size_t *boffs = (size_t *)(void *)(pool + 160);
        size_t *outk = (size_t *)(void *)(pool + 200);
        CASE(tkr_quest_select_blocks(TKR_DTYPE_F32, NULL, 1, 3, 2, 6, 2, k, v, 2, 2, 1, 0, 0,
                                     bids, boffs, outk),
             TKR_STATUS_INVALID_ARGUMENT);
        CASE(tkr_quest_select_blocks(TKR_DTYPE_F32, q, 1, 1, 2, 2, 2, k, v, 2, 1, 1, 0, 0,
                                     (uint32_t *)(void *)q, NULL, outk),
             TKR_STATUS_NULL_POINTER);
    }
}

int main(void) {
    check_expected_isa();
    (void)ids;
    score_family();
    select_family();
    compact_family();
    attention_family();
    return finish_tests("status_precedence");
}
