// Geometry and bilinear maths of BandedDeformConv2d, shared by the CUDA kernels and the CPU build.
//
// Everything here is FP32 whatever the storage type: half precision has no fractional bits above
// 1024, so coordinates or bilinear weights kept in half would lose sub-pixel sampling on wide maps.
#pragma once

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "banded_deform_conv_api.h"

#ifdef __CUDACC__
#include <cuda_fp16.h>
#define BDINN_HD __host__ __device__
#else
#define BDINN_HD
#endif

namespace bdinn {

// Undeformed offset of a kernel point, in pixels.
struct KernelPoint {
    float px, py;
};

// Activated geometry of one output pixel.
struct Geometry {
    float cos, sin, sx, sy;
};

struct Position {
    float x, y;
};

// The four bilinear corners in the reference's order: (y0,x0), (y0,x0+1), (y0+1,x0), (y0+1,x0+1).
// index is y*W + x within a channel plane, or -1 (weight 0) for a corner outside the image.
struct Bilinear {
    int index[4];
    float weight[4];
};

// Kernel point k of a kh x kw kernel, row-major (i over kh, j over kw) like the weight.
BDINN_HD inline KernelPoint kernel_point(int k, int kh, int kw, int dil_h, int dil_w) {
    const int i = k / kw;
    const int j = k - i * kw;
    // Small integers: exact in float.
    return {float((j - (kw - 1) / 2) * dil_w), float((i - (kh - 1) / 2) * dil_h)};
}

// Absolute sampling position of kernel point p for the output pixel at (x0, y0).
BDINN_HD inline Position sampling_position(int x0, int y0, Geometry g, KernelPoint p) {
    const float ax = g.sx * p.px;
    const float ay = g.sy * p.py;
    // The small offset first, so that the only rounding at the pixel's magnitude is the last add.
    const float ox = g.cos * ax - g.sin * ay;
    const float oy = g.sin * ax + g.cos * ay;
    return {float(x0) + ox, float(y0) + oy};
}

// Corner indices and weights for sampling an h x w plane at p, zeros outside.
BDINN_HD inline Bilinear bilinear(Position p, int h, int w) {
    // Clamping to [-2, size+1] leaves every corner of an outside position outside and keeps the
    // int conversion defined for huge or NaN coordinates (fmaxf returns -2 for NaN).
    const float x = fminf(fmaxf(p.x, -2.0f), float(w) + 1.0f);
    const float y = fminf(fmaxf(p.y, -2.0f), float(h) + 1.0f);
    const float xf = floorf(x);
    const float yf = floorf(y);
    const float fx = x - xf;
    const float fy = y - yf;
    const int xi = int(xf);
    const int yi = int(yf);
    const float wx[2] = {1.0f - fx, fx};
    const float wy[2] = {1.0f - fy, fy};
    Bilinear b;
    for (int dy = 0; dy < 2; ++dy) {
        for (int dx = 0; dx < 2; ++dx) {
            const int cx = xi + dx;
            const int cy = yi + dy;
            const bool inside = cx >= 0 && cx < w && cy >= 0 && cy < h;
            b.index[2 * dy + dx] = inside ? cy * w + cx : -1;
            b.weight[2 * dy + dx] = inside ? wy[dy] * wx[dx] : 0.0f;
        }
    }
    return b;
}

// A Bilinear that samples nothing (for the padding pixels of a tile).
BDINN_HD inline Bilinear bilinear_empty() {
    return {{-1, -1, -1, -1}, {0.0f, 0.0f, 0.0f, 0.0f}};
}

BDINN_HD inline float to_float(float v) { return v; }
#ifdef __CUDACC__
BDINN_HD inline float to_float(__half v) { return __half2float(v); }
#endif

// One bilinear sample of a channel plane, in FP32.
template <typename T>
BDINN_HD inline float sample(const T* plane, const Bilinear& b) {
    float v = 0.0f;
    for (int q = 0; q < 4; ++q) {
        if (b.index[q] >= 0) v += b.weight[q] * to_float(plane[b.index[q]]);
    }
    return v;
}

// Geometry of pixel `pixel` (y*W + x) of image n from a [N,4,H,W] tensor.
template <typename T>
BDINN_HD inline Geometry load_geometry(const T* geometry, int n, int hw, int pixel) {
    const T* g = geometry + size_t(n) * 4 * size_t(hw) + size_t(pixel);
    return {to_float(g[0]), to_float(g[size_t(hw)]), to_float(g[2 * size_t(hw)]),
            to_float(g[3 * size_t(hw)])};
}

// Argument checks shared by every entry point; bias may be null.
inline int validate(const void* x, const void* geometry, const void* weight, const void* out, int n,
                    int c, int h, int w, int o, int kh, int kw, int dil_h, int dil_w) {
    if (x == nullptr || geometry == nullptr || weight == nullptr || out == nullptr) {
        return BDINN_ERROR_NULL_POINTER;
    }
    if (n < 1 || c < 1 || h < 1 || w < 1 || o < 1 || kh < 1 || kw < 1) return BDINN_ERROR_INVALID_SIZE;
    if (kh % 2 == 0 || kw % 2 == 0) return BDINN_ERROR_EVEN_KERNEL;
    if (dil_h < 1 || dil_w < 1) return BDINN_ERROR_INVALID_DILATION;
    if (!bdinn_extents_fit(n, c, h, w, kh, kw, dil_h, dil_w)) return BDINN_ERROR_TOO_LARGE;
    return BDINN_SUCCESS;
}

inline const char* status_message(int status) {
    switch (status) {
        case BDINN_SUCCESS: return "success";
        case BDINN_ERROR_INVALID_DTYPE: return "dtype must be 0 (float32) or 1 (float16)";
        case BDINN_ERROR_INVALID_ALGO: return "unknown algorithm, or tensor cores asked for float32";
        case BDINN_ERROR_NULL_POINTER: return "x, geometry, weight and out must not be null";
        case BDINN_ERROR_INVALID_SIZE: return "N, C, H, W, O, kh and kw must be at least 1";
        case BDINN_ERROR_EVEN_KERNEL: return "kernel sizes must be odd";
        case BDINN_ERROR_INVALID_DILATION: return "dilations must be at least 1";
        case BDINN_ERROR_TOO_LARGE: return "tensor too large for 32-bit pixel indices or the launch grid";
        case BDINN_ERROR_OUT_OF_MEMORY: return "out of host memory";
        default: return "unknown status";
    }
}

}  // namespace bdinn
