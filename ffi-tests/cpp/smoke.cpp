// The header from C++17: extern "C" linkage, constants usable in constant expressions,
// and the library driven through std containers.
#include <cmath>
#include <cstring>
#include <vector>

#include "../c/check.h"

static_assert(TKR_STATUS_OK == 0, "success is zero");
static_assert(sizeof(tkr_status) == 4, "tkr_status is 32 bits");
static_assert(TKR_VERSION_NUMBER == TKR_VERSION_MAJOR * 10000 + TKR_VERSION_MINOR * 100 + TKR_VERSION_PATCH,
              "version formula");

int main() {
    check_expected_isa();
    CHECK(tkr_abi_version() == TKR_ABI_VERSION);

    std::vector<float> x(1000), y(1000);
    for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>(i) * 0.05f - 25.0f;
    CHECK_STATUS(tkr_sigmoid_f32(x.data(), x.size(), y.data()), TKR_STATUS_OK);
    for (size_t i = 0; i < x.size(); i++) {
        double want = 1.0 / (1.0 + std::exp(-static_cast<double>(x[i])));
        CHECK(std::fabs(y[i] - want) <= 3e-7 * want);
    }

    // One router over 64 tokens of d = 100, with a bias, into a strided output.
    const size_t n = 64, d = 100, os = 3;
    std::vector<float> h(n * d), w(d), out(n * os, -7.0f);
    for (size_t i = 0; i < h.size(); i++) h[i] = static_cast<float>((i * 13) % 17) / 16.0f - 0.5f;
    for (size_t j = 0; j < d; j++) w[j] = static_cast<float>((j * 3) % 5) / 4.0f - 0.5f;
    const float bias = 0.125f;
    CHECK_STATUS(tkr_score(TKR_DTYPE_F32, h.data(), n, d, d, w.data(), 1, d, &bias, TKR_ACT_SIGMOID, out.data(), os),
                 TKR_STATUS_OK);
    for (size_t i = 0; i < n; i++) {
        double logit = bias;
        for (size_t j = 0; j < d; j++) logit += static_cast<double>(h[i * d + j]) * w[j];
        CHECK(std::fabs(out[i * os] - 1.0 / (1.0 + std::exp(-logit))) <= 1e-6);
        CHECK(out[i * os + 1] == -7.0f && out[i * os + 2] == -7.0f);
    }
    return finish_tests("smoke.cpp");
}
