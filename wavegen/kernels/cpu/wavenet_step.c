/*
 * Fused incremental WaveNet sampling step for the CPU (the ``cpu`` backend of wavegen).
 *
 * Plain C99 plus GCC/Clang vector extensions (and <immintrin.h> FMA intrinsics where the
 * target has them); no Python or torch headers: wavegen.kernels.cpu compiles this file
 * with the system compiler and calls it through ctypes.
 *
 * One call of wg_run() runs ``n`` steps for a batch: every residual layer, the output
 * stack, the draw from the given uniforms and the feedback of the drawn sample.
 *
 * Layouts (all float32, all owned by Python):
 *   packed matrix  W [nout, nin] as [ceil(nout / VL)][nin][VL]: one contiguous stream of
 *                  nin vectors per group of VL output channels (zero padded), so a tile of
 *                  NV output vectors x NB batch items keeps NV * NB accumulators in registers
 *                  and reads each weight once per step for all NB items.
 *   conv weights   W [2G, k * R], input index j * R + c = tap j (time t - (k-1-j) d), channel c.
 *   ring buffers   per layer l: [B][len_l][R] at ring + ring_off[l], len_l = (k - 1) d_l + 1;
 *                  pos[l] is the slot of the current step's input (advanced once per step).
 *   local          [B][n][C]: upsampled local conditioning, time-major (NULL when C = 0);
 *                  its projection to the gates is part of each layer's conv matrix.
 *   global_bias    [B][L * 2G]: projected global conditioning, or NULL.
 *   uniforms       [B][n][U] or NULL (no draw: one step that only writes params).
 *
 * bf16 mode (wg_model.bf16, only where the compiler targets AVX-512 BF16: wg_has_bf16()):
 *   every matrix is packed as bf16 pairs, [ceil(nout / VL)][nin2][VL] of uint32 where lane o
 *   of pair i holds (W[o][2i], W[o][2i + 1]) (low half first) and nin2 counts the pairs of
 *   all segments, each segment padded to an even length with a zero column. A product
 *   first rounds its input segments to bf16 (round to nearest even) into one pair buffer
 *   per item, then accumulates in float32 with VDPBF16PS (32 products per instruction, half
 *   the weight bytes of float32). Biases, the residual stream and everything after the
 *   products stay float32.
 *
 * Numerics: all float32 matrix products accumulate in float32 with FMA; tanh, sigmoid and exp are
 * vectorised here (relative error ~1e-7). The draw reproduces wavegen's reference rules
 * (wavegen/nn/distributions.py): this file is compiled with -ffp-contract=off, so a * b + c
 * is never fused unless written as vfma() (the grid snapping and the continuous input
 * embedding must round exactly like the separate torch operations).
 */

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#if defined(__AVX512F__)
#define VL 16
#elif defined(__AVX__)
#define VL 8
#else
#define VL 4
#endif

#if defined(__AVX512BF16__) && VL == 16
#define HAVE_BF16 1
#else
#define HAVE_BF16 0
#endif

typedef float vf __attribute__((vector_size(VL * 4)));
typedef int32_t vi __attribute__((vector_size(VL * 4)));
/* Unaligned, aliasing-safe vector access. */
typedef float vfu __attribute__((vector_size(VL * 4), aligned(4), may_alias));

#define INLINE static inline __attribute__((always_inline))

INLINE vf vload(const float *p) { return *(const vfu *)p; }
INLINE void vstore(float *p, vf v) { *(vfu *)p = v; }
#define REP4(x) x, x, x, x
INLINE vf vsplat(float x)
{
#if VL == 16
    return (vf){REP4(x), REP4(x), REP4(x), REP4(x)};
#elif VL == 8
    return (vf){REP4(x), REP4(x)};
#else
    return (vf){REP4(x)};
#endif
}

INLINE vf vfma(vf a, vf b, vf c) /* a * b + c, fused where the target has FMA */
{
#if defined(__AVX512F__)
    return _mm512_fmadd_ps(a, b, c);
#elif defined(__FMA__) && VL == 8
    return _mm256_fmadd_ps(a, b, c);
#else
    return a * b + c;
#endif
}

INLINE vf vsel(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
INLINE vf vmax(vf a, vf b) { return vsel(a > b, a, b); }
INLINE vf vmin(vf a, vf b) { return vsel(a < b, a, b); }

/* Loads/stores of the first n (< VL allowed) floats of a vector. */
INLINE vf vload_n(const float *p, int n)
{
    if (n >= VL)
        return vload(p);
    float tmp[VL] = {0};
    memcpy(tmp, p, (size_t)n * sizeof(float));
    return vload(tmp);
}

INLINE void vstore_n(float *p, vf v, int n)
{
    if (n >= VL) {
        vstore(p, v);
        return;
    }
    float tmp[VL];
    vstore(tmp, v);
    memcpy(p, tmp, (size_t)n * sizeof(float));
}

/* ------------------------------------------------------------------ vector math */

/* exp(x), relative error below 1e-7; 0 below -87.33 (no denormals), inputs above 88.3
 * clamped there (no inf). */
INLINE vf v_exp(vf x)
{
    const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    vi underflow = x < vsplat(-87.33f);
    x = vmin(vmax(x, vsplat(-87.33f)), vsplat(88.3f));
    vf n = (x * vsplat(1.44269504088896341f) + vsplat(magic)) - vsplat(magic);
    vf r = vfma(n, vsplat(-0.693359375f), x);
    r = vfma(n, vsplat(2.12194440e-4f), r);
    vf p = vsplat(1.0f / 5040.0f);
    p = vfma(p, r, vsplat(1.0f / 720.0f));
    p = vfma(p, r, vsplat(1.0f / 120.0f));
    p = vfma(p, r, vsplat(1.0f / 24.0f));
    p = vfma(p, r, vsplat(1.0f / 6.0f));
    p = vfma(p, r, vsplat(0.5f));
    p = vfma(p, r, vsplat(1.0f));
    p = vfma(p, r, vsplat(1.0f));
    vi e = (__builtin_convertvector(n, vi) + 127) << 23;
    return (vf)(~underflow & (vi)(p * (vf)e));
}

INLINE vf v_sigmoid(vf x) { return vsplat(1.0f) / (vsplat(1.0f) + v_exp(-x)); }

/* tanh: odd Taylor polynomial below |x| = 0.5 (no cancellation near 0), else
 * 1 - 2 / (exp(2|x|) + 1); relative error ~2e-7. */
INLINE vf v_tanh(vf x)
{
    vi sign = (vi)x & (vi)vsplat(-0.0f);
    vf a = (vf)((vi)x & ~(vi)vsplat(-0.0f));
    vf big = vsplat(1.0f) - vsplat(2.0f) / (v_exp(a + a) + vsplat(1.0f));
    vf s = a * a;
    vf p = vsplat(-929569.0f / 638512875.0f);
    p = vfma(p, s, vsplat(21844.0f / 6081075.0f));
    p = vfma(p, s, vsplat(-1382.0f / 155925.0f));
    p = vfma(p, s, vsplat(62.0f / 2835.0f));
    p = vfma(p, s, vsplat(-17.0f / 315.0f));
    p = vfma(p, s, vsplat(2.0f / 15.0f));
    p = vfma(p, s, vsplat(-1.0f / 3.0f));
    p = p * s;
    vf small = vfma(p, a, a);
    vf r = vsel(a < vsplat(0.5f), small, big);
    return (vf)((vi)r | sign);
}

/* ------------------------------------------------------------------ matrix tiles */

/* A contiguous piece of a matrix product's input: len floats at x for item 0, the next
 * item's stride floats further. */
typedef struct {
    const float *x;
    ptrdiff_t stride;
    int len;
} segment;

#define MAXSEG 66

typedef struct {
    const void *w;       /* packed [nvec][nin][VL] float, or [nvec][nin2][VL] bf16 pairs */
    int nin, nout;
    int nseg;            /* nin = sum of the segments' lengths */
    const segment *segs;
    const float *bias;   /* [nvec * VL] (zero padded) */
    const float *init;   /* item 0's addend [nout] or NULL; items init_stride apart */
    ptrdiff_t init_stride;
    float *out;          /* item 0's output [nout]; items out_stride apart */
    ptrdiff_t out_stride;
    /* bf16 mode only, filled in by matmul_bf16: item 0's input as bf16 pairs [nin2],
     * items xh_stride pairs apart. */
    const uint32_t *xh;
    ptrdiff_t xh_stride;
    int nin2;
} mm_args;

/* A tile's accumulators: bias (+ the item's addend ``init``) per output vector and item. */
#define TILE_START(NV, NB)                                                                   \
    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                     \
    {                                                                                        \
        int o = (v0 + v) * VL;                                                               \
        vf bias = vload(a->bias + o);                                                        \
        _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++)                                 \
            acc[b * NV + v] = a->init                                                        \
                ? bias + vload_n(a->init + b * a->init_stride + o, a->nout - o) : bias;      \
    }

/* A tile's accumulators stored to the items' outputs (the last vector may be partial). */
#define TILE_FINISH(NV, NB)                                                                  \
    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                                     \
    {                                                                                        \
        int o = (v0 + v) * VL;                                                               \
        _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++)                                 \
            vstore_n(a->out + b * a->out_stride + o, acc[b * NV + v], a->nout - o);          \
    }

/*
 * One register tile: output vectors v0 .. v0 + NV - 1 for NB items,
 *   out[b][o] = bias[o] + init[b][o] + sum_i W[o][i] x_b[i],
 * the input x_b being the concatenation of the segments (segs[s].x + b * segs[s].stride,
 * segs[s].len floats each). Each weight vector is loaded once and used for all NB items. NV and NB are
 * literals, so the loops unroll and the NV * NB accumulators stay in registers.
 */
#define TILE_FN(NV, NB)                                                                      \
    static void tile_##NV##_##NB(const mm_args *a, int v0)                                   \
    {                                                                                        \
        vf acc[NV * NB];                                                                     \
        const size_t vstride = (size_t)a->nin * VL;                                          \
        TILE_START(NV, NB)                                                                   \
        const float *w = (const float *)a->w + (size_t)v0 * vstride;                         \
        for (int s = 0; s < a->nseg; s++) {                                                  \
            const float *x = a->segs[s].x;                                                   \
            const ptrdiff_t xstride = a->segs[s].stride;                                     \
            const int seglen = a->segs[s].len;                                               \
            for (int i = 0; i < seglen; i++, w += VL) {                                      \
                vf wv[NV];                                                                   \
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                         \
                    wv[v] = vload(w + v * vstride);                                          \
                _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++)                         \
                {                                                                            \
                    vf xv = vsplat(x[b * xstride + i]);                                      \
                    _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                     \
                        acc[b * NV + v] = vfma(wv[v], xv, acc[b * NV + v]);                  \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
        TILE_FINISH(NV, NB)                                                                  \
    }

typedef void (*tile_fn)(const mm_args *, int);

/* The widest tile (output vectors) for NB items: NB * NV accumulators plus NV weights must
 * fit the register file (32 vector registers with AVX-512, 16 otherwise). */
#if VL == 16
#define NBMAX 8
static const int nv_for_nb[NBMAX + 1] = {0, 8, 6, 6, 5, 4, 3, 3, 3};
/* Every tile function F(NV, NB) the table below names, and the table of prefix P. */
#define F3(F, NB) F(1, NB) F(2, NB) F(3, NB)
#define F4(F, NB) F3(F, NB) F(4, NB)
#define F5(F, NB) F4(F, NB) F(5, NB)
#define F6(F, NB) F5(F, NB) F(6, NB)
#define F8(F, NB) F6(F, NB) F(7, NB) F(8, NB)
#define DEFINE_TILES(F) F8(F, 1) F6(F, 2) F6(F, 3) F5(F, 4) F4(F, 5) F3(F, 6) F3(F, 7) F3(F, 8)
#define R3(P, NB) P##_1_##NB, P##_2_##NB, P##_3_##NB
#define R4(P, NB) R3(P, NB), P##_4_##NB
#define R5(P, NB) R4(P, NB), P##_5_##NB
#define R6(P, NB) R5(P, NB), P##_6_##NB
#define R8(P, NB) R6(P, NB), P##_7_##NB, P##_8_##NB
#define TILE_TABLE(P) {{R8(P, 1)}, {R6(P, 2)}, {R6(P, 3)}, {R5(P, 4)}, \
                       {R4(P, 5)}, {R3(P, 6)}, {R3(P, 7)}, {R3(P, 8)}}
DEFINE_TILES(TILE_FN)
static const tile_fn tiles[NBMAX][8] = TILE_TABLE(tile);
#else
#define NBMAX 4
static const int nv_for_nb[NBMAX + 1] = {0, 4, 4, 3, 2};
#define T2(NB) TILE_FN(1, NB) TILE_FN(2, NB)
#define T3(NB) T2(NB) TILE_FN(3, NB)
#define T4(NB) T3(NB) TILE_FN(4, NB)
T4(1) T4(2) T3(3) T2(4)
#define R2(NB) tile_1_##NB, tile_2_##NB
#define R3(NB) R2(NB), tile_3_##NB
#define R4(NB) R3(NB), tile_4_##NB
static const tile_fn tiles[NBMAX][8] = {{R4(1)}, {R4(2)}, {R3(3)}, {R2(4)}};
#endif

#if HAVE_BF16
/*
 * The bf16 tile: as TILE_FN, reading the input as bf16 pairs (a->xh) and the weights as
 * bf16 pairs, one VDPBF16PS per weight vector and item: acc += W[o][2i] x[2i] +
 * W[o][2i+1] x[2i+1] (the products of two bf16 numbers are exact in float32).
 */
#define TILE_BF16_FN(NV, NB)                                                                 \
    static void tileh_##NV##_##NB(const mm_args *a, int v0)                                  \
    {                                                                                        \
        vf acc[NV * NB];                                                                     \
        const size_t vstride = (size_t)a->nin2 * VL;                                         \
        TILE_START(NV, NB)                                                                   \
        const uint32_t *w = (const uint32_t *)a->w + (size_t)v0 * vstride;                   \
        const uint32_t *x = a->xh;                                                           \
        const ptrdiff_t xstride = a->xh_stride;                                              \
        for (int i = 0; i < a->nin2; i++, w += VL) {                                         \
            __m512bh wv[NV];                                                                 \
            _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                             \
                wv[v] = (__m512bh)_mm512_loadu_si512((const void *)(w + v * vstride));       \
            _Pragma("GCC unroll 8") for (int b = 0; b < NB; b++)                             \
            {                                                                                \
                __m512bh xv = (__m512bh)_mm512_set1_epi32((int)x[b * xstride + i]);          \
                _Pragma("GCC unroll 8") for (int v = 0; v < NV; v++)                         \
                    acc[b * NV + v] = (vf)_mm512_dpbf16_ps((__m512)acc[b * NV + v], wv[v], xv); \
            }                                                                                \
        }                                                                                    \
        TILE_FINISH(NV, NB)                                                                  \
    }
DEFINE_TILES(TILE_BF16_FN)
static const tile_fn tiles_bf16[NBMAX][8] = TILE_TABLE(tileh);
#endif

/* out[b] = bias + init[b] + W x[b] for nb items, output vectors [vbeg, vend), by the
 * tiles of ``table`` (float32 or bf16). */
static void matmul_range(const mm_args *a, int nb, int vbeg, int vend,
                         const tile_fn (*table)[8])
{
    int blocks = (nb + NBMAX - 1) / NBMAX;
    int b0 = 0;
    for (int blk = 0; blk < blocks; blk++) {
        int bb = (nb - b0) / (blocks - blk);  /* balanced item blocks */
        mm_args s = *a;
        segment segs[MAXSEG];
        for (int i = 0; i < a->nseg; i++) {
            segs[i] = a->segs[i];
            segs[i].x += b0 * segs[i].stride;
        }
        s.segs = segs;
        if (s.init)
            s.init += b0 * a->init_stride;
        s.out += b0 * a->out_stride;
        if (s.xh)
            s.xh += b0 * a->xh_stride;
        /* As few tiles as the register file allows, of near-equal widths. */
        int ntiles = (vend - vbeg + nv_for_nb[bb] - 1) / nv_for_nb[bb];
        for (int tile = 0, v0 = vbeg; tile < ntiles; tile++) {
            int nv = (vend - v0) / (ntiles - tile);
            table[bb - 1][nv - 1](&s, v0);
            v0 += nv;
        }
        b0 += bb;
    }
}

static void matmul(const mm_args *a, int nb)
{
    matmul_range(a, nb, 0, (a->nout + VL - 1) / VL, tiles);
}

/* Pairs of bf16 numbers a segment list packs into: each segment rounded up to even. */
static int bf16_pairs(const segment *segs, int nseg)
{
    int n = 0;
    for (int s = 0; s < nseg; s++)
        n += (segs[s].len + 1) / 2;
    return n;
}

#if HAVE_BF16
/* The bf16 product: rounds each item's input segments into pairs at xh ([nb][nin2]),
 * then runs the bf16 tiles over them. */
static void matmul_bf16(const mm_args *a, int nb, uint32_t *xh)
{
    const int nin2 = bf16_pairs(a->segs, a->nseg);
    for (int b = 0; b < nb; b++) {
        uint16_t *dst = (uint16_t *)(xh + (size_t)b * nin2);
        for (int s = 0; s < a->nseg; s++) {
            const float *x = a->segs[s].x + b * a->segs[s].stride;
            const int len = a->segs[s].len;
            for (int i = 0; i < len; i += VL) {  /* VCVTNEPS2BF16: nearest even */
                __m256bh h = _mm512_cvtneps_pbh((__m512)vload_n(x + i, len - i));
                if (len - i >= VL)
                    _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)h);
                else
                    memcpy(dst + i, &h, (size_t)(len - i) * 2);
            }
            if (len & 1)
                dst[len] = 0;
            dst += len + (len & 1);
        }
    }
    mm_args s = *a;
    s.xh = xh;
    s.xh_stride = nin2;
    s.nin2 = nin2;
    matmul_range(&s, nb, 0, (a->nout + VL - 1) / VL, tiles_bf16);
}
#endif

/* The product in the model's precision; xh: bf16 scratch of the running thread. */
static void matmul_model(const mm_args *a, int nb, int bf16, uint32_t *xh)
{
#if HAVE_BF16
    if (bf16) {
        matmul_bf16(a, nb, xh);
        return;
    }
#endif
    (void)bf16;
    (void)xh;
    matmul(a, nb);
}

/* ------------------------------------------------------------------ model */

enum { HEAD_CATEGORICAL = 0, HEAD_MOL = 1 };

/* Mirrored by ctypes in wavegen/kernels/cpu/__init__.py: int64 and pointers only. */
typedef struct {
    int64_t layers, R, G, S, P, k;
    int64_t C;             /* local conditioning channels (0: none) */
    int64_t head;          /* HEAD_CATEGORICAL or HEAD_MOL */
    int64_t mixtures;      /* MoL components M (P = 3M) */
    int64_t bins;          /* MoL grid levels */
    int64_t bf16;          /* 1: the matrices are bf16 pairs (see the top of this file) */
    double log_scale_min;
    const int64_t *dilation;   /* [layers] */
    const int64_t *ring_len;   /* [layers] */
    const int64_t *ring_off;   /* [layers] float offsets of each layer's [B][len][R] block */
    const float *const *conv_w;  /* packed [2G, k R + C] per layer (taps, then local proj.) */
    const float *const *conv_b;  /* [2G] padded */
    const float *const *res_w;   /* packed [R, G] (NULL for the last layer) */
    const float *const *res_b;
    const float *const *skip_w;  /* packed [S, G] */
    const float *const *skip_b;
    const float *out1_w, *out1_b;  /* packed [S, S] */
    const float *out2_w, *out2_b;  /* packed [P, S] */
    const float *embed;          /* categorical: [K][R]; MoL: [2][R] (weight, bias) */
} wg_model;

int wg_vector_width(void) { return VL; }

int wg_abi_version(void) { return 3; }

/* 1 when this build has the bf16 mode (the compiler targets AVX-512 BF16: -march=native on
 * a CPU that has it). */
int wg_has_bf16(void) { return HAVE_BF16; }

static size_t rup(size_t n) { return (n + VL - 1) / VL * VL; }

/* ------------------------------------------------------------------ draws */

/* Index of the first largest of x[0..n) (the draw at temperature 0). */
static int argmax(const float *x, int n)
{
    int best = 0;
    for (int k = 1; k < n; k++)
        if (x[k] > x[best])
            best = k;
    return best;
}

/* out[k] = x[k] / temperature (in place when out == x); returns the largest out[k]. */
static float temper(const float *x, float *out, int n, double temperature)
{
    float t = (float)temperature;
    float mz = -INFINITY;
    for (int k = 0; k < n; k++) {
        out[k] = x[k] / t;
        mz = out[k] > mz ? out[k] : mz;
    }
    return mz;
}

/* The class whose cumulative weight first exceeds u * total: cdf[0..n) is the running sum
 * of unnormalised weights; counts the entries <= the threshold (reference rule). */
static int inverse_cdf(const float *cdf, int n, float u)
{
    float threshold = u * cdf[n - 1];
    int count = 0;
    for (int k = 0; k < n; k++)
        count += cdf[k] <= threshold;
    return count < n ? count : n - 1;
}

static int64_t draw_tempered(float *work, int K, float u, double temperature);

/* Categorical (reference: log_softmax, / T, inverse-CDF with a float64 running sum).
 * With diag non-NULL, adds the typicality diagnostic of this step to diag[0] (the NLL of
 * the drawn class) and diag[1] (the entropy), both under the untempered distribution, as
 * wavegen.sampling.Draw reports them: by-products of the log-softmax the draw computes. */
static int64_t draw_categorical(const float *p, int K, float u, double temperature,
                                float *work, double *diag)
{
    float m = p[0];
    for (int k = 1; k < K; k++)
        m = p[k] > m ? p[k] : m;
    float sum = 0.0f;
    int kv = K / VL * VL;
    vf vs = vsplat(0.0f);
    for (int k = 0; k < kv; k += VL)
        vs += v_exp(vload(p + k) - vsplat(m));
    for (int i = 0; i < VL; i++)
        sum += vs[i];
    for (int k = kv; k < K; k++)
        sum += v_exp(vsplat(p[k] - m))[0];
    float logsum = logf(sum);
    for (int k = 0; k < K; k++)
        work[k] = (p[k] - m) - logsum;
    if (diag) {
        vf ve = vsplat(0.0f);
        for (int k = 0; k < kv; k += VL) {
            vf w = vload(work + k);
            ve += v_exp(w) * w;
        }
        double entropy = 0.0;
        for (int i = 0; i < VL; i++)
            entropy -= (double)ve[i];
        for (int k = kv; k < K; k++)
            entropy -= (double)(v_exp(vsplat(work[k]))[0] * work[k]);
        diag[1] += entropy;
    }
    int64_t c;
    if (temperature == 0.0) {
        c = argmax(work, K);
    } else {
        c = draw_tempered(work, K, u, temperature);
    }
    if (diag)
        diag[0] -= (double)((p[c] - m) - logsum);
    return c;
}

/* The tempered inverse-CDF draw from log-probabilities work[0..K) (overwritten). */
static int64_t draw_tempered(float *work, int K, float u, double temperature)
{
    int kv = K / VL * VL;
    float mz = temper(work, work, K, temperature);
    for (int k = 0; k < kv; k += VL)
        vstore(work + k, v_exp(vload(work + k) - vsplat(mz)));
    for (int k = kv; k < K; k++)
        work[k] = v_exp(vsplat(work[k] - mz))[0];
    double run = 0.0;
    for (int k = 0; k < K; k++) {
        run += (double)work[k];
        work[k] = (float)run;
    }
    return inverse_cdf(work, K, u);
}

/* Component choice of the mixture: the categorical rule on the raw mixture logits. */
static int draw_component(const float *logits, int M, float u, double temperature, float *work)
{
    if (temperature == 0.0)
        return argmax(logits, M);
    float mz = temper(logits, work, M, temperature);
    double run = 0.0;
    for (int k = 0; k < M; k++) {
        run += (double)expf(work[k] - mz);
        work[k] = (float)run;
    }
    return inverse_cdf(work, M, u);
}

static float draw_mol(const float *p, int M, int64_t bins, float log_scale_min, float u0,
                      float u1, double temperature, float *work)
{
    int c = draw_component(p, M, u0, temperature, work);
    float x = p[M + c];
    if (temperature > 0.0) {
        float log_scale = p[2 * M + c] < log_scale_min ? log_scale_min : p[2 * M + c];
        float scale = (float)temperature * expf(log_scale);
        float logistic = logf(u1) - log1pf(-u1);
        float step = scale * logistic;
        x = x + step;
    }
    double xd = (double)x;
    xd = xd < -1.0 ? -1.0 : (xd > 1.0 ? 1.0 : xd);
    double index = nearbyint((xd + 1.0) * ((double)(bins - 1) / 2.0));
    float value = (float)index * (float)(2.0 / (double)(bins - 1));
    return value - 1.0f;
}

/* Continuous heads' input: value * w + b, rounded twice like the torch expression. */
static void embed_value(const float *embed, int R, float v, float *out)
{
    const float *w = embed, *bias = embed + R;
    for (int r = 0; r < R; r++) {
        float prod = v * w[r];
        out[r] = prod + bias[r];
    }
}

/* The draw alone, from given params [B][P] and uniforms [B][U] (for the tests). */
int wg_draw(const wg_model *m, const float *params, const float *uniforms, int64_t batch,
            double temperature, int64_t *classes_out, float *values_out)
{
    const int P = (int)m->P, U = m->head == HEAD_MOL ? 2 : 1;
    float *work = (float *)calloc(rup(P) + VL, sizeof(float));
    if (!work)
        return 1;
    for (int64_t b = 0; b < batch; b++) {
        const float *p = params + b * P, *u = uniforms + b * U;
        if (m->head == HEAD_CATEGORICAL)
            classes_out[b] = draw_categorical(p, P, u[0], temperature, work, NULL);
        else
            values_out[b] = draw_mol(p, (int)m->mixtures, m->bins, (float)m->log_scale_min,
                                     u[0], u[1], temperature, work);
    }
    free(work);
    return 0;
}

/* ------------------------------------------------------------------ the step loop */

/* Runs items [b0, b1) for n steps (one thread's share). */
static int run_items(const wg_model *m, float *ring, const int64_t *pos0, int64_t b0,
                     int64_t b1, int64_t n, const float *first_input, const float *local,
                     const float *global_bias,
                     const float *uniforms, double temperature,
                     int64_t *classes_out, float *values_out, float *params_out,
                     double *diag_out)
{
    const int L = (int)m->layers, R = (int)m->R, G = (int)m->G, S = (int)m->S;
    const int P = (int)m->P, k = (int)m->k;
    const int nb = (int)(b1 - b0);
    const int C = (int)m->C;
    const ptrdiff_t gw = (ptrdiff_t)L * 2 * G;  /* global_bias width */
    const int U = m->head == HEAD_MOL ? 2 : 1;
    const size_t G2p = rup(2 * (size_t)G), Gp = rup(G), Sp = rup(S), Pp = rup(P);
    size_t floats = nb * (G2p + Gp + 2 * Sp + Pp) + Pp + 4 * VL;
    float *scratch = (float *)calloc(floats, sizeof(float));
    int64_t *pos = (int64_t *)malloc(L * sizeof(int64_t));
    /* bf16 inputs of a product: the widest input is the conv's (k taps + the local
     * features), the skip / residual's (G) or the output stack's (S). */
    const int bf16 = (int)m->bf16;
    size_t widest = (size_t)k * ((R + 1) / 2) + (C + 1) / 2;
    widest = widest > (size_t)(G + 1) / 2 ? widest : (size_t)(G + 1) / 2;
    widest = widest > (size_t)(S + 1) / 2 ? widest : (size_t)(S + 1) / 2;
    uint32_t *xh = bf16 ? (uint32_t *)malloc(nb * widest * sizeof(uint32_t)) : NULL;
    if (!scratch || !pos || (bf16 && !xh)) {
        free(scratch);
        free(pos);
        free(xh);
        return 1;
    }
    float *h = scratch, *z = h + nb * G2p, *skip = z + nb * Gp, *h1 = skip + nb * Sp;
    float *params = h1 + nb * Sp, *work = params + nb * Pp;
    memcpy(pos, pos0, L * sizeof(int64_t));

    /* Pointer to item b's (absolute index) slot in layer l's ring. */
#define RING(l, b, slot) (ring + m->ring_off[l] + ((b) * m->ring_len[l] + (slot)) * R)

    if (first_input)
        for (int64_t b = b0; b < b1; b++)
            memcpy(RING(0, b, pos[0]), first_input + b * R, R * sizeof(float));

    for (int64_t t = 0; t < n; t++) {
        for (int l = 0; l < L; l++) {
            const int64_t len = m->ring_len[l], d = m->dilation[l];
            const int64_t cur = pos[l];
            segment segs[MAXSEG];
            for (int j = 0; j < k; j++) {
                int64_t slot = (cur - (int64_t)(k - 1 - j) * d) % len;
                segs[j].x = RING(l, b0, slot < 0 ? slot + len : slot);
                segs[j].stride = (ptrdiff_t)len * R;
                segs[j].len = R;
            }
            if (C > 0) {  /* the local projection: more input columns of the conv */
                segs[k].x = local + (b0 * n + t) * C;
                segs[k].stride = n * C;
                segs[k].len = C;
            }
            mm_args conv = {m->conv_w[l], k * R + C, 2 * G, k + (C > 0), segs, m->conv_b[l],
                            global_bias ? global_bias + b0 * gw + (ptrdiff_t)l * 2 * G : NULL,
                            gw, h, (ptrdiff_t)G2p};
            matmul_model(&conv, nb, bf16, xh);
            for (int b = 0; b < nb; b++) {
                float *hb = h + b * G2p, *zb = z + b * Gp;
                for (int g = 0; g < G; g += VL) {
                    int cnt = G - g;
                    vf a = vload_n(hb + g, cnt), s = vload_n(hb + G + g, cnt);
                    vstore(zb + g, v_tanh(a) * v_sigmoid(s));
                }
            }
            const segment zs[1] = {{z, (ptrdiff_t)Gp, G}};
            if (l + 1 < L) {
                mm_args res = {m->res_w[l], G, R, 1, zs, m->res_b[l],
                               RING(l, b0, cur), (ptrdiff_t)len * R,
                               RING(l + 1, b0, pos[l + 1]), (ptrdiff_t)m->ring_len[l + 1] * R};
                matmul_model(&res, nb, bf16, xh);
            }
            mm_args sk = {m->skip_w[l], G, S, 1, zs, m->skip_b[l],
                          l == 0 ? NULL : skip, (ptrdiff_t)Sp, skip, (ptrdiff_t)Sp};
            matmul_model(&sk, nb, bf16, xh);
            pos[l] = cur + 1 == len ? 0 : cur + 1;
        }
        /* Output stack: params = out2(relu(out1(relu(skip)))). */
        for (size_t i = 0; i < nb * Sp; i += VL)
            vstore(skip + i, vmax(vload(skip + i), vsplat(0.0f)));
        const segment ss[1] = {{skip, (ptrdiff_t)Sp, S}};
        mm_args o1 = {m->out1_w, S, S, 1, ss, m->out1_b, NULL, 0, h1,
                      (ptrdiff_t)Sp};
        matmul_model(&o1, nb, bf16, xh);
        for (size_t i = 0; i < nb * Sp; i += VL)
            vstore(h1 + i, vmax(vload(h1 + i), vsplat(0.0f)));
        const segment hs[1] = {{h1, (ptrdiff_t)Sp, S}};
        mm_args o2 = {m->out2_w, S, P, 1, hs, m->out2_b, NULL, 0, params,
                      (ptrdiff_t)Pp};
        matmul_model(&o2, nb, bf16, xh);

        for (int b = 0; b < nb; b++) {
            const int64_t item = b0 + b;
            const float *pb = params + b * Pp;
            if (params_out)
                memcpy(params_out + (item * n + t) * P, pb, P * sizeof(float));
            if (!uniforms)
                continue;
            const float *u = uniforms + (item * n + t) * U;
            float *next = RING(0, item, pos[0]);
            if (m->head == HEAD_CATEGORICAL) {
                int64_t c = draw_categorical(pb, P, u[0], temperature, work,
                                             diag_out ? diag_out + 2 * item : NULL);
                classes_out[item * n + t] = c;
                memcpy(next, m->embed + c * R, R * sizeof(float));
            } else {
                float v = draw_mol(pb, (int)m->mixtures, m->bins, (float)m->log_scale_min,
                                   u[0], u[1], temperature, work);
                values_out[item * n + t] = v;
                embed_value(m->embed, R, v, next);
            }
        }
    }
#undef RING
    free(scratch);
    free(pos);
    free(xh);
    return 0;
}

/*
 * Runs n steps for batch items 0..batch-1. first_input [B][R] is the embedded input of the
 * first step, written into layer 0's ring (NULL: it is there already, as after a call that
 * drew and fed back its last sample). With uniforms == NULL only the parameters of one step
 * are computed (n must be 1). pos[l] is advanced by n. diag_out [B][2] (or NULL; the
 * categorical head only) accumulates each item's summed NLL and entropy of the drawn
 * samples (see draw_categorical). Returns 0, or nonzero when out of memory or given
 * invalid sizes.
 */
int wg_run(const wg_model *m, float *ring, int64_t *pos, int64_t batch, int64_t n,
           const float *first_input, const float *local, const float *global_bias,
           const float *uniforms, double temperature, int64_t *classes_out,
           float *values_out, float *params_out, double *diag_out, int64_t threads)
{
    if (batch < 1 || n < 1 || m->k < 1 || m->k > MAXSEG - 1 || (!uniforms && n != 1)
        || (m->C > 0 && !local) || (m->bf16 && !HAVE_BF16))
        return 2;
    if (threads < 1)
        threads = 1;
    if (threads > batch)
        threads = batch;
    int status = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads((int)threads) reduction(| : status)
    {
        int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
#else
    {
        int64_t nt = 1, id = 0;
#endif
        int64_t b0 = batch * id / nt, b1 = batch * (id + 1) / nt;
        if (b1 > b0)
            status |= run_items(m, ring, pos, b0, b1, n, first_input, local, global_bias,
                                uniforms, temperature, classes_out, values_out, params_out,
                                diag_out);
    }
    if (status)
        return 1;
    for (int64_t l = 0; l < m->layers; l++)
        pos[l] = (pos[l] + n) % m->ring_len[l];
    return 0;
}

/* The vector math on an array (for the tests): which = 0 exp, 1 tanh, 2 sigmoid. */
void wg_vector_math(int which, const float *x, float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i += VL) {
        int cnt = n - i < VL ? (int)(n - i) : VL;
        vf v = vload_n(x + i, cnt);
        vf r = which == 0 ? v_exp(v) : (which == 1 ? v_tanh(v) : v_sigmoid(v));
        vstore_n(y + i, r, cnt);
    }
}
