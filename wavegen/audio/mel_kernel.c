/* Fused magnitude -> mel filterbank for the CPU inference path of wavegen.audio.spectral.
 *
 * Input: complex STFT frames as interleaved float32 rows, frame t at spec + t * row_floats,
 * bin k at floats [2k, 2k + 1]. Each mel band m has non-zero weights only on the contiguous
 * bins [start[m], start[m] + len[m]) (a triangle), stored at weights + offset[m]. For each
 * frame the kernel forms p = re^2 + im^2 + eps for bins [lo, hi), takes sqrt(p) (power 1) or
 * p (power 2), and writes the band sums to out[m * out_stride + t].
 *
 * Built and loaded by wavegen/audio/mel_kernel.py through wavegen.native (no Python or torch
 * headers). Frames are split across OpenMP threads when the compiler has OpenMP.
 */
#include <math.h>
#include <stdint.h>

#define WG_MEL_ABI_VERSION 1
#define WG_MEL_MAX_BINS 16384

int wg_mel_abi_version(void) { return WG_MEL_ABI_VERSION; }

int wg_mel_max_bins(void) { return WG_MEL_MAX_BINS; }

/* Returns 0 on success, 1 when [lo, hi) is wider than WG_MEL_MAX_BINS, 2 for another power. */
int wg_mel_frames(const float *spec, int64_t frames, int64_t row_floats, int64_t lo, int64_t hi,
                  const int64_t *start, const int64_t *len, const int64_t *offset,
                  const float *weights, int64_t n_mels, int64_t power, float eps,
                  float *out, int64_t out_stride, int64_t threads) {
    if (hi - lo > WG_MEL_MAX_BINS || hi < lo) return 1;
    if (power != 1 && power != 2) return 2;
#ifdef _OPENMP
    #pragma omp parallel for schedule(static) num_threads(threads > 0 ? (int)threads : 1)
#endif
    for (int64_t t = 0; t < frames; t++) {
        float mag[WG_MEL_MAX_BINS];
        const float *row = spec + t * row_floats + 2 * lo;
        const int64_t n = hi - lo;
        if (power == 1) {
            for (int64_t j = 0; j < n; j++) {
                const float re = row[2 * j], im = row[2 * j + 1];
                mag[j] = sqrtf(re * re + im * im + eps);
            }
        } else {
            for (int64_t j = 0; j < n; j++) {
                const float re = row[2 * j], im = row[2 * j + 1];
                mag[j] = re * re + im * im + eps;
            }
        }
        for (int64_t m = 0; m < n_mels; m++) {
            const float *w = weights + offset[m];
            const float *x = mag + (start[m] - lo);
            float acc = 0.0f;
            for (int64_t j = 0; j < len[m]; j++) acc += w[j] * x[j];
            out[m * out_stride + t] = acc;
        }
    }
    (void)threads;
    return 0;
}
