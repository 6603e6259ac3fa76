// CPU build of the BandedDeformConv2d forward, for CI: every coordinate, corner and weight comes from
// the __host__ __device__ functions the CUDA kernels use, in the kernels' summation order
// (kernel point outer, channel inner, bias last), so testing this tests their maths. nvcc fuses
// their multiply-adds (FMA) where this build does not, so the two agree to rounding, not bit for bit.
#include <new>
#include <vector>

#include "banded_deform_conv.cuh"

extern "C" int bdinn_banded_deform_conv_forward_cpu(const float* x, const float* geometry,
                                                    const float* weight, const float* bias, float* out,
                                                    int n, int c, int h, int w, int o, int kh, int kw,
                                                    int dil_h, int dil_w) {
    using namespace bdinn;
    const int status = validate(x, geometry, weight, out, n, c, h, w, o, kh, kw, dil_h, dil_w);
    if (status != BDINN_SUCCESS) return status;

    const int hw = h * w;
    const int kk = kh * kw;
    std::vector<float> column;  // [k][c]: one pixel's samples
    try {
        column.resize(size_t(kk) * c);
    } catch (std::bad_alloc const&) {  // escaping a C function, it would end the calling process
        return BDINN_ERROR_OUT_OF_MEMORY;
    }
    for (int b = 0; b < n; ++b) {
        const float* image = x + size_t(b) * c * hw;
        for (int r = 0; r < hw; ++r) {
            const int y0 = r / w;
            const int x0 = r - y0 * w;
            const Geometry g = load_geometry(geometry, b, hw, r);
            for (int k = 0; k < kk; ++k) {
                const Bilinear corners =
                    bilinear(sampling_position(x0, y0, g, kernel_point(k, kh, kw, dil_h, dil_w)), h, w);
                for (int ch = 0; ch < c; ++ch) {
                    column[size_t(k) * c + ch] = sample(image + size_t(ch) * hw, corners);
                }
            }
            for (int oo = 0; oo < o; ++oo) {
                const float* wo = weight + size_t(oo) * c * kk;
                float acc = 0.0f;
                for (int k = 0; k < kk; ++k) {
                    for (int ch = 0; ch < c; ++ch) acc += wo[size_t(ch) * kk + k] * column[size_t(k) * c + ch];
                }
                out[(size_t(b) * o + oo) * hw + r] = acc + (bias != nullptr ? bias[oo] : 0.0f);
            }
        }
    }
    return BDINN_SUCCESS;
}

extern "C" const char* bdinn_cpu_error_string(int status) { return bdinn::status_message(status); }
