/* What threads cost a small call (n = 64): instructions per call at a thread count,
 * counted by callgrind (repeatable on a shared machine), from the slope between N and
 * 2N iterations of three n = 64 calls (scores of 64 x 768 f32 with 1 and 8 routers, a
 * top-8 of 64). Below the work threshold every call runs inline, so the counts at 1 and
 * at 2 or more threads must be equal.
 *
 *   cargo build --release --lib
 *   cc -O2 -Iinclude benches/small_calls.c target/release/libtokenroute.so \
 *      -Wl,-rpath,$PWD/target/release -o /tmp/small_calls
 *   for t in 1 2; do for n in 200 400; do
 *     valgrind --tool=callgrind --callgrind-out-file=/dev/null /tmp/small_calls $t $n 2>&1 |
 *       grep Collected; done; done
 *
 * Usage: small_calls THREADS ITERATIONS */
#include <stdio.h>
#include <stdlib.h>

#include "tokenroute.h"

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: small_calls THREADS ITERATIONS\n");
        return 2;
    }
    size_t threads = (size_t)atoi(argv[1]);
    int n = atoi(argv[2]);
    static float h[64 * 768], w[8 * 768], s[64 * 8], row[64];
    static uint32_t idx[8];
    for (int i = 0; i < 64 * 768; i++) h[i] = (float)(i % 13) * 0.01f;
    for (int i = 0; i < 8 * 768; i++) w[i] = (float)(i % 7) * 0.001f;
    for (int i = 0; i < 64; i++) row[i] = (float)((i * 37) % 64);
    if (tkr_set_num_threads(threads) != TKR_STATUS_OK) return 1;
    for (int it = 0; it < n; it++) {
        if (tkr_score(TKR_DTYPE_F32, h, 64, 768, 768, w, 1, 768, NULL, TKR_ACT_SIGMOID, s, 1) ||
            tkr_score(TKR_DTYPE_F32, h, 64, 768, 768, w, 8, 768, NULL, TKR_ACT_SIGMOID, s, 8) ||
            tkr_topk_f32(row, 1, 64, 64, 8, NULL, idx, 8, NULL, NULL, 0))
            return 1;
    }
    printf("threads %zu, %d iterations: %g %u\n", threads, n, (double)s[0], idx[0]);
    return 0;
}
