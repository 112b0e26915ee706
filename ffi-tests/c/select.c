/* Token selection through the C API, exactly as a C99 user calls it: batched top-k
 * and threshold selection against small oracles written here, the options structs, the
 * workspace rules, and every error path (with nothing written on error). */
#include <math.h>

#include "check.h"

#define CANARY 0xdeadbeefu

/* Score order: NaN below every number, all NaNs equal, -0 == +0. */
static int score_cmp(float a, float b) {
    if (isnan(a) && isnan(b)) return 0;
    if (isnan(a)) return -1;
    if (isnan(b)) return 1;
    return a < b ? -1 : (a > b ? 1 : 0);
}

/* Does token i rank above token j? */
static int beats(const float *s, size_t i, size_t j) {
    int c = score_cmp(s[i], s[j]);
    return c > 0 || (c == 0 && i < j);
}

/* Top-k oracle of one row of len tokens with a forced set: writes k indices. */
static void oracle_topk(const float *s, size_t len, const int *forced, size_t k, int by_score,
                        uint32_t *out) {
    size_t nf = 0, w = 0;
    for (size_t i = 0; i < len; i++) nf += forced[i] != 0;
    for (size_t j = 0; j < len; j++) {
        size_t rank = 0;
        if (!forced[j])
            for (size_t i = 0; i < len; i++) rank += !forced[i] && beats(s, i, j);
        if (forced[j] || rank < k - nf) out[w++] = (uint32_t)j;
    }
    if (by_score) /* insertion sort by rank */
        for (size_t a = 1; a < w; a++)
            for (size_t b = a; b > 0 && beats(s, out[b], out[b - 1]); b--) {
                uint32_t t = out[b];
                out[b] = out[b - 1];
                out[b - 1] = t;
            }
}

static void forced_set(size_t len, size_t kf, size_t kl, const uint8_t *keep, int *forced) {
    if (kf > len) kf = len;
    if (kl > len - kf) kl = len - kf;
    for (size_t i = 0; i < len; i++)
        forced[i] = i < kf || i >= len - kl || (keep != NULL && keep[i] != 0);
}

enum { ROWS = 3, N = 45, STRIDE = 47, OSTRIDE = 50 };

static float scores[ROWS * STRIDE];
static uint8_t keep[ROWS * N];

static void fill(void) {
    uint32_t x = 12345;
    for (int i = 0; i < ROWS * STRIDE; i++) {
        x = x * 1103515245u + 12345u;
        scores[i] = (float)((x >> 16) % 13) * 0.25f - 1.0f; /* many ties */
    }
    scores[3] = NAN;
    scores[STRIDE + 5] = INFINITY;
    scores[STRIDE + 6] = -0.0f;
    scores[2 * STRIDE + 1] = -INFINITY;
    for (int i = 0; i < ROWS * N; i++) keep[i] = (uint8_t)(i % 11 == 4);
}

static void test_options_and_workspace(void) {
    tkr_topk_options o;
    memset(&o, 0xff, sizeof o);
    CHECK_STATUS(tkr_topk_options_init(&o), TKR_STATUS_OK);
    CHECK(o.struct_size == sizeof o && o.flags == 0 && o.keep_mask == NULL && o.capacity == 0.0);
    CHECK_STATUS(tkr_topk_options_init(NULL), TKR_STATUS_NULL_POINTER);
    tkr_threshold_options t;
    memset(&t, 0xff, sizeof t);
    CHECK_STATUS(tkr_threshold_options_init(&t), TKR_STATUS_OK);
    CHECK(t.struct_size == sizeof t && t.row_tau == NULL && t.out_mask == NULL);
    size_t bytes = 0;
    CHECK_STATUS(tkr_topk_workspace_size(100, &bytes), TKR_STATUS_OK);
    CHECK(bytes == 800);
    CHECK_STATUS(tkr_topk_workspace_size(100, NULL), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_topk_workspace_size((size_t)-1, &bytes), TKR_STATUS_SIZE_OVERFLOW);
}

static void test_topk(void) {
    size_t valid[ROWS] = {45, 30, 0};
    size_t row_k[ROWS] = {12, 30, 0};
    tkr_topk_options o;
    tkr_topk_options_init(&o);
    o.flags = TKR_TOPK_ORDER_SCORE;
    o.keep_first = 1;
    o.keep_last = 2;
    o.keep_mask = keep;
    o.valid_lens = valid;
    o.row_k = row_k;
    float out_scores[ROWS * OSTRIDE];
    o.out_scores = out_scores;
    uint32_t idx[ROWS * OSTRIDE];
    size_t counts[ROWS];
    uint64_t ws[N];
    for (int pass = 0; pass < 2; pass++) {
        for (int i = 0; i < ROWS * OSTRIDE; i++) idx[i] = CANARY;
        for (int i = 0; i < ROWS * OSTRIDE; i++) out_scores[i] = -1234.5f;
        CHECK_STATUS(tkr_topk_f32(scores, ROWS, N, STRIDE, 0, &o, idx, OSTRIDE, counts,
                                  pass ? ws : NULL, pass ? sizeof ws : 0),
                     TKR_STATUS_OK);
        for (int r = 0; r < ROWS; r++) {
            int forced[N];
            uint32_t want[N];
            forced_set(valid[r], 1, 2, keep + r * N, forced);
            oracle_topk(scores + r * STRIDE, valid[r], forced, row_k[r], 1, want);
            CHECK(counts[r] == row_k[r]);
            for (size_t j = 0; j < row_k[r]; j++) {
                CHECK(idx[r * OSTRIDE + j] == want[j]);
                float got = out_scores[r * OSTRIDE + j], exp = scores[r * STRIDE + want[j]];
                CHECK(memcmp(&got, &exp, sizeof got) == 0);
            }
            for (size_t j = row_k[r]; j < OSTRIDE; j++) {
                CHECK(idx[r * OSTRIDE + j] == CANARY);
                CHECK(out_scores[r * OSTRIDE + j] == -1234.5f);
            }
        }
    }
    /* The same k for every row, positions ascending, NULL options and counts. */
    for (int i = 0; i < ROWS * OSTRIDE; i++) idx[i] = CANARY;
    CHECK_STATUS(tkr_topk_f32(scores, ROWS, N, STRIDE, 7, NULL, idx, OSTRIDE, NULL, NULL, 0),
                 TKR_STATUS_OK);
    for (int r = 0; r < ROWS; r++) {
        int forced[N] = {0};
        uint32_t want[N];
        oracle_topk(scores + r * STRIDE, N, forced, 7, 0, want);
        for (int j = 0; j < 7; j++) CHECK(idx[r * OSTRIDE + j] == want[j]);
        CHECK(idx[r * OSTRIDE + 7] == CANARY);
    }
    /* Capacity: k_row = ceil(0.25 * valid_len). */
    tkr_topk_options_init(&o);
    o.flags = TKR_TOPK_CAPACITY;
    o.capacity = 0.25;
    o.valid_lens = valid;
    CHECK_STATUS(tkr_topk_f32(scores, ROWS, N, STRIDE, 0, &o, idx, OSTRIDE, counts, NULL, 0),
                 TKR_STATUS_OK);
    CHECK(counts[0] == 12 && counts[1] == 8 && counts[2] == 0);
    /* Empty batch: nothing to do, NULL buffers allowed. */
    CHECK_STATUS(tkr_topk_f32(NULL, 0, N, N, 0, NULL, NULL, 0, NULL, NULL, 0), TKR_STATUS_OK);
}

static void test_threshold(void) {
    size_t valid[ROWS] = {45, 20, 3};
    float taus[ROWS] = {0.25f, NAN, -0.0f};
    tkr_threshold_options o;
    tkr_threshold_options_init(&o);
    o.keep_first = 2;
    o.keep_mask = keep;
    o.valid_lens = valid;
    o.row_tau = taus;
    uint8_t mask[ROWS * N];
    memset(mask, 0xaa, sizeof mask);
    o.out_mask = mask;
    uint32_t idx[ROWS * OSTRIDE];
    size_t counts[ROWS];
    for (int i = 0; i < ROWS * OSTRIDE; i++) idx[i] = CANARY;
    CHECK_STATUS(tkr_threshold_f32(scores, ROWS, N, STRIDE, 99.0f, &o, idx, OSTRIDE, counts),
                 TKR_STATUS_OK);
    for (int r = 0; r < ROWS; r++) {
        int forced[N];
        forced_set(valid[r], 2, 0, keep + r * N, forced);
        size_t c = 0;
        for (size_t i = 0; i < N; i++) {
            int sel = i < valid[r] && (forced[i] || scores[r * STRIDE + i] > taus[r]);
            CHECK(mask[r * N + i] == sel);
            if (sel) {
                CHECK(idx[r * OSTRIDE + c] == i);
                c++;
            }
        }
        CHECK(counts[r] == c);
        for (size_t j = valid[r]; j < OSTRIDE; j++) CHECK(idx[r * OSTRIDE + j] == CANARY);
    }
    /* Mask only, one tau. */
    tkr_threshold_options_init(&o);
    o.out_mask = mask;
    CHECK_STATUS(tkr_threshold_f32(scores, ROWS, N, STRIDE, 0.0f, &o, NULL, 0, counts), TKR_STATUS_OK);
    for (int r = 0; r < ROWS; r++)
        for (int i = 0; i < N; i++) CHECK(mask[r * N + i] == (scores[r * STRIDE + i] > 0.0f));
}

static void test_mask_conversions(void) {
    uint8_t m[N];
    uint32_t idx[N];
    size_t c = 0;
    for (int i = 0; i < N; i++) m[i] = (uint8_t)((i % 3 == 0) * 7);
    CHECK_STATUS(tkr_mask_to_indices(m, N, idx, &c), TKR_STATUS_OK);
    CHECK(c == 15);
    for (size_t j = 0; j < c; j++) CHECK(idx[j] == 3 * j);
    uint8_t back[N];
    CHECK_STATUS(tkr_indices_to_mask(idx, c, back, N), TKR_STATUS_OK);
    for (int i = 0; i < N; i++) CHECK(back[i] == (i % 3 == 0));
    /* An index out of range: nothing written. */
    idx[2] = N;
    memset(back, 9, sizeof back);
    CHECK_STATUS(tkr_indices_to_mask(idx, c, back, N), TKR_STATUS_OUT_OF_RANGE);
    for (int i = 0; i < N; i++) CHECK(back[i] == 9);
    CHECK_STATUS(tkr_mask_to_indices(NULL, 3, idx, &c), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_mask_to_indices(m, N, idx, NULL), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_mask_to_indices(m, N, (uint32_t *)(void *)m, &c), TKR_STATUS_OVERLAP);
    c = 0;
    CHECK_STATUS(tkr_mask_to_indices(NULL, 0, NULL, &c), TKR_STATUS_OK);
    CHECK(c == 0);
}

/* Every error leaves idx, counts and the scores output untouched. */
static uint32_t eidx[ROWS * OSTRIDE];
static size_t ecounts[ROWS];
static float escores[ROWS * OSTRIDE];

static void reset_outputs(void) {
    for (int i = 0; i < ROWS * OSTRIDE; i++) eidx[i] = CANARY;
    for (int i = 0; i < ROWS * OSTRIDE; i++) escores[i] = -7.0f;
    for (int i = 0; i < ROWS; i++) ecounts[i] = 77;
}

static int outputs_untouched(void) {
    for (int i = 0; i < ROWS * OSTRIDE; i++)
        if (eidx[i] != CANARY || escores[i] != -7.0f) return 0;
    for (int i = 0; i < ROWS; i++)
        if (ecounts[i] != 77) return 0;
    return 1;
}

#define TOPK_ERR(want, scores_, n_, stride_, k_, opts_, ostride_, ws_, wss_)                     \
    do {                                                                                     \
        reset_outputs();                                                                     \
        CHECK_STATUS(tkr_topk_f32(scores_, ROWS, n_, stride_, k_, opts_, eidx, ostride_, ecounts, \
                                  ws_, wss_),                                                \
                     want);                                                                  \
        CHECK(outputs_untouched());                                                          \
    } while (0)

#define THR_ERR(want, opts_, ostride_)                                                         \
    do {                                                                                     \
        reset_outputs();                                                                     \
        CHECK_STATUS(tkr_threshold_f32(scores, ROWS, N, STRIDE, 0.5f, opts_, eidx, ostride_, ecounts), \
                     want);                                                                  \
        CHECK(outputs_untouched());                                                          \
    } while (0)

static void test_errors(void) {
    tkr_topk_options o;
    uint64_t ws[N + 1];
    size_t valid[ROWS] = {45, 46, 3};
    size_t row_k[ROWS] = {1, 2, 3};

    TOPK_ERR(TKR_STATUS_NULL_POINTER, NULL, N, STRIDE, 3, NULL, OSTRIDE, NULL, 0);
    TOPK_ERR(TKR_STATUS_BAD_STRIDE, scores, N, N - 1, 3, NULL, OSTRIDE, NULL, 0);
    TOPK_ERR(TKR_STATUS_BAD_STRIDE, scores, N, STRIDE, 10, NULL, 9, NULL, 0);
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, N + 1, NULL, OSTRIDE, NULL, 0);
    TOPK_ERR(TKR_STATUS_SIZE_OVERFLOW, scores, N, (size_t)-1 / 2, 3, NULL, OSTRIDE, NULL, 0);
    /* Counts inside the workspace. */
    reset_outputs();
    CHECK_STATUS(tkr_topk_f32(scores, ROWS, N, STRIDE, 3, NULL, eidx, OSTRIDE, (size_t *)(void *)ws, ws,
                              sizeof ws),
                 TKR_STATUS_OVERLAP);
    CHECK(outputs_untouched());
    TOPK_ERR(TKR_STATUS_BUFFER_TOO_SMALL, scores, N, STRIDE, 3, NULL, OSTRIDE, ws, 8 * (N - 1));
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, NULL, OSTRIDE, (char *)ws + 4, 8 * N);
    TOPK_ERR(TKR_STATUS_NULL_POINTER, scores, N, STRIDE, 3, NULL, OSTRIDE, NULL, 8 * N);
    /* Output overlapping the scores. */
    reset_outputs();
    CHECK_STATUS(tkr_topk_f32(scores, ROWS, N, STRIDE, 3, NULL, (uint32_t *)(void *)(scores + 8),
                              OSTRIDE, NULL, NULL, 0),
                 TKR_STATUS_OVERLAP);
    /* Options. */
    tkr_topk_options_init(&o);
    o.flags = 4;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    tkr_topk_options_init(&o);
    o.reserved = 1;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    tkr_topk_options_init(&o);
    o.struct_size = 4;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    {
        struct {
            tkr_topk_options o;
            uint64_t newer_field;
        } big;
        memset(&big, 0, sizeof big);
        big.o.struct_size = sizeof big;
        big.newer_field = 1;
        TOPK_ERR(TKR_STATUS_UNSUPPORTED, scores, N, STRIDE, 3, &big.o, OSTRIDE, NULL, 0);
        big.newer_field = 0; /* a zero tail is fine */
        reset_outputs();
        CHECK_STATUS(tkr_topk_f32(scores, ROWS, N, STRIDE, 3, &big.o, eidx, OSTRIDE, ecounts, NULL, 0),
                     TKR_STATUS_OK);
    }
    tkr_topk_options_init(&o);
    o.keep_first = 3;
    o.keep_last = 2;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 4, &o, OSTRIDE, NULL, 0);
    tkr_topk_options_init(&o);
    o.keep_mask = keep; /* 4 forced tokens in every row > k = 3 */
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    o.keep_mask_row_stride = N - 1;
    TOPK_ERR(TKR_STATUS_BAD_STRIDE, scores, N, STRIDE, 10, &o, OSTRIDE, NULL, 0);
    tkr_topk_options_init(&o);
    o.valid_lens = valid; /* 46 > n */
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    valid[1] = 2; /* k = 3 > 2 */
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    tkr_topk_options_init(&o);
    o.row_k = row_k;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    o.flags = TKR_TOPK_CAPACITY;
    o.capacity = 0.5;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 0, &o, OSTRIDE, NULL, 0);
    o.row_k = NULL;
    o.capacity = 1.5;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 0, &o, OSTRIDE, NULL, 0);
    o.capacity = NAN;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 0, &o, OSTRIDE, NULL, 0);
    o.flags = 0;
    o.capacity = 0.5;
    TOPK_ERR(TKR_STATUS_INVALID_ARGUMENT, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    tkr_topk_options_init(&o);
    o.out_scores = escores;
    o.out_scores_row_stride = 2;
    TOPK_ERR(TKR_STATUS_BAD_STRIDE, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);
    o.out_scores = (float *)(void *)eidx;
    o.out_scores_row_stride = 0;
    TOPK_ERR(TKR_STATUS_OVERLAP, scores, N, STRIDE, 3, &o, OSTRIDE, NULL, 0);

    /* Threshold. */
    tkr_threshold_options t;
    tkr_threshold_options_init(&t);
    t.flags = 1;
    THR_ERR(TKR_STATUS_INVALID_ARGUMENT, &t, OSTRIDE);
    tkr_threshold_options_init(&t);
    THR_ERR(TKR_STATUS_BAD_STRIDE, &t, N - 1);
    t.keep_mask = keep;
    t.keep_mask_row_stride = 3;
    THR_ERR(TKR_STATUS_BAD_STRIDE, &t, OSTRIDE);
    tkr_threshold_options_init(&t);
    t.out_mask = (uint8_t *)(void *)scores;
    THR_ERR(TKR_STATUS_OVERLAP, &t, OSTRIDE);
    t.out_mask = (uint8_t *)(void *)(eidx + 3);
    THR_ERR(TKR_STATUS_OVERLAP, &t, OSTRIDE);
    tkr_threshold_options_init(&t);
    valid[1] = 46;
    t.valid_lens = valid;
    THR_ERR(TKR_STATUS_INVALID_ARGUMENT, &t, OSTRIDE);
    reset_outputs();
    CHECK_STATUS(tkr_threshold_f32(NULL, ROWS, N, STRIDE, 0.5f, NULL, eidx, OSTRIDE, ecounts),
                 TKR_STATUS_NULL_POINTER);
    CHECK(outputs_untouched());
    CHECK_STATUS(tkr_threshold_f32(scores, 1, 2, 2, 0.5f, NULL, (uint32_t *)(void *)ecounts, 2, ecounts),
                 TKR_STATUS_OVERLAP);
    CHECK(outputs_untouched());
}

int main(void) {
    check_expected_isa();
    fill();
    test_options_and_workspace();
    test_topk();
    test_threshold();
    test_mask_conversions();
    test_errors();
    return finish_tests("select");
}
