// BandedDeformConv2d forward kernels (FP32 and FP16 storage) and their C ABI launcher.
//
// The operator is a bilinear gather followed by a GEMM over C*kh*kw. Each thread block owns a tile
// of P output pixels (flattened over N*H*W) by OT output channels and never writes the gathered
// columns to global memory: for every kernel point k and every chunk of kChunkC channels it
//   1. samples the chunk at the tile's pixels into shared memory (each thread keeps the bilinear
//      corners of one pixel for point k in registers and reuses them across channels),
//   2. stages the matching weight slice weight[o_tile, c_chunk, k] into shared memory,
//   3. multiplies the two tiles into per-thread FP32 accumulators (CUDA cores), or into WMMA
//      accumulators (tensor cores, FP16 products, FP32 sums).
// Coordinates, bilinear weights and sums are FP32 in every path (see banded_deform_conv.cuh).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <type_traits>

#include "banded_deform_conv.cuh"

namespace bdinn {
namespace {

constexpr int kThreads = 256;
constexpr int kChunkC = 32;  // channels per shared-memory stage: two WMMA k-steps

// Tile shapes: (P pixels, OT outputs). Both give 16 outputs per thread on CUDA cores and 16 WMMA
// 16x16 fragments (two per warp) on tensor cores. Narrow layers (the paper's bottleneck has
// O = 24) take more pixels per block instead of idling half the output tile.
struct TileWide {
    static constexpr int P = 64, OT = 64;
};
struct TileNarrow {
    static constexpr int P = 128, OT = 32;
};

struct Shape {
    int n, c, h, w, o, kh, kw, dil_h, dil_w;
};

__device__ inline float load(const float* p) { return __ldg(p); }
__device__ inline float load(const __half* p) { return __half2float(__ldg(p)); }
__device__ inline void store(float* p, float v) { *p = v; }
__device__ inline void store(__half* p, float v) { *p = __float2half_rn(v); }

// The sampling role of a thread: one pixel of the tile (sp), channels sc, sc + kStride, ...
template <typename T, int P>
struct Sampler {
    static constexpr int kStride = kThreads / P;
    int sp, sc, x0, y0;
    bool valid;
    Geometry g;
    const T* image;  // x[n] of this thread's pixel

    __device__ Sampler(const T* x, const T* geometry, const Shape& s, int tile_p) {
        const int hw = s.h * s.w;
        sp = threadIdx.x % P;
        sc = threadIdx.x / P;
        const int pixel = tile_p + sp;
        valid = pixel < s.n * hw;
        const int n = valid ? pixel / hw : 0;
        const int r = valid ? pixel - n * hw : 0;
        y0 = r / s.w;
        x0 = r - y0 * s.w;
        g = valid ? load_geometry(geometry, n, hw, r) : Geometry{1.0f, 0.0f, 1.0f, 1.0f};
        image = x + size_t(n) * s.c * hw;
    }

    __device__ Bilinear corners(const Shape& s, int k) const {
        if (!valid) return bilinear_empty();
        return bilinear(sampling_position(x0, y0, g, kernel_point(k, s.kh, s.kw, s.dil_h, s.dil_w)),
                        s.h, s.w);
    }

    // Channels [c0, c0 + kChunkC) at this pixel into column sp of tile[kChunkC][ld]; zero past C.
    template <typename S, int ld>
    __device__ void stage(S (*tile)[ld], const Shape& s, const Bilinear& b, int c0) const {
        static_assert(kChunkC % kStride == 0, "whole channel rows per thread");
        const size_t hw = size_t(s.h) * s.w;
        // Four channels per step keep 16 gathers in flight without spilling registers.
#pragma unroll 4
        for (int j = 0; j < kChunkC / kStride; ++j) {
            const int cc = sc + j * kStride;
            const int c = c0 + cc;
            float v = 0.0f;
            if (c < s.c) v = sample(image + size_t(c) * hw, b);
            store(&tile[cc][sp], v);
        }
    }
};

// tile[cc][oo] = weight[tile_o + oo, c0 + cc, k], zero outside the tensor.
template <typename T, typename S, int OT, int ld>
__device__ void stage_weight(S (*tile)[ld], const T* weight, const Shape& s, int tile_o, int c0,
                             int k) {
    static_assert(kChunkC * OT % kThreads == 0, "whole passes over the tile");
    const int kk = s.kh * s.kw;
#pragma unroll
    for (int pass = 0; pass < kChunkC * OT / kThreads; ++pass) {
        const int e = threadIdx.x + pass * kThreads;
        const int cc = e / OT;
        const int oo = e - cc * OT;
        const int o = tile_o + oo;
        const int c = c0 + cc;
        float v = 0.0f;
        if (o < s.o && c < s.c) v = load(weight + (size_t(o) * s.c + c) * kk + k);
        store(&tile[cc][oo], v);
    }
}

template <typename T>
__device__ void write_output(T* out, const T* bias, const Shape& s, int o, int pixel, float acc) {
    const int hw = s.h * s.w;
    const int n = pixel / hw;
    const int r = pixel - n * hw;
    store(out + (size_t(n) * s.o + o) * hw + r, acc + (bias != nullptr ? load(bias + o) : 0.0f));
}

// CUDA cores, FP32 or FP16 storage. Thread t computes pixels gp..gp+3 x outputs go..go+3.
template <typename T, typename Tile>
__global__ void __launch_bounds__(kThreads)
    forward_cuda_cores(const T* __restrict__ x, const T* __restrict__ geometry,
                       const T* __restrict__ weight, const T* __restrict__ bias, T* __restrict__ out,
                       Shape s) {
    constexpr int P = Tile::P, OT = Tile::OT;
    static_assert((P / 4) * (OT / 4) == kThreads, "4x4 outputs per thread");
    __shared__ __align__(16) float samples[kChunkC][P];
    __shared__ __align__(16) float weights[kChunkC][OT];

    const int tile_p = blockIdx.x * P;
    const int tile_o = blockIdx.y * OT;
    const Sampler<T, P> sampler(x, geometry, s, tile_p);
    const int gp = (threadIdx.x % (P / 4)) * 4;
    const int go = (threadIdx.x / (P / 4)) * 4;
    float acc[4][4] = {};

    for (int k = 0; k < s.kh * s.kw; ++k) {
        const Bilinear b = sampler.corners(s, k);
        for (int c0 = 0; c0 < s.c; c0 += kChunkC) {
            sampler.stage(samples, s, b, c0);
            stage_weight<T, float, OT>(weights, weight, s, tile_o, c0, k);
            __syncthreads();
#pragma unroll 8
            for (int cc = 0; cc < kChunkC; ++cc) {
                const float4 sv = *reinterpret_cast<const float4*>(&samples[cc][gp]);
                const float4 wv = *reinterpret_cast<const float4*>(&weights[cc][go]);
                const float sa[4] = {sv.x, sv.y, sv.z, sv.w};
                const float wa[4] = {wv.x, wv.y, wv.z, wv.w};
#pragma unroll
                for (int i = 0; i < 4; ++i) {
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] += wa[i] * sa[j];
                }
            }
            __syncthreads();
        }
    }

    const int total = s.n * s.h * s.w;
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const int o = tile_o + go + i;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int pixel = tile_p + gp + j;
            if (o < s.o && pixel < total) write_output(out, bias, s, o, pixel, acc[i][j]);
        }
    }
}

// Tensor cores, FP16 storage: each FP32 bilinear sample is rounded to half once (2^-11 relative),
// products of halves are exact and summed in FP32. Output tile [OT x P] = W [OT x 32] * S [32 x P].
template <typename Tile>
__global__ void __launch_bounds__(kThreads)
    forward_tensor_cores(const __half* __restrict__ x, const __half* __restrict__ geometry,
                         const __half* __restrict__ weight, const __half* __restrict__ bias,
                         __half* __restrict__ out, Shape s) {
    using namespace nvcuda;
    constexpr int P = Tile::P, OT = Tile::OT;
    constexpr int kFragsP = P / 16;
    static_assert(kFragsP * (OT / 16) == 2 * (kThreads / 32), "two 16x16 fragments per warp");
    // Padded rows: WMMA needs 32-byte aligned fragment starts and ld a multiple of 16 bytes;
    // +16 bytes per row spreads the rows over the banks.
    constexpr int kLdS = P + 8, kLdW = OT + 8, kLdC = P + 4;
    __shared__ __align__(32) __half samples[kChunkC][kLdS];
    __shared__ __align__(32) __half weights[kChunkC][kLdW];  // [channel][output]: A column-major
    __shared__ __align__(32) float result[OT][kLdC];

    const int tile_p = blockIdx.x * P;
    const int tile_o = blockIdx.y * OT;
    const Sampler<__half, P> sampler(x, geometry, s, tile_p);
    const int warp = threadIdx.x / 32;
    const int o0 = (warp / (kFragsP / 2)) * 16;
    const int p0 = (warp % (kFragsP / 2)) * 32;

    wmma::fragment<wmma::matrix_a, 16, 16, 16, __half, wmma::col_major> a;
    wmma::fragment<wmma::matrix_b, 16, 16, 16, __half, wmma::row_major> b0, b1;
    wmma::fragment<wmma::accumulator, 16, 16, 16, float> acc0, acc1;
    wmma::fill_fragment(acc0, 0.0f);
    wmma::fill_fragment(acc1, 0.0f);

    for (int k = 0; k < s.kh * s.kw; ++k) {
        const Bilinear corners = sampler.corners(s, k);
        for (int c0 = 0; c0 < s.c; c0 += kChunkC) {
            sampler.stage(samples, s, corners, c0);
            stage_weight<__half, __half, OT>(weights, weight, s, tile_o, c0, k);
            __syncthreads();
#pragma unroll
            for (int kc = 0; kc < kChunkC; kc += 16) {
                // A(m = output, k = channel) = weights[kc + k][o0 + m]; B(k, n = pixel).
                wmma::load_matrix_sync(a, &weights[kc][o0], kLdW);
                wmma::load_matrix_sync(b0, &samples[kc][p0], kLdS);
                wmma::load_matrix_sync(b1, &samples[kc][p0 + 16], kLdS);
                wmma::mma_sync(acc0, a, b0, acc0);
                wmma::mma_sync(acc1, a, b1, acc1);
            }
            __syncthreads();
        }
    }

    wmma::store_matrix_sync(&result[o0][p0], acc0, kLdC, wmma::mem_row_major);
    wmma::store_matrix_sync(&result[o0][p0 + 16], acc1, kLdC, wmma::mem_row_major);
    __syncthreads();
    // Consecutive threads write consecutive pixels of one output channel.
    const int total = s.n * s.h * s.w;
    for (int e = threadIdx.x; e < OT * P; e += kThreads) {
        const int oo = e / P;
        const int pp = e - oo * P;
        const int o = tile_o + oo;
        const int pixel = tile_p + pp;
        if (o < s.o && pixel < total) write_output(out, bias, s, o, pixel, result[oo][pp]);
    }
}

template <typename T, typename Tile>
void launch_tile(int algo, const void* x, const void* g, const void* wt, const void* bias, void* out,
            const Shape& s, cudaStream_t stream) {
    const T* xt = static_cast<const T*>(x);
    const T* gt = static_cast<const T*>(g);
    const T* wtt = static_cast<const T*>(wt);
    const T* bt = static_cast<const T*>(bias);
    T* ot = static_cast<T*>(out);
    const dim3 grid(unsigned((s.n * s.h * s.w + Tile::P - 1) / Tile::P),
                    unsigned((s.o + Tile::OT - 1) / Tile::OT));
    if constexpr (std::is_same_v<T, __half>) {
        if (algo == BDINN_ALGO_TENSOR_CORES) {
            forward_tensor_cores<Tile><<<grid, kThreads, 0, stream>>>(xt, gt, wtt, bt, ot, s);
            return;
        }
    }
    forward_cuda_cores<T, Tile><<<grid, kThreads, 0, stream>>>(xt, gt, wtt, bt, ot, s);
}

template <typename T>
void launch(int algo, const void* x, const void* g, const void* wt, const void* bias, void* out,
            const Shape& s, cudaStream_t stream) {
    if (s.o <= TileNarrow::OT) {
        launch_tile<T, TileNarrow>(algo, x, g, wt, bias, out, s, stream);
    } else {
        launch_tile<T, TileWide>(algo, x, g, wt, bias, out, s, stream);
    }
}

}  // namespace
}  // namespace bdinn

extern "C" int bdinn_banded_deform_conv_forward_algo(int dtype, int algo, const void* x,
                                                     const void* geometry, const void* weight,
                                                     const void* bias, void* out, int n, int c, int h,
                                                     int w, int o, int kh, int kw, int dil_h,
                                                     int dil_w, cudaStream_t stream) {
    using namespace bdinn;
    if (dtype != BDINN_DTYPE_FLOAT32 && dtype != BDINN_DTYPE_FLOAT16) return BDINN_ERROR_INVALID_DTYPE;
    if (algo == BDINN_ALGO_AUTO) {
        algo = dtype == BDINN_DTYPE_FLOAT16 ? BDINN_ALGO_TENSOR_CORES : BDINN_ALGO_CUDA_CORES;
    }
    if (algo != BDINN_ALGO_CUDA_CORES &&
        !(algo == BDINN_ALGO_TENSOR_CORES && dtype == BDINN_DTYPE_FLOAT16)) {
        return BDINN_ERROR_INVALID_ALGO;
    }
    const int status = validate(x, geometry, weight, out, n, c, h, w, o, kh, kw, dil_h, dil_w);
    if (status != BDINN_SUCCESS) return status;
    static_assert(TileNarrow::P <= 128 && TileWide::P <= 128, "bdinn_extents_fit() spares 128 pixels");
    if ((int64_t(o) + TileNarrow::OT - 1) / TileNarrow::OT > 65535) return BDINN_ERROR_TOO_LARGE;  // grid.y

    const Shape s{n, c, h, w, o, kh, kw, dil_h, dil_w};
    if (dtype == BDINN_DTYPE_FLOAT32) {
        launch<float>(algo, x, geometry, weight, bias, out, s, stream);
    } else {
        launch<__half>(algo, x, geometry, weight, bias, out, s, stream);
    }
    const cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? BDINN_SUCCESS : BDINN_ERROR_CUDA + int(err);
}

extern "C" int bdinn_banded_deform_conv_forward(int dtype, const void* x, const void* geometry,
                                                const void* weight, const void* bias, void* out, int n,
                                                int c, int h, int w, int o, int kh, int kw, int dil_h,
                                                int dil_w, cudaStream_t stream) {
    return bdinn_banded_deform_conv_forward_algo(dtype, BDINN_ALGO_AUTO, x, geometry, weight, bias,
                                                 out, n, c, h, w, o, kh, kw, dil_h, dil_w, stream);
}

extern "C" const char* bdinn_error_string(int status) {
    if (status > BDINN_ERROR_CUDA) return cudaGetErrorString(cudaError_t(status - BDINN_ERROR_CUDA));
    return bdinn::status_message(status);
}
