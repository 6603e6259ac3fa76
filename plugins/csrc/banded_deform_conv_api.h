/* C ABI of the BandedDeformConv2d forward kernels (namespace bdinn, version 1).
 *
 * out[n,o,y,x] = bias[o] + sum_{c,i,j} weight[o,c,i,j] * bilinear(x[n,c], X, Y), where kernel point
 * (px, py) = ((j - (kw-1)/2) * dil_w, (i - (kh-1)/2) * dil_h) lands at
 * X = x + cos*sx*px - sin*sy*py, Y = y + sin*sx*px + cos*sy*py with (cos, sin, sx, sy) =
 * geometry[n, 0..3, y, x]; corners outside the image read as zero.
 *
 * All tensors are dense NCHW (weight [O,C,kh,kw], bias [O] or NULL), of one dtype. Sampling
 * coordinates, bilinear weights and accumulation are FP32 for both dtypes.
 *
 * libbdinn_bdconv.so (CUDA) exports the GPU entry points, libbdinn_bdconv_cpu.so the CPU build of
 * the same maths. This header needs no CUDA headers.
 */
#ifndef BDINN_BANDED_DEFORM_CONV_API_H
#define BDINN_BANDED_DEFORM_CONV_API_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The CUDA runtime's own definition, so that callers need not include it. */
typedef struct CUstream_st* cudaStream_t;

#if defined(_WIN32)
#define BDINN_API __declspec(dllexport)
#else
#define BDINN_API __attribute__((visibility("default")))
#endif

enum bdinn_dtype { BDINN_DTYPE_FLOAT32 = 0, BDINN_DTYPE_FLOAT16 = 1 };

enum bdinn_algo {
    BDINN_ALGO_AUTO = 0,        /* FP32: CUDA cores; FP16: tensor cores */
    BDINN_ALGO_CUDA_CORES = 1,  /* FP32 FMA products, both dtypes */
    BDINN_ALGO_TENSOR_CORES = 2 /* WMMA, FP16 products with FP32 accumulation; FP16 only */
};

enum bdinn_status {
    BDINN_SUCCESS = 0,
    BDINN_ERROR_INVALID_DTYPE = 1,
    BDINN_ERROR_INVALID_ALGO = 2,
    BDINN_ERROR_NULL_POINTER = 3,
    BDINN_ERROR_INVALID_SIZE = 4,     /* N, C, H, W, O, kh or kw below 1 */
    BDINN_ERROR_EVEN_KERNEL = 5,
    BDINN_ERROR_INVALID_DILATION = 6, /* below 1 */
    BDINN_ERROR_TOO_LARGE = 7,        /* beyond 32-bit pixel indices or the launch grid */
    BDINN_ERROR_OUT_OF_MEMORY = 8,    /* host memory, CPU build only (the CUDA path allocates nothing) */
    BDINN_ERROR_CUDA = 1000           /* BDINN_ERROR_CUDA + cudaError_t */
};

/* The sizes behind BDINN_ERROR_TOO_LARGE, for callers that check shapes ahead of a launch (a
 * TensorRT plugin while an engine is built): pixel and channel indices are 32-bit (with 128 to
 * spare: a tile of pixels, or the chunk of channels a kernel's loop steps past C by), and H, W and
 * the kernel's reach (kh/2 * dil_h + kw/2 * dil_w) stay below 2^24, exact in float for the
 * bilinear clamp. */
#define BDINN_MAX_EXTENT 16777216
static inline int bdinn_extents_fit(int64_t n, int64_t c, int64_t h, int64_t w, int64_t kh, int64_t kw,
                                    int64_t dil_h, int64_t dil_w) {
    /* Bounds first, then divisions: no product below can overflow (profile sizes are int64). */
    if (n < 0 || c < 0 || h < 0 || w < 0 || kh < 0 || kw < 0 || dil_h < 0 || dil_w < 0) return 0;
    if (h >= BDINN_MAX_EXTENT || w >= BDINN_MAX_EXTENT || kh >= BDINN_MAX_EXTENT || kw >= BDINN_MAX_EXTENT ||
        dil_h > INT32_MAX || dil_w > INT32_MAX) {
        return 0;
    }
    const int64_t reach = (kh / 2) * dil_h + (kw / 2) * dil_w;
    const int64_t pixels_per_image = h * w, samples = kh * kw;
    return reach < BDINN_MAX_EXTENT && (pixels_per_image == 0 || n <= (INT32_MAX - 128) / pixels_per_image) &&
           (samples == 0 || c <= (INT32_MAX - 128) / samples);
}

/* Enqueues the forward pass on `stream`; allocates nothing, does not synchronise. */
BDINN_API int bdinn_banded_deform_conv_forward(int dtype, const void* x, const void* geometry,
                                               const void* weight, const void* bias, void* out, int n,
                                               int c, int h, int w, int o, int kh, int kw, int dil_h,
                                               int dil_w, cudaStream_t stream);

/* The same with an explicit algorithm (enum bdinn_algo). */
BDINN_API int bdinn_banded_deform_conv_forward_algo(int dtype, int algo, const void* x,
                                                    const void* geometry, const void* weight,
                                                    const void* bias, void* out, int n, int c, int h,
                                                    int w, int o, int kh, int kw, int dil_h, int dil_w,
                                                    cudaStream_t stream);

/* A static, human-readable message for any status above. */
BDINN_API const char* bdinn_error_string(int status);

/* libbdinn_bdconv_cpu.so: FP32 forward on the CPU, built from the same device maths. */
BDINN_API int bdinn_banded_deform_conv_forward_cpu(const float* x, const float* geometry,
                                                   const float* weight, const float* bias, float* out,
                                                   int n, int c, int h, int w, int o, int kh, int kw,
                                                   int dil_h, int dil_w);

/* libbdinn_bdconv_cpu.so: the same messages as bdinn_error_string, minus CUDA's. */
BDINN_API const char* bdinn_cpu_error_string(int status);

#ifdef __cplusplus
}
#endif

#endif /* BDINN_BANDED_DEFORM_CONV_API_H */
