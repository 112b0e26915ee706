/* tkr-test: std=c11 (threads.h, stdatomic.h) */
/* Many threads call every kernel family through the C API while another thread keeps
 * switching the ISA level with tkr_set_isa (every supported level, and AUTO). Every
 * result must equal, bit for bit, the single-threaded result computed before the
 * threads start: the families here are bit-identical across levels (sigmoid up to the
 * sign and payload of a NaN result, which are unspecified, so its inputs hold none).
 *
 * A family adds one job (a function computing into caller buffers) to JOBS.
 * TKR_TEST_ITERS scales the iterations (valgrind runs use fewer). */
#include <math.h>
#include <stdatomic.h>
#include <threads.h>

#include "check.h"

enum { THREADS = 8, MAXOUT = 4096 };

/* --- inputs, shared read-only by every thread ------------------------------------- */

enum { SN = 1000, N = 67, D = 129, E = 5, HS = 131 };
static float sig_x[SN];
static float h32[N * HS], w32[E * D], bias[E];
static uint16_t h16[N * HS], w16[E * D], hb16[N * HS], wb16[E * D];

static uint32_t rng_state = 12345u;
static uint32_t rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}
static float rndf(void) { return ((float)(rnd() % 20001u) - 10000.0f) / 2500.0f; }

static uint16_t f16_bits(float f) {
    /* Only for |f| in [2^-14, 65504) or 0 (the inputs here): truncates the mantissa. */
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    uint32_t sign = (b >> 16) & 0x8000u;
    if ((b & 0x7fffffffu) < 0x38800000u) return (uint16_t)sign;
    int32_t exp = (int32_t)((b >> 23) & 0xff) - 127 + 15;
    return (uint16_t)(sign | ((uint32_t)exp << 10) | ((b >> 13) & 0x3ffu));
}

static void make_inputs(void) {
    for (int i = 0; i < SN; i++) sig_x[i] = rndf() * 6.0f;
    sig_x[0] = INFINITY;
    sig_x[1] = -INFINITY;
    sig_x[2] = -0.0f;
    sig_x[3] = 1e-45f;
    for (int i = 0; i < N * HS; i++) {
        h32[i] = rndf();
        h16[i] = f16_bits(h32[i]);
        uint32_t b;
        memcpy(&b, &h32[i], sizeof b);
        hb16[i] = (uint16_t)(b >> 16);
    }
    for (int i = 0; i < E * D; i++) {
        w32[i] = rndf() * 0.1f;
        w16[i] = f16_bits(w32[i]);
        uint32_t b;
        memcpy(&b, &w32[i], sizeof b);
        wb16[i] = (uint16_t)(b >> 16);
    }
    for (int i = 0; i < E; i++) bias[i] = rndf();
}

/* --- jobs: each computes into `out` (at most MAXOUT floats), returns a status ------- */

typedef struct {
    const char *name;
    size_t n_out;
    tkr_status (*run)(float *out);
} job;

static tkr_status job_sigmoid(float *out) { return tkr_sigmoid_f32(sig_x, out, SN); }
static tkr_status job_score_f32(float *out) {
    return tkr_score(TKR_DTYPE_F32, h32, N, D, HS, w32, E, D, bias, TKR_ACT_SIGMOID, out, E);
}
static tkr_status job_score_f16(float *out) {
    return tkr_score(TKR_DTYPE_F16, h16, N, D, HS, w16, E, D, bias, TKR_ACT_NONE, out, E);
}
static tkr_status job_score_bf16(float *out) {
    return tkr_score(TKR_DTYPE_BF16, hb16, N, D, HS, wb16, E, D, NULL, TKR_ACT_SIGMOID, out, E);
}

/* Selection over the f32 scores of h32 (rows of D valid tokens, HS apart): idx and
 * counts land in `out` as raw 32-bit words. */
enum { TOPK_K = 17, BATCH = 9 };
static tkr_status job_topk(float *out) {
    tkr_topk_options o;
    tkr_topk_options_init(&o);
    o.flags = TKR_TOPK_ORDER_SCORE;
    o.keep_first = 2;
    return tkr_topk_f32(h32, BATCH, D, HS, TOPK_K, &o, (uint32_t *)out, TOPK_K, NULL, NULL, 0);
}
static tkr_status job_threshold(float *out) {
    size_t counts[BATCH];
    tkr_status st = tkr_threshold_f32(h32, BATCH, D, HS, 0.25f, NULL, (uint32_t *)out, D, counts);
    /* The entries past each row's count may hold anything: clear them. */
    for (int r = 0; r < BATCH; r++)
        for (size_t j = counts[r]; j < D; j++) ((uint32_t *)out)[r * D + j] = 0;
    return st;
}

static const job JOBS[] = {
    {"sigmoid_f32", SN, job_sigmoid},
    {"score f32 sigmoid", N * E, job_score_f32},
    {"score f16 none", N * E, job_score_f16},
    {"score bf16 sigmoid", N * E, job_score_bf16},
    {"topk f32 by score, keep_first", BATCH * TOPK_K, job_topk},
    {"threshold f32", BATCH * D, job_threshold},
};
enum { NJOBS = sizeof JOBS / sizeof JOBS[0] };

static float reference[NJOBS][MAXOUT];

/* --- threads --------------------------------------------------------------------- */

static atomic_int stop;
static atomic_long mismatches, bad_status, calls, switches, overlapped;
static int iters = 200;

static int worker(void *arg) {
    long seed = (long)(intptr_t)arg;
    static _Thread_local float out[MAXOUT];
    for (int it = 0; it < iters; it++) {
        for (int k = 0; k < NJOBS; k++) {
            const job *j = &JOBS[(k + seed + it) % NJOBS];
            size_t idx = (size_t)(j - JOBS);
            memset(out, 0xA5, sizeof out);
            long before = atomic_load(&switches);
            tkr_status st = j->run(out);
            atomic_fetch_add(&calls, 1);
            /* A call during which the level was switched at least once. */
            if (atomic_load(&switches) != before) atomic_fetch_add(&overlapped, 1);
            if (st != TKR_STATUS_OK) {
                atomic_fetch_add(&bad_status, 1);
                continue;
            }
            if (memcmp(out, reference[idx], j->n_out * sizeof(float)) != 0) {
                atomic_fetch_add(&mismatches, 1);
                fprintf(stderr, "%s: result differs from the reference (level now %s)\n", j->name,
                        tkr_isa_name(tkr_get_isa()));
            }
        }
    }
    return 0;
}

static int switcher(void *arg) {
    (void)arg;
    uint32_t mask = tkr_supported_isas();
    uint32_t isa = 0;
    while (!atomic_load(&stop)) {
        isa = (isa + 1) % 5; /* 0 = AUTO, then every id */
        if (isa != TKR_ISA_AUTO && !(mask & (1u << isa))) continue;
        if (tkr_set_isa(isa) != TKR_STATUS_OK) atomic_fetch_add(&bad_status, 1);
        atomic_fetch_add(&switches, 1);
    }
    return 0;
}

int main(void) {
    check_expected_isa();
    uint32_t level = tkr_get_isa();
    const char *it = getenv("TKR_TEST_ITERS");
    if (it) iters = atoi(it);
    make_inputs();
    /* Single-threaded reference on the requested level; sigmoid inputs hold no NaN. */
    for (int k = 0; k < NJOBS; k++) {
        CHECK(JOBS[k].n_out <= MAXOUT);
        CHECK_STATUS(JOBS[k].run(reference[k]), TKR_STATUS_OK);
    }
    thrd_t threads[THREADS], sw;
    CHECK(thrd_create(&sw, switcher, NULL) == thrd_success);
    /* The switcher is running before the workers start. */
    while (atomic_load(&switches) < 100) thrd_yield();
    for (int t = 0; t < THREADS; t++)
        CHECK(thrd_create(&threads[t], worker, (void *)(intptr_t)t) == thrd_success);
    for (int t = 0; t < THREADS; t++) thrd_join(threads[t], NULL);
    atomic_store(&stop, 1);
    thrd_join(sw, NULL);
    CHECK(atomic_load(&mismatches) == 0);
    CHECK(atomic_load(&bad_status) == 0);
    CHECK(atomic_load(&calls) == (long)THREADS * iters * NJOBS);
    CHECK(atomic_load(&switches) > 0);
    /* Back on the requested level; results there are still the reference. */
    CHECK_STATUS(tkr_set_isa(level), TKR_STATUS_OK);
    static float again[MAXOUT];
    for (int k = 0; k < NJOBS; k++) {
        CHECK_STATUS(JOBS[k].run(again), TKR_STATUS_OK);
        CHECK(memcmp(again, reference[k], JOBS[k].n_out * sizeof(float)) == 0);
    }
    printf("concurrency: %ld calls on %d threads, %ld level switches, %ld calls overlapped a switch\n",
           atomic_load(&calls), THREADS, atomic_load(&switches), atomic_load(&overlapped));
    return finish_tests("concurrency");
}
