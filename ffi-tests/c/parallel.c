/* tkr-test: std=c11 (threads.h, stdatomic.h) */
/* Threads through the header: every output is bit-identical inline, on the built-in
 * pool (2, 3 and 7 threads), through a process-wide parallel-for that runs its tasks in
 * reverse order, and through a per-thread parallel-for backed by C11 threads; a failing
 * callback gives TKR_STATUS_PARALLEL_FAILED with complete outputs; bad thread counts
 * and a NULL callback with a context are refused. The calls: scores (f32, 8 routers),
 * top-k of one long row (chunked), threshold of one long row, a gather, a scatter-add,
 * a decode over 3000 keys (split-K) with log-sum-exps, and a ragged decoding batch of
 * four sequences (each small: they run in parallel with one another; one long enough
 * for split-K of its own) with log-sum-exps. TKR_TEST_ITERS (set by the
 * valgrind run) shrinks the shapes to the smallest that still split the same ways. */
#include <stdatomic.h>
#include <threads.h>

#include "check.h"

enum { N = 1500, D = 256, E = 8, ROW = 300001, K = 64, NK = 3000, HQ = 8, HKV = 2, HD = 64 };

static float h[N * D], w[E * D], row[ROW];
static uint32_t gidx[N];
static float q[4 * HQ * HD], kk[NK * HKV * HD], vv[NK * HKV * HD];

typedef struct {
    float scores[N * E];
    uint32_t topk[K];
    uint32_t thr[ROW];
    size_t thr_count;
    float gathered[N * D];
    float added[N * D];
    float att[HQ * HD];
    float lse[HQ];
    float batt[4 * HQ * HD];
    float blse[4 * HQ];
} outputs;

static outputs want, got;

/* The shapes used: N rows, a ROW-long row, NK keys, or smaller (see above). */
static size_t n_rows = N, row_len = ROW, n_keys = NK;

static uint32_t rng_state = 777u;
static uint32_t rnd(void) {
    rng_state = rng_state * 1664525u + 1013904223u;
    return rng_state >> 8;
}
static float rndf(void) { return ((float)(rnd() % 20001u) - 10000.0f) / 10000.0f; }

static void make_inputs(void) {
    for (int i = 0; i < N * D; i++) h[i] = rndf();
    for (int i = 0; i < E * D; i++) w[i] = rndf() * 0.05f;
    for (int i = 0; i < ROW; i++) row[i] = (i % 11 == 0) ? 0.25f : rndf();
    for (int i = 0; i < 4 * HQ * HD; i++) q[i] = rndf();
    for (int i = 0; i < NK * HKV * HD; i++) {
        kk[i] = rndf();
        vv[i] = rndf();
    }
}

/* Runs every call into `o`; returns the first status that is not OK (or OK). */
static tkr_status run_all(outputs *o) {
    tkr_status first = TKR_STATUS_OK, st;
    memset(o, 0, sizeof *o);
#define KEEP(call)                                                                  \
    do {                                                                            \
        st = (call);                                                                \
        if (st != TKR_STATUS_OK && first == TKR_STATUS_OK) first = st;              \
    } while (0)
    size_t n = n_rows;
    KEEP(tkr_score(TKR_DTYPE_F32, h, n, D, D, w, E, D, NULL, TKR_ACT_SIGMOID, o->scores, E));
    KEEP(tkr_topk_f32(row, 1, row_len, row_len, K, NULL, o->topk, K, NULL, NULL, 0));
    size_t counts[1] = {0};
    KEEP(tkr_threshold_f32(row, 1, row_len, row_len, 0.5f, NULL, o->thr, ROW, counts));
    o->thr_count = counts[0];
    for (size_t i = 0; i < n; i++) gidx[i] = (uint32_t)((i * 7919) % n);
    KEEP(tkr_gather_rows(4, D, h, n, D, gidx, n, o->gathered, D));
    memcpy(o->added, h, sizeof o->added);
    static uint32_t distinct[N];
    for (size_t i = 0; i < n; i++) distinct[i] = (uint32_t)(n - 1 - i);
    KEEP(tkr_scatter_add_rows(TKR_DTYPE_F32, D, o->added, n, D, distinct, n, h, D, NULL));
    tkr_attention_options aopt;
    tkr_attention_options_init(&aopt);
    aopt.lse = o->lse;
    KEEP(tkr_attention(TKR_DTYPE_F32, q, 1, HQ, HD, HQ * HD, HD, kk, vv, n_keys, HKV, HKV * HD,
                       HD, HKV * HD, HD, NULL, &aopt, o->att, HQ * HD, HD));
    /* Four decoding sequences packed back to back over the keys. */
    size_t cu_q[5] = {0, 1, 2, 3, 4};
    size_t cu_k[5] = {0, n_keys / 3, n_keys / 3 + 50, n_keys / 3 + 50 + 1030, n_keys};
    tkr_attention_batch batch;
    tkr_attention_batch_init(&batch);
    batch.n_seqs = 4;
    batch.cu_seqlens_q = cu_q;
    batch.cu_seqlens_k = cu_k;
    aopt.lse = o->blse;
    aopt.batch = &batch;
    KEEP(tkr_attention(TKR_DTYPE_F32, q, 4, HQ, HD, HQ * HD, HD, kk, vv, n_keys, HKV, HKV * HD,
                       HD, HKV * HD, HD, NULL, &aopt, o->batt, HQ * HD, HD));
#undef KEEP
    return first;
}

static int same(const outputs *a, const outputs *b) { return memcmp(a, b, sizeof *a) == 0; }

/* --- engine callbacks --------------------------------------------------------------- */

static atomic_int reverse_calls;

/* Runs the tasks in reverse order on the calling thread. */
static int32_t reverse_for(void *ctx, size_t n, tkr_task_fn task, void *task_ctx) {
    CHECK(ctx == (void *)&reverse_calls);
    atomic_fetch_add(&reverse_calls, 1);
    for (size_t i = n; i-- > 0;) task(task_ctx, i);
    return 0;
}

/* Runs half the tasks, then reports failure. */
static int32_t failing_for(void *ctx, size_t n, tkr_task_fn task, void *task_ctx) {
    (void)ctx;
    for (size_t i = 0; i < n / 2; i++) task(task_ctx, i);
    return 1;
}

/* A tiny pool: THREADS C11 threads per call claim tasks from an atomic counter. */
enum { THREADS = 3 };
typedef struct {
    atomic_size_t next;
    size_t n;
    tkr_task_fn task;
    void *task_ctx;
} job;

static int worker(void *arg) {
    job *j = (job *)arg;
    for (;;) {
        size_t i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n) return 0;
        j->task(j->task_ctx, i);
    }
}

static int32_t threads_for(void *ctx, size_t n, tkr_task_fn task, void *task_ctx) {
    (void)ctx;
    job j;
    atomic_init(&j.next, 0);
    j.n = n;
    j.task = task;
    j.task_ctx = task_ctx;
    thrd_t t[THREADS];
    int started = 0;
    for (int i = 0; i < THREADS; i++)
        if (thrd_create(&t[i], worker, &j) == thrd_success) started++;
    worker(&j); /* the caller helps (and finishes alone if no thread started) */
    for (int i = 0; i < started; i++) thrd_join(t[i], NULL);
    return 0;
}

int main(void) {
    check_expected_isa();
    if (getenv("TKR_TEST_ITERS") != NULL) {
        /* Still above the work threshold, a long (chunked) row and split-K. */
        n_rows = 600;
        row_len = 180000;
        n_keys = 2100;
    }
    make_inputs();

    /* Bad input: nothing changes. */
    CHECK(tkr_get_num_threads() == 1);
    CHECK_STATUS(tkr_set_num_threads(0), TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_set_num_threads(1025), TKR_STATUS_INVALID_ARGUMENT);
    CHECK_STATUS(tkr_set_num_threads((size_t)-1), TKR_STATUS_INVALID_ARGUMENT);
    CHECK(tkr_get_num_threads() == 1);
    int dummy = 0;
    CHECK_STATUS(tkr_set_parallel_for(NULL, &dummy), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_set_thread_parallel_for(NULL, &dummy), TKR_STATUS_NULL_POINTER);
    CHECK_STATUS(tkr_set_thread_num_threads(5000), TKR_STATUS_INVALID_ARGUMENT);

    CHECK_STATUS(run_all(&want), TKR_STATUS_OK);
    CHECK(want.thr_count > 0);

    /* The built-in pool. */
    const size_t counts[] = {2, 3, 7, 1};
    for (int c = 0; c < 4; c++) {
        CHECK_STATUS(tkr_set_num_threads(counts[c]), TKR_STATUS_OK);
        CHECK(tkr_get_num_threads() == counts[c]);
        CHECK_STATUS(run_all(&got), TKR_STATUS_OK);
        CHECK(same(&got, &want));
    }
    /* A per-thread cap of 1 on a pool of 3, then removed. */
    CHECK_STATUS(tkr_set_num_threads(3), TKR_STATUS_OK);
    CHECK_STATUS(tkr_set_thread_num_threads(1), TKR_STATUS_OK);
    CHECK_STATUS(run_all(&got), TKR_STATUS_OK);
    CHECK(same(&got, &want));
    CHECK_STATUS(tkr_set_thread_num_threads(0), TKR_STATUS_OK);

    /* A process-wide callback running tasks in reverse order. */
    CHECK_STATUS(tkr_set_parallel_for(reverse_for, &reverse_calls), TKR_STATUS_OK);
    CHECK_STATUS(run_all(&got), TKR_STATUS_OK);
    CHECK(same(&got, &want));
    CHECK(atomic_load(&reverse_calls) > 0);

    /* The calling thread's own callback (C11 threads) takes precedence. */
    int before = atomic_load(&reverse_calls);
    CHECK_STATUS(tkr_set_thread_parallel_for(threads_for, NULL), TKR_STATUS_OK);
    CHECK_STATUS(run_all(&got), TKR_STATUS_OK);
    CHECK(same(&got, &want));
    CHECK(atomic_load(&reverse_calls) == before);

    /* A failing callback: PARALLEL_FAILED, outputs complete. */
    CHECK_STATUS(tkr_set_thread_parallel_for(failing_for, NULL), TKR_STATUS_OK);
    CHECK_STATUS(run_all(&got), TKR_STATUS_PARALLEL_FAILED);
    CHECK(same(&got, &want));

    /* Removing the settings: back to the pool of 3, then inline. */
    CHECK_STATUS(tkr_set_thread_parallel_for(NULL, NULL), TKR_STATUS_OK);
    CHECK_STATUS(tkr_set_parallel_for(NULL, NULL), TKR_STATUS_OK);
    before = atomic_load(&reverse_calls);
    CHECK_STATUS(run_all(&got), TKR_STATUS_OK);
    CHECK(same(&got, &want));
    CHECK(atomic_load(&reverse_calls) == before);
    CHECK_STATUS(tkr_set_num_threads(1), TKR_STATUS_OK);
    CHECK(tkr_get_num_threads() == 1);
    return finish_tests("parallel");
}
