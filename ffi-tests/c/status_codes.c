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

static tkr_status ok_sigmoid(void) { return tkr_sigmoid_f32(buf_x, buf_y, 8); }
static tkr_status ok_empty(void) { return tkr_sigmoid_f32(NULL, NULL, 0); }
static tkr_status null_sigmoid_x(void) { return tkr_sigmoid_f32(NULL, buf_y, 3); }
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
    return tkr_sigmoid_f32((const float *)((const char *)buf_x + 1), buf_y, 4);
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
static tkr_status size_overflow_sigmoid(void) { return tkr_sigmoid_f32(buf_x, buf_y, SIZE_MAX / 2); }
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
static tkr_status overlap_sigmoid(void) { return tkr_sigmoid_f32(buf_y, buf_y + 1, 4); }
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
#ifdef TKR_TEST_HOOKS
static tkr_status panic_static(void) { return tkr_test_panic(0, buf_y, 8); }
static tkr_status panic_formatted(void) { return tkr_test_panic(1, NULL, 0); }
#endif

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
        /* The library stays usable (after a caught panic too) and on its level. */
        CHECK(tkr_get_isa() == level);
        reset();
        CHECK_STATUS(tkr_sigmoid_f32(buf_x, buf_y, 4), TKR_STATUS_OK);
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
