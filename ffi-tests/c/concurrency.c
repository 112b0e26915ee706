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

static tkr_status job_sigmoid(float *out) { return tkr_sigmoid_f32(sig_x, SN, out); }
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

/* Compaction: gather, scatter-add (bf16, gated), in-place compaction with a side
 * array, KV compaction (f16 head-major, per-head lists) and the fused route call. */
enum { GN = 20 };
static const uint32_t gidx[GN] = {3, 60, 7, 7, 0, 66, 12, 5, 40, 41, 2, 9, 9, 33, 50, 1, 65, 64, 20, 11};
static const uint32_t sidx[GN] = {3, 60, 7, 8, 0, 66, 12, 5, 40, 41, 2, 9, 10, 33, 50, 1, 65, 64, 20, 11};
static float gates[GN];
static tkr_status job_gather(float *out) {
    return tkr_gather_rows(4, D, h32, N, HS, gidx, GN, out, D);
}
static tkr_status job_scatter_add(float *out) {
    enum { SD = 60 };
    uint16_t *h = (uint16_t *)out; /* N rows of SD bf16, stride SD */
    for (int r = 0; r < N; r++) memcpy(h + r * SD, hb16 + r * HS, SD * sizeof(uint16_t));
    return tkr_scatter_add_rows(TKR_DTYPE_BF16, SD, h, N, SD, sidx, GN, hb16 + 3 * HS, HS, gates);
}
static tkr_status job_compact(float *out) {
    enum { R = 28 };
    memcpy(out, h32, (size_t)R * HS * sizeof(float));
    uint32_t keep[R], pos[R];
    size_t nk = 0, c1 = 0, c2 = 0;
    for (uint32_t i = 0; i < R; i++) {
        pos[i] = i * 3u + 1u;
        if (i % 3 != 1) keep[nk++] = i;
    }
    tkr_status st = tkr_compact_rows(4, D, out, R, HS, keep, nk, &c1);
    if (st != TKR_STATUS_OK) return st;
    st = tkr_compact_rows(4, 1, pos, R, 1, keep, nk, &c2);
    memcpy(out + R * HS, pos, sizeof pos);
    out[R * HS + R] = (float)(c1 + 1000 * c2);
    return st;
}
static tkr_status job_kv(float *out) {
    enum { HEADS = 4, TOKS = 24, HD = 17, KEEP = 15 };
    uint16_t *c = (uint16_t *)out;
    memcpy(c, h16, (size_t)HEADS * TOKS * HD * sizeof(uint16_t));
    uint32_t keep[HEADS * KEEP];
    for (uint32_t g = 0; g < HEADS; g++) {
        uint32_t j = 0;
        for (uint32_t t = 0; t < TOKS && j < KEEP; t++)
            if ((t + g) % 3 != 0) keep[g * KEEP + j++] = t;
    }
    size_t n = 0;
    tkr_status st = tkr_kv_compact(TKR_KV_HEAD_MAJOR, 2, c, TOKS, HEADS, HD, HD, TOKS * HD, keep,
                                   KEEP, TKR_KV_KEEP_PER_HEAD, &n);
    out[HEADS * TOKS * HD / 2 + 1] = (float)n;
    return st;
}
enum { RK = 9 };
static tkr_status job_route(float *out) {
    tkr_route_options o;
    tkr_route_options_init(&o);
    o.flags = TKR_TOPK_ORDER_SCORE;
    o.keep_first = 1;
    o.keep_last = 1;
    size_t count = 0;
    tkr_status st = tkr_route(TKR_DTYPE_F32, h32, N, D, HS, w32, bias, TKR_ACT_SIGMOID, TKR_ROUTE_TOPK,
                              RK, 0.0f, &o, (uint32_t *)out, out + RK, out + 2 * RK, D, RK, &count,
                              NULL, 0);
    out[2 * RK + RK * D] = (float)count;
    return st;
}
static tkr_status job_route_threshold(float *out) {
    size_t count = 0;
    enum { RT = 40 };
    tkr_status st = tkr_route(TKR_DTYPE_F16, h16, RT, D, HS, w16, NULL, TKR_ACT_NONE, TKR_ROUTE_THRESHOLD,
                              0, 0.1f, NULL, (uint32_t *)out, out + RT, out + 2 * RT, D, RT,
                              &count, NULL, 0);
    out[2 * RT + RT * D / 2 + 1] = (float)count;
    return st;
}

/* Attention: dense causal + window with lse and per-KV-head mass (f32), index keys
 * (bf16 in, f16 out), block lists per KV head; merge, key-block summary and bound. */
enum { AQ = 3, AHQ = 4, AHK = 2, AD = 33, AK = 60 };
static uint32_t a_qpos[AQ] = {20, 40, 59}, a_kpos[AK], a_idx[40];
static tkr_status job_attention_dense(float *out) {
    tkr_attention_options o;
    tkr_attention_options_init(&o);
    o.flags = TKR_ATTENTION_CAUSAL;
    o.window = 25;
    o.q_positions = a_qpos;
    o.k_positions = a_kpos;
    o.lse = out + AQ * AHQ * AD;
    o.mass = out + AQ * AHQ * AD + AQ * AHQ;
    o.mass_head_stride = AK;
    memset(o.mass, 0, AHK * AK * sizeof(float));
    return tkr_attention(TKR_DTYPE_F32, h32, AQ, AHQ, AD, AHQ * AD, AD, h32 + 500, h32 + 4000, AK,
                         AHK, AHK * AD, AD, AHK * AD, AD, NULL, &o, out, AHQ * AD, AD);
}
static tkr_status job_attention_idx(float *out) {
    tkr_attention_keys k;
    tkr_attention_keys_init(&k);
    k.kind = TKR_KEYS_INDICES;
    k.indices = a_idx;
    k.n_indices = 40;
    tkr_attention_options o;
    tkr_attention_options_init(&o);
    o.out_dtype = TKR_DTYPE_F16;
    return tkr_attention(TKR_DTYPE_BF16, hb16, AQ, AHQ, AD, AHQ * AD, AD, hb16 + 500, hb16 + 4000,
                         AK, AHK, AHK * AD, AD, AHK * AD, AD, &k, &o, out, AHQ * AD, AD);
}
static tkr_status job_attention_blocks(float *out) {
    enum { LISTS = AQ * AHK };
    size_t offs[LISTS + 1];
    uint32_t ids[LISTS * 2];
    for (int l = 0; l <= LISTS; l++) offs[l] = (size_t)l * 2;
    for (int j = 0; j < LISTS * 2; j++) ids[j] = (uint32_t)((j * 3) % 8);
    tkr_attention_keys k;
    tkr_attention_keys_init(&k);
    k.kind = TKR_KEYS_BLOCKS;
    k.block_lists = TKR_BLOCK_LISTS_PER_KV_HEAD;
    k.block_size = 8;
    k.query_block_size = 1;
    k.block_offsets = offs;
    k.block_ids = ids;
    k.n_block_ids = LISTS * 2;
    return tkr_attention(TKR_DTYPE_F32, h32, AQ, AHQ, AD, AHQ * AD, AD, h32 + 500, h32 + 4000, AK,
                         AHK, AHK * AD, AD, AHK * AD, AD, &k, NULL, out, AHQ * AD, AD);
}
static tkr_status job_merge(float *out) {
    static const float lse[3 * 7] = {0.5f, -1.0f, 2.0f, -INFINITY, 0.0f, 1.0f, 3.0f,
                                     1.5f, 0.25f, -2.0f, -INFINITY, 0.5f, 0.75f, -3.0f,
                                     -0.5f, 4.0f, 1.0f, -INFINITY, 2.5f, -1.5f, 0.0f};
    return tkr_attention_merge(TKR_DTYPE_F32, h32, 3, 7, D, 7 * HS, HS, lse, 7, out, D, out + 7 * D);
}
static tkr_status job_summary_bound(float *out) {
    enum { NB = (AK + 7) / 8 };
    float *kmin = out, *kmax = out + NB * AHK * AD, *bound = out + 2 * NB * AHK * AD;
    tkr_status st = tkr_key_block_summary(TKR_DTYPE_F16, h16 + 500, AK, AHK, AD, AHK * AD, AD, 8, 0, NB,
                                          kmin, kmax);
    if (st != TKR_STATUS_OK) return st;
    return tkr_key_block_bound(TKR_DTYPE_F32, h32, AQ, AHQ, AD, AHQ * AD, AD, kmin, kmax, NB, AHK,
                               bound, NB);
}

static const job JOBS[] = {
    {"sigmoid_f32", SN, job_sigmoid},
    {"score f32 sigmoid", N * E, job_score_f32},
    {"score f16 none", N * E, job_score_f16},
    {"score bf16 sigmoid", N * E, job_score_bf16},
    {"topk f32 by score, keep_first", BATCH * TOPK_K, job_topk},
    {"threshold f32", BATCH * D, job_threshold},
    {"gather_rows", GN * D, job_gather},
    {"scatter_add bf16 gated", N * 60 / 2, job_scatter_add},
    {"compact_rows + side array", 28 * HS + 29, job_compact},
    {"kv_compact f16 head-major per head", 4 * 24 * 17 / 2 + 2, job_kv},
    {"route f32 top-k by score", 2 * RK + RK * D + 1, job_route},
    {"route f16 threshold", 2 * 40 + 40 * D / 2 + 2, job_route_threshold},
    {"attention f32 causal window lse mass", AQ * AHQ * AD + AQ * AHQ + AHK * AK, job_attention_dense},
    {"attention bf16 indices f16 out", AQ * AHQ * AD / 2, job_attention_idx},
    {"attention f32 blocks per KV head", AQ * AHQ * AD, job_attention_blocks},
    {"attention_merge", 7 * D + 7, job_merge},
    {"key_block_summary f16 + bound", 2 * 8 * AHK * AD + AQ * AHQ * 8, job_summary_bound},
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
        /* Lets the workers run where threads share a core (or are serialised, as
         * under valgrind: a spinning switcher would take most of the time). */
        thrd_yield();
    }
    return 0;
}

int main(void) {
    check_expected_isa();
    uint32_t level = tkr_get_isa();
    const char *it = getenv("TKR_TEST_ITERS");
    if (it) iters = atoi(it);
    make_inputs();
    for (int j = 0; j < GN; j++) gates[j] = rndf();
    for (int t = 0; t < AK; t++) a_kpos[t] = (uint32_t)t;
    for (int j = 0; j < 40; j++) a_idx[j] = (uint32_t)((j * 7 + 3) % AK);
    /* Single-threaded reference on the requested level; sigmoid inputs hold no NaN. */
    for (int k = 0; k < NJOBS; k++) {
        CHECK(JOBS[k].n_out <= MAXOUT);
        /* As the workers do: bytes a job leaves alone hold 0xA5. */
        memset(reference[k], 0xA5, sizeof reference[k]);
        if (JOBS[k].run(reference[k]) != TKR_STATUS_OK) {
            fprintf(stderr, "%s: reference run failed\n", JOBS[k].name);
            tkr_test_failures++;
        }
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
        memset(again, 0xA5, sizeof again);
        CHECK_STATUS(JOBS[k].run(again), TKR_STATUS_OK);
        CHECK(memcmp(again, reference[k], JOBS[k].n_out * sizeof(float)) == 0);
    }
    printf("concurrency: %ld calls on %d threads, %ld level switches, %ld calls overlapped a switch\n",
           atomic_load(&calls), THREADS, atomic_load(&switches), atomic_load(&overlapped));
    return finish_tests("concurrency");
}
