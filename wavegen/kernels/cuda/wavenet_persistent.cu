/*
 * Persistent CUDA kernel for incremental WaveNet sampling (the ``cuda`` backend of wavegen).
 *
 * One cooperative launch runs ``n_steps`` sampling steps for a whole batch: every residual
 * layer, the output stack, the draw from pre-drawn uniforms and the feedback of the drawn
 * sample. The design (grid split, barrier, memory ordering, fused residual) is documented in
 * wavegen/kernels/cuda/__init__.py; the layouts are documented at WgpArgs below.
 *
 * Header-light on purpose: only the CUDA runtime and the fp16/bf16 headers, no torch. The
 * torch binding (wavenet_persistent_binding.cpp) passes plain integer and pointer arrays in
 * the orders of WgpMeta and WgpPtr (mirrored by META_FIELDS / PTR_FIELDS in
 * wavegen/kernels/cuda/__init__.py; a test checks that they agree).
 *
 * With -DWGP_EMULATE the same source compiles as host C++ against a small emulation layer
 * (one OS thread per CUDA thread; see tests/kernels/test_kernels_cuda.py), so the kernel's logic can
 * be tested on a machine without a GPU. Nothing in the kernel may therefore rely on static
 * __shared__ variables, warp-synchronous code without *_sync intrinsics, or device-only
 * libraries.
 *
 * Numerics: matrix products accumulate in float32 (fmaf) whatever the weight storage type
 * (float, bf16 or fp16); the draw follows wavegen.nn.distributions / sampling.Draw
 * operation by operation with explicitly rounded intrinsics (__fmul_rn, __fadd_rn, ...) so
 * that no multiply-add is contracted where torch rounds twice, and divides by the
 * temperature as torch does on CUDA (multiplication by the float reciprocal).
 */

#ifndef WGP_EMULATE
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#endif
#include <stdint.h>
#include <math.h>

/* What a spinning thread does between polls of the barrier (the emulation yields). */
#ifndef WGP_SPIN_PAUSE
#define WGP_SPIN_PAUSE() ((void)0)
#endif

/* ------------------------------------------------------------------ argument layout */

/* Integer arguments, in this order (int64 each). */
enum WgpMeta {
    M_B, M_R, M_G, M_S, M_P, M_K, M_L, M_HEAD, M_MIX, M_BINS, M_NSTEPS, M_DRAW, M_BT,
    M_RESIDENT, M_STEP0, M_STAGE_OFF, M_STAGE_STRIDE, M_ACC_OFF, M_SKACC_OFF, M_PREV_OFF,
    M_WTYPE, M_COUNT
};

/* Pointer arguments, in this order (NULL where unused). */
enum WgpPtr {
    P_DIL, P_RING_OFF, P_WOFS, P_BOFS, P_WBLOB, P_BBLOB, P_EMBED, P_RING, P_ZBUF, P_HBUF,
    P_H2BUF, P_PBUF, P_SKACC, P_COND, P_UNIFORMS, P_PREV, P_SAMPLES, P_PARAMS, P_BAR, P_COUNT
};

/*
 * Sizes: B batch, R residual, G gate (per branch), S skip, P head parameters, K taps of the
 * dilated convolutions (>= 2), L layers; head 0 = categorical (P classes), 1 = mixture of
 * logistics (M components, P = 3M, grid of ``bins`` levels).
 *
 * Per-CTA ownership (CTA c of n, split(N) = [c N / n, (c + 1) N / n)):
 *   gate pairs gp = split(G) (conv rows i and G + i), residual rows rr = split(R),
 *   skip rows sr = split(S), out1 rows o1 = split(S), out2 rows o2 = split(P).
 * Weight blob of CTA c (type T, at wofs[c], padded to 16 bytes), in the order of use:
 *   layer 0:    conv rows [2np][K R]         columns [W[K-1] | W[0] | ... | W[K-2]]
 *   layer l>=1: conv rows [2np][K R + G]     columns [W[K-1] | F_l | W[0] | ... | W[K-2]]
 *               res rows  [nr][G]            res_w of layer l - 1
 *               skip rows [ns][G]            skip_w of layer l - 1
 *   head:       skip rows [ns][G] of layer L - 1, out1 rows [no1][S], out2 rows [no2][S]
 *   (conv rows: the np tanh rows of the owned pairs, then their np sigmoid rows;
 *    F_l = W_l[K-1] res_w_{l-1}, the residual of layer l - 1 folded into layer l's conv.)
 * Bias blob of CTA c (float, at bofs[c], padded to 16 bytes):
 *   layer 0: conv [2np]; layer l >= 1: conv [2np] (+ W_l[K-1] res_b_{l-1}), res [nr];
 *   head: sum over layers of skip_b [ns], out1 [no1], out2 [no2].
 * Global state (float):
 *   ring   layer l at ring_off[l]: [B][len_l][R], len_l = (K - 1) dil[l] + 1; step s (global
 *          step counter, step0 + i) writes layer l's input to slot (s + len_l - 1) % len_l.
 *   zbuf   [2][B][G]: gate outputs of layer l in half l % 2.
 *   hbuf, h2buf [B][S]: relu(sum of skips), relu(out1); pbuf [B][P]: head parameters.
 *   skacc  [B][S]: skip accumulators when they do not fit in shared memory.
 *   cond   [B][n_steps][L 2G] or NULL; uniforms [B][n_steps][1 or 2] (NULL without draw).
 *   prev   [B] int64 classes or float values (input of the first step).
 *   samples [B][n_steps] int64 or float; params_out [B][n_steps][P] or NULL.
 *   bar    [2] unsigned: arrival counter (0 between barriers), generation.
 * Shared memory: [weights | biases] (resident only) at 0, then stage [bt][stage_stride],
 * acc [rows][bt], skacc [ns][B] (if skacc_off >= 0), prev [B] at the given byte offsets.
 */
struct WgpArgs {
    int B, R, G, S, P, K, L, head, M, bins, n_steps, draw, bt, resident;
    long long step0;
    long long stage_off, stage_stride, acc_off, skacc_off, prev_off;
    float temperature, log_scale_min;
    const int *dil;
    const long long *ring_off, *wofs, *bofs;
    const void *wblob;
    const float *bblob, *embed;
    float *ring, *zbuf, *hbuf, *h2buf, *pbuf, *skacc_g;
    const float *cond, *uniforms;
    const void *prev_in;
    void *samples;
    float *params_out;
    unsigned int *bar;
};

#define WGP_THREADS 256
#define WGP_FULL 0xffffffffu

/* ------------------------------------------------------------------ small helpers */

__host__ __device__ __forceinline__ int wgp_split(int total, int parts, int index)
{
    return (int)(((long long)total * index) / parts);
}

__device__ __forceinline__ float wgp_ldw(const float *p) { return *p; }
__device__ __forceinline__ float wgp_ldw(const __half *p) { return __half2float(*p); }
__device__ __forceinline__ float wgp_ldw(const __nv_bfloat16 *p) { return __bfloat162float(*p); }

/* Loads of data other CTAs wrote during this launch: cache in L2 only (ld.global.cg), never
 * through the non-coherent read-only path. */
__device__ __forceinline__ float wgp_ldg_shared(const float *p) { return __ldcg(p); }

__device__ __forceinline__ float wgp_warp_max(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(WGP_FULL, v, o));
    return v;
}

__device__ __forceinline__ float wgp_warp_sum(float v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(WGP_FULL, v, o);
    return v;
}

__device__ __forceinline__ int wgp_warp_sum_int(int v)
{
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(WGP_FULL, v, o);
    return v;
}

__device__ __forceinline__ int wgp_warp_min_int(int v)
{
    for (int o = 16; o > 0; o >>= 1) {
        const int other = __shfl_xor_sync(WGP_FULL, v, o);
        v = other < v ? other : v;
    }
    return v;
}

/* ------------------------------------------------------------------ grid barrier
 *
 * Sense-reversal barrier on two words: bar[0] counts arrivals, bar[1] is the generation.
 * Thread 0 of each CTA arrives (after a CTA barrier, so it acts for all its threads); the
 * last to arrive resets the counter and publishes generation + 1; the others spin on the
 * generation. Memory ordering (PTX memory model, scope gpu):
 *  - every thread's writes before the barrier are ordered before thread 0's arrival by
 *    bar.sync (CTA-scope synchronisation) and the fence.sc.gpu of __threadfence();
 *  - the arrival is an acq_rel RMW: RMWs on the counter form a release sequence, so the
 *    last arriver's RMW synchronises with every earlier arrival;
 *  - the last arriver's st.release of the new generation synchronises with each waiter's
 *    ld.acquire that reads it; the waiter's bar.sync then extends that to its CTA.
 * Hence all writes before barrier k happen before all reads after barrier k, in every CTA.
 * The counter reset (relaxed) is ordered before the release of the generation, so no CTA
 * can arrive at barrier k + 1 before the counter is back to 0. Reads of data written in the
 * same launch use ld.global.cg (L2, coherent), never ld.global.nc.
 */
__device__ __forceinline__ unsigned wgp_ld_acquire(const unsigned *p)
{
#ifdef WGP_EMULATE
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
#else
    unsigned v;
    asm volatile("ld.acquire.gpu.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
#endif
}

__device__ __forceinline__ void wgp_st_release(unsigned *p, unsigned v)
{
#ifdef WGP_EMULATE
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
#else
    asm volatile("st.release.gpu.u32 [%0], %1;" : : "l"(p), "r"(v) : "memory");
#endif
}

__device__ __forceinline__ unsigned wgp_atom_add_acq_rel(unsigned *p, unsigned v)
{
#ifdef WGP_EMULATE
    return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
#else
    unsigned old;
    asm volatile("atom.acq_rel.gpu.add.u32 %0, [%1], %2;" : "=r"(old) : "l"(p), "r"(v) : "memory");
    return old;
#endif
}

__device__ __forceinline__ void wgp_grid_sync(unsigned *bar, unsigned nblocks, unsigned &gen)
{
    __syncthreads();
    if (threadIdx.x == 0) {
        __threadfence();
        const unsigned arrived = wgp_atom_add_acq_rel(bar, 1u);
        if (arrived == nblocks - 1u) {
            atomicExch(bar, 0u);
            wgp_st_release(bar + 1, gen + 1u);
        } else {
            while (wgp_ld_acquire(bar + 1) == gen) {
                WGP_SPIN_PAUSE();
            }
        }
        __threadfence();
        gen += 1u;
    }
    __syncthreads();
}

/* ------------------------------------------------------------------ matrix-vector products
 *
 * out[r][b] = sum_c W[r][c] * stage[b][coff + c] for up to three matrices at once (so their
 * rows share the warps). A work item is RB rows x NB batch items; the 32 lanes of a warp
 * stride over the columns (consecutive lanes read consecutive weights and inputs: no bank
 * conflicts), each weight is loaded once for NB batch items, and the warp reduces by
 * shuffles. Rows and batch items past the end are clamped (computed, not stored).
 */
template <typename T>
struct WgpJob {
    const T *w;
    int rows, cols, coff;
    float *out;
};

template <typename T, int RB, int NB>
__device__ void wgp_matvec(const WgpJob<T> j0, const WgpJob<T> j1, const WgpJob<T> j2,
                           const float *stage, int ss, int nb)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    const int bgroups = (nb + NB - 1) / NB;
    const int c0 = ((j0.rows + RB - 1) / RB) * bgroups;
    const int c1 = ((j1.rows + RB - 1) / RB) * bgroups;
    const int c2 = ((j2.rows + RB - 1) / RB) * bgroups;
    for (int item = warp; item < c0 + c1 + c2; item += nwarps) {
        const bool in0 = item < c0, in1 = !in0 && item < c0 + c1;
        const int local = in0 ? item : (in1 ? item - c0 : item - c0 - c1);
        const T *jw = in0 ? j0.w : (in1 ? j1.w : j2.w);
        const int rows = in0 ? j0.rows : (in1 ? j1.rows : j2.rows);
        const int cols = in0 ? j0.cols : (in1 ? j1.cols : j2.cols);
        const int coff = in0 ? j0.coff : (in1 ? j1.coff : j2.coff);
        float *out = in0 ? j0.out : (in1 ? j1.out : j2.out);
        const int r0 = (local / bgroups) * RB, b0 = (local % bgroups) * NB;
        const T *wr[RB];
        const float *xr[NB];
#pragma unroll
        for (int i = 0; i < RB; ++i)
            wr[i] = jw + (size_t)min(r0 + i, rows - 1) * cols;
#pragma unroll
        for (int q = 0; q < NB; ++q)
            xr[q] = stage + (size_t)min(b0 + q, nb - 1) * ss + coff;
        float acc[RB][NB];
#pragma unroll
        for (int i = 0; i < RB; ++i)
#pragma unroll
            for (int q = 0; q < NB; ++q)
                acc[i][q] = 0.0f;
        for (int col = lane; col < cols; col += 32) {
            float w[RB], x[NB];
#pragma unroll
            for (int i = 0; i < RB; ++i)
                w[i] = wgp_ldw(wr[i] + col);
#pragma unroll
            for (int q = 0; q < NB; ++q)
                x[q] = xr[q][col];
#pragma unroll
            for (int i = 0; i < RB; ++i)
#pragma unroll
                for (int q = 0; q < NB; ++q)
                    acc[i][q] = fmaf(w[i], x[q], acc[i][q]);
        }
#pragma unroll
        for (int i = 0; i < RB; ++i)
#pragma unroll
            for (int q = 0; q < NB; ++q)
                acc[i][q] = wgp_warp_sum(acc[i][q]);
        if (lane == 0) {
#pragma unroll
            for (int i = 0; i < RB; ++i)
#pragma unroll
                for (int q = 0; q < NB; ++q)
                    if (r0 + i < rows && b0 + q < nb)
                        out[(size_t)(r0 + i) * nb + b0 + q] = acc[i][q];
        }
    }
}

/* Up to three products (a job with rows = 0 is skipped); register tile by batch width. */
template <typename T>
__device__ __forceinline__ void wgp_matvecs(const WgpJob<T> j0, const WgpJob<T> j1,
                                            const WgpJob<T> j2, const float *stage, int ss, int nb)
{
    if (nb >= 4)
        wgp_matvec<T, 2, 4>(j0, j1, j2, stage, ss, nb);
    else
        wgp_matvec<T, 4, 1>(j0, j1, j2, stage, ss, nb);
}

/* ------------------------------------------------------------------ staging
 *
 * stage[bb][col0 + col] = *src(bb, col) for bb < nb, col < width: global data other CTAs
 * wrote (ld.global.cg). With vec, width, col0, the stage stride and every contiguous
 * segment of the source are multiples of 4 floats (16-byte aligned): float4 loads. Each
 * thread issues up to 4 loads before storing, so several L2 round trips overlap.
 */
template <class Src>
__device__ __forceinline__ void wgp_stage(float *stage, int ss, int nb, int col0, int width,
                                          bool vec, const Src &src)
{
    const int tid = threadIdx.x, nt = blockDim.x;
    if (vec) {
        const int w4 = width >> 2, total = nb * w4;
        for (int base = tid; base < total; base += 4 * nt) {
            float4 v[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int idx = base + u * nt;
                if (idx < total) {
                    const int bb = idx / w4, col = (idx - bb * w4) << 2;
                    v[u] = __ldcg((const float4 *)src(bb, col));
                }
            }
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int idx = base + u * nt;
                if (idx < total) {
                    const int bb = idx / w4, col = (idx - bb * w4) << 2;
                    *(float4 *)(stage + (size_t)bb * ss + col0 + col) = v[u];
                }
            }
        }
    } else {
        const int total = nb * width;
        for (int base = tid; base < total; base += 4 * nt) {
            float v[4];
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int idx = base + u * nt;
                if (idx < total) {
                    const int bb = idx / width, col = idx - bb * width;
                    v[u] = wgp_ldg_shared(src(bb, col));
                }
            }
#pragma unroll
            for (int u = 0; u < 4; ++u) {
                const int idx = base + u * nt;
                if (idx < total) {
                    const int bb = idx / width, col = idx - bb * width;
                    stage[(size_t)bb * ss + col0 + col] = v[u];
                }
            }
        }
    }
}

/* Rows of a [B][width] buffer, from batch item b0 on. */
struct WgpRows {
    const float *base;
    int width, b0;
    __device__ __forceinline__ const float *operator()(int bb, int col) const
    {
        return base + (size_t)(b0 + bb) * width + col;
    }
};

/* Columns [R, ...) of layer l's stage row: [x_{l-1} (l > 0) | z_{l-1} (l > 0) | taps]. */
struct WgpLayerSrc {
    const float *ringp, *zin, *ring;
    int lenp, curp, len, cur, d, R, G, K, b0, first_tap_col;
    __device__ __forceinline__ const float *operator()(int bb, int col) const
    {
        const int b = b0 + bb;
        if (col < first_tap_col) {
            if (col < R)
                return ringp + ((size_t)b * lenp + curp) * R + col;
            return zin + (size_t)b * G + (col - R);
        }
        const int cc = col - first_tap_col, j = cc / R, ch = cc - j * R;
        const int slot = (cur - (K - 1 - j) * d + len) % len;
        return ring + ((size_t)b * len + slot) * R + ch;
    }
};

/* ------------------------------------------------------------------ the draw (one warp) */

/*
 * Index drawn from x[0..K) (global memory, written in this launch) with uniform u:
 * v = log_softmax(x) (when logsm) or x; T == 0: first argmax of v; else z = v * (1 / T),
 * w = exp(z - max z), c = inclusive cumulative sum, result = #{k : c[k] <= u c[K-1]}
 * clamped to K - 1 (wavegen.nn.distributions.sample_categorical). log_softmax is
 * (x - max) - log(sum exp(x - max)) as in torch; its maximum is exactly 0 - log(sum), and
 * z's maximum is that times 1 / T (rounding is monotone), so no second max pass is needed.
 * Each lane scans a contiguous chunk; chunk totals are combined by a warp scan.
 */
__device__ int wgp_draw_index(const float *x, int K, float u, float T, bool logsm)
{
    const int lane = threadIdx.x & 31;
    float m = -INFINITY;
    for (int k = lane; k < K; k += 32)
        m = fmaxf(m, wgp_ldg_shared(x + k));
    m = wgp_warp_max(m);
    float ls = 0.0f;
    if (logsm) {
        float s = 0.0f;
        for (int k = lane; k < K; k += 32)
            s += expf(__fsub_rn(wgp_ldg_shared(x + k), m));
        ls = logf(wgp_warp_sum(s));
    }
    const float vmax = logsm ? __fsub_rn(0.0f, ls) : m;
#define WGP_V(k) (logsm ? __fsub_rn(__fsub_rn(wgp_ldg_shared(x + (k)), m), ls) : wgp_ldg_shared(x + (k)))
    if (!(T > 0.0f)) {
        int first = K;
        for (int k = lane; k < K; k += 32)
            if (WGP_V(k) == vmax) {
                first = k;
                break;
            }
        first = wgp_warp_min_int(first);
        return first < K ? first : K - 1;
    }
    const float inv_t = __fdiv_rn(1.0f, T);
    const float zmax = __fmul_rn(vmax, inv_t);
#define WGP_W(k) expf(__fsub_rn(__fmul_rn(WGP_V(k), inv_t), zmax))
    const int chunk = (K + 31) / 32;
    const int k0 = min(K, lane * chunk), k1 = min(K, k0 + chunk);
    float part = 0.0f;
    for (int k = k0; k < k1; ++k)
        part = __fadd_rn(part, WGP_W(k));
    float incl = part;
    for (int o = 1; o < 32; o <<= 1) {
        const float t = __shfl_up_sync(WGP_FULL, incl, o);
        if (lane >= o)
            incl = __fadd_rn(incl, t);
    }
    float excl = __shfl_up_sync(WGP_FULL, incl, 1);
    if (lane == 0)
        excl = 0.0f;
    /* c[K-1] as the counting pass below computes it (not the scan's total). */
    float run = excl;
    for (int k = k0; k < k1; ++k)
        run = __fadd_rn(run, WGP_W(k));
    const float total = __shfl_sync(WGP_FULL, run, (K - 1) / chunk);
    const float thr = __fmul_rn(u, total);
    int cnt = 0;
    run = excl;
    for (int k = k0; k < k1; ++k) {
        run = __fadd_rn(run, WGP_W(k));
        cnt += run <= thr ? 1 : 0;
    }
#undef WGP_W
#undef WGP_V
    cnt = wgp_warp_sum_int(cnt);
    return cnt < K - 1 ? cnt : K - 1;
}

/* Nearest grid value: i = rint((clamp(x, -1, 1) + 1) * ((bins - 1) / 2)) in double (half to
 * even), value (float)i * (float)(2 / (bins - 1)) - 1 in float, each operation rounded. */
__device__ __forceinline__ float wgp_snap(float x, int bins)
{
    double xd = (double)x;
    xd = xd < -1.0 ? -1.0 : (xd > 1.0 ? 1.0 : xd);
    const double y = __dmul_rn(__dadd_rn(xd, 1.0), (double)(bins - 1) / 2.0);
    const double i = rint(y);
    return __fsub_rn(__fmul_rn((float)i, (float)(2.0 / (double)(bins - 1))), 1.0f);
}

/* ------------------------------------------------------------------ the kernel */

template <typename T>
__global__ void __launch_bounds__(WGP_THREADS) wgp_kernel(const WgpArgs a)
{
#ifdef WGP_EMULATE
    unsigned char *smem = wgp_emu_smem();
#else
    extern __shared__ __align__(16) unsigned char wgp_smem[];
    unsigned char *smem = wgp_smem;
#endif
    const int c = blockIdx.x, n = gridDim.x, tid = threadIdx.x, nt = blockDim.x;
    const int lane = tid & 31, warp = tid >> 5, nwarps = nt >> 5;
    const int B = a.B, R = a.R, G = a.G, S = a.S, P = a.P, K = a.K, L = a.L;
    const int bt = a.bt, ss = (int)a.stage_stride, nsteps = a.n_steps, U = a.head == 0 ? 1 : 2;
    const int gp0 = wgp_split(G, n, c), np = wgp_split(G, n, c + 1) - gp0;
    const int rr0 = wgp_split(R, n, c), nr = wgp_split(R, n, c + 1) - rr0;
    const int sr0 = wgp_split(S, n, c), ns = wgp_split(S, n, c + 1) - sr0;
    const int o10 = wgp_split(S, n, c), no1 = wgp_split(S, n, c + 1) - o10;
    const int o20 = wgp_split(P, n, c), no2 = wgp_split(P, n, c + 1) - o20;
    const int kr = K * R, ncol0 = kr, ncol = kr + G;
    const long long wlen0 = 2LL * np * ncol0;
    const long long wlen = 2LL * np * ncol + (long long)(nr + ns) * G;
    const int blen0 = 2 * np, blen = 2 * np + nr;
    const long long cond_w = 2LL * L * G;
    /* float4 staging: every segment (R, G, S columns) and the stage stride are multiples
     * of 4 floats; all buffers and offsets are then 16-byte aligned. */
    const bool vec = R % 4 == 0 && G % 4 == 0 && S % 4 == 0 && ss % 4 == 0;

    /* Weights: copy this CTA's slices into shared memory once (16-byte chunks; the blobs
     * are padded to 16 bytes), or read them from global memory / L2 on every step. */
    const T *W;
    const float *Bv;
    {
        const long long wbytes = (a.wofs[c + 1] - a.wofs[c]) * (long long)sizeof(T);
        const long long bbytes = (a.bofs[c + 1] - a.bofs[c]) * 4LL;
        const T *wsrc = (const T *)a.wblob + a.wofs[c];
        const float *bsrc = a.bblob + a.bofs[c];
        if (a.resident) {
            const uint4 *ws = (const uint4 *)wsrc;
            uint4 *wd = (uint4 *)smem;
            for (long long i = tid; i < wbytes / 16; i += nt)
                wd[i] = __ldg(ws + i);
            const uint4 *bs = (const uint4 *)bsrc;
            uint4 *bd = (uint4 *)(smem + wbytes);
            for (long long i = tid; i < bbytes / 16; i += nt)
                bd[i] = __ldg(bs + i);
            W = (const T *)smem;
            Bv = (const float *)(smem + wbytes);
        } else {
            W = wsrc;
            Bv = bsrc;
        }
    }
    float *stage = (float *)(smem + a.stage_off);
    float *acc = (float *)(smem + a.acc_off);
    float *sk;
    long long sk_s, sk_b;
    if (a.skacc_off >= 0) {
        sk = (float *)(smem + a.skacc_off);
        sk_s = B;
        sk_b = 1;
    } else {
        sk = a.skacc_g + sr0;
        sk_s = 1;
        sk_b = S;
    }
    int *prev_i = (int *)(smem + a.prev_off);
    float *prev_f = (float *)(smem + a.prev_off);

    for (int b = tid; b < B; b += nt) {
        if (a.head == 0) {
            long long v = ((const long long *)a.prev_in)[b];
            v = v < 0 ? 0 : (v > P - 1 ? P - 1 : v);
            prev_i[b] = (int)v;
        } else {
            prev_f[b] = ((const float *)a.prev_in)[b];
        }
    }
    for (int idx = tid; idx < ns * B; idx += nt)
        sk[(idx / B) * sk_s + (idx % B) * sk_b] = 0.0f;
    unsigned gen = 0;
    if (tid == 0)
        gen = wgp_ld_acquire(a.bar + 1);
    __syncthreads();

    const float temp = a.temperature;
    for (int i = 0; i < nsteps; ++i) {
        const long long s = a.step0 + i;
        /* ---------------- residual layers: one grid barrier each */
        for (int l = 0; l < L; ++l) {
            const int d = a.dil[l], len = (K - 1) * d + 1;
            const int cur = (int)((s + len - 1) % len);
            float *ring = a.ring + a.ring_off[l];
            const float *ringp = nullptr;
            int lenp = 1, curp = 0;
            if (l > 0) {
                lenp = (K - 1) * a.dil[l - 1] + 1;
                curp = (int)((s + lenp - 1) % lenp);
                ringp = a.ring + a.ring_off[l - 1];
            }
            const int nc = l ? ncol : ncol0;
            const int toff = l ? R + G : R; /* first older-tap column */
            const T *wconv = W + (l ? wlen0 + (long long)(l - 1) * wlen : 0);
            const T *wres = wconv + 2LL * np * nc;
            const T *wskip = wres + (long long)nr * G;
            const float *bconv = Bv + (l ? blen0 + (l - 1) * blen : 0);
            const float *bres = bconv + 2 * np;
            const float *zin = a.zbuf + (size_t)((l - 1) & 1) * B * G;
            float *zout = a.zbuf + (size_t)(l & 1) * B * G;
            for (int b0 = 0; b0 < B; b0 += bt) {
                const int nb = min(bt, B - b0);
                /* stage [x_{l-1} or x_0 | z_{l-1} | older taps of layer l] per batch item */
                const WgpLayerSrc src = {ringp, zin, ring, lenp, curp, len, cur, d, R, G, K, b0, toff};
                if (l > 0) {
                    wgp_stage(stage, ss, nb, 0, nc, vec, src);
                } else {
                    /* x_0 = embedding of the previous sample; the taps are loaded */
                    for (int idx = tid; idx < nb * R; idx += nt) {
                        const int bb = idx / R, col = idx - bb * R, b = b0 + bb;
                        stage[(size_t)bb * ss + col] = a.head == 0
                            ? __ldg(a.embed + (size_t)prev_i[b] * R + col)
                            : __fadd_rn(__fmul_rn(prev_f[b], __ldg(a.embed + col)),
                                        __ldg(a.embed + R + col));
                    }
                    const WgpLayerSrc taps = {ringp, zin, ring, lenp, curp, len, cur, d, R, G, K, b0, 0};
                    wgp_stage(stage, ss, nb, R, nc - R, vec, taps);
                }
                __syncthreads();
                float *acc_conv = acc, *acc_res = acc + (size_t)2 * np * nb;
                float *acc_skip = acc_res + (size_t)nr * nb;
                wgp_matvecs<T>(WgpJob<T>{wconv, 2 * np, nc, 0, acc_conv},
                               WgpJob<T>{wres, l > 0 ? nr : 0, G, R, acc_res},
                               WgpJob<T>{wskip, l > 0 ? ns : 0, G, R, acc_skip}, stage, ss, nb);
                __syncthreads();
                /* gates of the owned pairs -> z slice */
                for (int idx = tid; idx < np * nb; idx += nt) {
                    const int p = idx / nb, bb = idx - p * nb, b = b0 + bb;
                    float av = acc_conv[(size_t)p * nb + bb] + bconv[p];
                    float sv = acc_conv[(size_t)(np + p) * nb + bb] + bconv[np + p];
                    if (a.cond) {
                        const float *cr = a.cond + ((size_t)b * nsteps + i) * cond_w + (size_t)l * 2 * G;
                        av += __ldg(cr + gp0 + p);
                        sv += __ldg(cr + G + gp0 + p);
                    }
                    const float z = tanhf(av) * (1.0f / (1.0f + expf(-sv)));
                    zout[(size_t)b * G + gp0 + p] = z;
                }
                /* residual rows: x_l = x_{l-1} + res_w z_{l-1} + res_b (x_0 for l = 0) */
                for (int idx = tid; idx < nr * nb; idx += nt) {
                    const int r = idx / nb, bb = idx - r * nb, b = b0 + bb;
                    float x = stage[(size_t)bb * ss + rr0 + r];
                    if (l > 0)
                        x += acc_res[(size_t)r * nb + bb] + bres[r];
                    ring[((size_t)b * len + cur) * R + rr0 + r] = x;
                }
                /* skips of layer l - 1 */
                if (l > 0) {
                    for (int idx = tid; idx < ns * nb; idx += nt) {
                        const int r = idx / nb, bb = idx - r * nb, b = b0 + bb;
                        sk[r * sk_s + b * sk_b] += acc_skip[(size_t)r * nb + bb];
                    }
                }
                __syncthreads();
            }
            wgp_grid_sync(a.bar, (unsigned)n, gen);
        }

        /* ---------------- head 0: skips of the last layer, relu(sum) -> hbuf */
        {
            const T *wskip = W + wlen0 + (long long)(L - 1) * wlen;
            const float *bskip = Bv + blen0 + (L - 1) * blen;
            const float *zin = a.zbuf + (size_t)((L - 1) & 1) * B * G;
            for (int b0 = 0; b0 < B; b0 += bt) {
                const int nb = min(bt, B - b0);
                wgp_stage(stage, ss, nb, 0, G, vec, WgpRows{zin, G, b0});
                __syncthreads();
                wgp_matvecs<T>(WgpJob<T>{wskip, ns, G, 0, acc}, WgpJob<T>{wskip, 0, G, 0, acc},
                               WgpJob<T>{wskip, 0, G, 0, acc}, stage, ss, nb);
                __syncthreads();
                for (int idx = tid; idx < ns * nb; idx += nt) {
                    const int r = idx / nb, bb = idx - r * nb, b = b0 + bb;
                    float *slot = sk + r * sk_s + b * sk_b;
                    const float v = (*slot + acc[(size_t)r * nb + bb]) + bskip[r];
                    *slot = 0.0f;
                    a.hbuf[(size_t)b * S + sr0 + r] = fmaxf(v, 0.0f);
                }
                __syncthreads();
            }
            wgp_grid_sync(a.bar, (unsigned)n, gen);
        }
        /* ---------------- head 1 and 2: out1 (relu) -> h2buf, out2 -> pbuf */
        for (int stage_no = 1; stage_no <= 2; ++stage_no) {
            const float *src = stage_no == 1 ? a.hbuf : a.h2buf;
            const long long head_w = wlen0 + (long long)(L - 1) * wlen + (long long)ns * G;
            const int head_b = blen0 + (L - 1) * blen + ns;
            const T *w = W + head_w + (stage_no == 1 ? 0 : (long long)no1 * S);
            const float *bias = Bv + head_b + (stage_no == 1 ? 0 : no1);
            const int rows = stage_no == 1 ? no1 : no2, row0 = stage_no == 1 ? o10 : o20;
            for (int b0 = 0; b0 < B; b0 += bt) {
                const int nb = min(bt, B - b0);
                wgp_stage(stage, ss, nb, 0, S, vec, WgpRows{src, S, b0});
                __syncthreads();
                wgp_matvecs<T>(WgpJob<T>{w, rows, S, 0, acc}, WgpJob<T>{w, 0, S, 0, acc},
                               WgpJob<T>{w, 0, S, 0, acc}, stage, ss, nb);
                __syncthreads();
                for (int idx = tid; idx < rows * nb; idx += nt) {
                    const int r = idx / nb, bb = idx - r * nb, b = b0 + bb;
                    const float v = acc[(size_t)r * nb + bb] + bias[r];
                    if (stage_no == 1) {
                        a.h2buf[(size_t)b * S + row0 + r] = fmaxf(v, 0.0f);
                    } else {
                        a.pbuf[(size_t)b * P + row0 + r] = v;
                        if (a.params_out)
                            a.params_out[((size_t)b * nsteps + i) * P + row0 + r] = v;
                    }
                }
                __syncthreads();
            }
            if (stage_no == 1 || a.draw)
                wgp_grid_sync(a.bar, (unsigned)n, gen);
        }
        if (!a.draw)
            break;

        /* ---------------- draw: every CTA draws every batch item (same inputs, same code,
         * same result), so the next step needs no further barrier; CTA 0 stores them. */
        for (int b = warp; b < B; b += nwarps) {
            const float *x = a.pbuf + (size_t)b * P;
            const float *uu = a.uniforms + ((size_t)b * nsteps + i) * U;
            if (a.head == 0) {
                const int k = wgp_draw_index(x, P, __ldg(uu), temp, true);
                if (lane == 0) {
                    prev_i[b] = k;
                    if (c == 0)
                        ((long long *)a.samples)[(size_t)b * nsteps + i] = k;
                }
            } else {
                const int M = a.M;
                const int comp = wgp_draw_index(x, M, __ldg(uu), temp, false);
                if (lane == 0) {
                    float v = wgp_ldg_shared(x + M + comp);
                    if (temp > 0.0f) {
                        const float lsc = fmaxf(wgp_ldg_shared(x + 2 * M + comp), a.log_scale_min);
                        const float scale = __fmul_rn(temp, expf(lsc));
                        const float u1 = __ldg(uu + 1);
                        const float dl = __fsub_rn(logf(u1), log1pf(-u1));
                        v = __fadd_rn(v, __fmul_rn(scale, dl));
                    }
                    v = wgp_snap(v, a.bins);
                    prev_f[b] = v;
                    if (c == 0)
                        ((float *)a.samples)[(size_t)b * nsteps + i] = v;
                }
            }
        }
        __syncthreads();
    }
}

/* ------------------------------------------------------------------ host side */

static WgpArgs wgp_make_args(const long long *m, void *const *p, float temperature,
                             float log_scale_min)
{
    WgpArgs a;
    a.B = (int)m[M_B];
    a.R = (int)m[M_R];
    a.G = (int)m[M_G];
    a.S = (int)m[M_S];
    a.P = (int)m[M_P];
    a.K = (int)m[M_K];
    a.L = (int)m[M_L];
    a.head = (int)m[M_HEAD];
    a.M = (int)m[M_MIX];
    a.bins = (int)m[M_BINS];
    a.n_steps = (int)m[M_NSTEPS];
    a.draw = (int)m[M_DRAW];
    a.bt = (int)m[M_BT];
    a.resident = (int)m[M_RESIDENT];
    a.step0 = m[M_STEP0];
    a.stage_off = m[M_STAGE_OFF];
    a.stage_stride = m[M_STAGE_STRIDE];
    a.acc_off = m[M_ACC_OFF];
    a.skacc_off = m[M_SKACC_OFF];
    a.prev_off = m[M_PREV_OFF];
    a.temperature = temperature;
    a.log_scale_min = log_scale_min;
    a.dil = (const int *)p[P_DIL];
    a.ring_off = (const long long *)p[P_RING_OFF];
    a.wofs = (const long long *)p[P_WOFS];
    a.bofs = (const long long *)p[P_BOFS];
    a.wblob = p[P_WBLOB];
    a.bblob = (const float *)p[P_BBLOB];
    a.embed = (const float *)p[P_EMBED];
    a.ring = (float *)p[P_RING];
    a.zbuf = (float *)p[P_ZBUF];
    a.hbuf = (float *)p[P_HBUF];
    a.h2buf = (float *)p[P_H2BUF];
    a.pbuf = (float *)p[P_PBUF];
    a.skacc_g = (float *)p[P_SKACC];
    a.cond = (const float *)p[P_COND];
    a.uniforms = (const float *)p[P_UNIFORMS];
    a.prev_in = p[P_PREV];
    a.samples = p[P_SAMPLES];
    a.params_out = (float *)p[P_PARAMS];
    a.bar = (unsigned int *)p[P_BAR];
    return a;
}

/* Checks that do not need the device: -1 = bad argument counts, -2 = bad sizes. */
static int wgp_check(const long long *m, int nmeta, void *const *p, int nptrs)
{
    if (nmeta != M_COUNT || nptrs != P_COUNT)
        return -1;
    if (m[M_B] < 1 || m[M_R] < 1 || m[M_G] < 1 || m[M_S] < 1 || m[M_P] < 1 || m[M_K] < 2 ||
        m[M_L] < 1 || m[M_NSTEPS] < 1 || m[M_BT] < 1 || m[M_WTYPE] < 0 || m[M_WTYPE] > 2)
        return -2;
    if (m[M_HEAD] == 1 && (m[M_MIX] < 1 || m[M_P] != 3 * m[M_MIX] || m[M_BINS] < 2))
        return -2;
    if (m[M_DRAW] && (p[P_UNIFORMS] == 0 || p[P_SAMPLES] == 0))
        return -2;
    return 0;
}

#ifndef WGP_EMULATE

static const void *wgp_kernel_for(int wtype)
{
    switch (wtype) {
    case 0:
        return (const void *)&wgp_kernel<float>;
    case 1:
        return (const void *)&wgp_kernel<__nv_bfloat16>;
    case 2:
        return (const void *)&wgp_kernel<__half>;
    }
    return nullptr;
}

extern "C" {

const char *wgp_error_string(int err)
{
    if (err == -1)
        return "wavegen cuda kernel: wrong number of arguments (binding and kernel disagree)";
    if (err == -2)
        return "wavegen cuda kernel: invalid sizes";
    return cudaGetErrorString((cudaError_t)err);
}

int wgp_launch(const long long *meta, int nmeta, void *const *ptrs, int nptrs, float temperature,
               float log_scale_min, int grid, int block, long long smem, void *stream)
{
    const int bad = wgp_check(meta, nmeta, ptrs, nptrs);
    if (bad)
        return bad;
    if (block < 32 || block > WGP_THREADS || block % 32)
        return -2;
    const void *fn = wgp_kernel_for((int)meta[M_WTYPE]);
    cudaError_t err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err != cudaSuccess)
        return (int)err;
    WgpArgs args = wgp_make_args(meta, ptrs, temperature, log_scale_min);
    void *kargs[] = {&args};
    err = cudaLaunchCooperativeKernel(fn, dim3(grid), dim3(block), kargs, (size_t)smem,
                                      (cudaStream_t)stream);
    return (int)err;
}

/* out: multiprocessors, shared memory per block (opt-in), shared memory per multiprocessor,
 * cooperative launch supported, compute capability major, minor. */
int wgp_device_info(int device, long long *out, int nout)
{
    const cudaDeviceAttr attrs[6] = {
        cudaDevAttrMultiProcessorCount, cudaDevAttrMaxSharedMemoryPerBlockOptin,
        cudaDevAttrMaxSharedMemoryPerMultiprocessor, cudaDevAttrCooperativeLaunch,
        cudaDevAttrComputeCapabilityMajor, cudaDevAttrComputeCapabilityMinor};
    for (int i = 0; i < 6 && i < nout; ++i) {
        int v = 0;
        const cudaError_t err = cudaDeviceGetAttribute(&v, attrs[i], device);
        if (err != cudaSuccess)
            return (int)err;
        out[i] = v;
    }
    return 0;
}

/* CTAs of the kernel for weight type ``wtype`` that fit on one multiprocessor at once. */
int wgp_max_blocks(int wtype, int block, long long smem, int *out)
{
    const void *fn = wgp_kernel_for(wtype);
    if (!fn)
        return -2;
    cudaError_t err = cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
    if (err != cudaSuccess)
        return (int)err;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(out, fn, block, (size_t)smem);
    return (int)err;
}

} /* extern "C" */

#endif /* !WGP_EMULATE */
