// Torch binding of wavenet_persistent.cu (the ``cuda`` sampling backend of wavegen).
//
// Deliberately thin: the Python side (wavegen/kernels/cuda/__init__.py) plans the launch,
// packs the weights and allocates every buffer as a torch tensor; this file checks the
// tensors, turns them into the integer and pointer arrays of the kernel's WgpMeta / WgpPtr
// orders and launches on the stream it is given. It includes no CUDA headers (the .cu file
// owns everything CUDA), so it also compiles against a CPU-only torch.

#include <torch/extension.h>

#include <optional>
#include <vector>

extern "C" {
int wgp_launch(const long long *meta, int nmeta, void *const *ptrs, int nptrs, float temperature,
               float log_scale_min, int grid, int block, long long smem, void *stream);
const char *wgp_error_string(int err);
int wgp_device_info(int device, long long *out, int nout);
int wgp_max_blocks(int wtype, int block, long long smem, int *out);
}

namespace {

void check(int err, const char *what)
{
    TORCH_CHECK(err == 0, "wavegen cuda backend: ", what, ": ", wgp_error_string(err));
}

// Runs meta[M_NSTEPS] steps (see wavenet_persistent.cu); returns ``samples`` (written in
// place when drawing) for convenience.
torch::Tensor generate(const torch::Tensor &meta, const std::vector<std::optional<torch::Tensor>> &tensors,
                       double temperature, double log_scale_min, int64_t grid, int64_t block,
                       int64_t smem, int64_t stream, const std::optional<torch::Tensor> &samples)
{
    TORCH_CHECK(meta.device().is_cpu() && meta.scalar_type() == torch::kInt64 && meta.is_contiguous(),
                "meta must be a contiguous int64 CPU tensor");
    std::vector<void *> ptrs;
    ptrs.reserve(tensors.size());
    for (const auto &t : tensors) {
        if (t.has_value() && t->defined()) {
            TORCH_CHECK(t->is_cuda(), "wavegen cuda backend: every buffer must be on the GPU");
            TORCH_CHECK(t->is_contiguous(), "wavegen cuda backend: every buffer must be contiguous");
            ptrs.push_back(t->data_ptr());
        } else {
            ptrs.push_back(nullptr);
        }
    }
    const int err = wgp_launch(reinterpret_cast<const long long *>(meta.data_ptr<int64_t>()),
                               static_cast<int>(meta.numel()), ptrs.data(),
                               static_cast<int>(ptrs.size()), static_cast<float>(temperature),
                               static_cast<float>(log_scale_min), static_cast<int>(grid),
                               static_cast<int>(block), smem, reinterpret_cast<void *>(stream));
    check(err, "launch");
    return samples.has_value() ? *samples : torch::Tensor();
}

std::vector<int64_t> device_info(int64_t device)
{
    long long out[6] = {0, 0, 0, 0, 0, 0};
    check(wgp_device_info(static_cast<int>(device), out, 6), "device query");
    return std::vector<int64_t>(out, out + 6);
}

int64_t max_blocks(int64_t wtype, int64_t block, int64_t smem)
{
    int out = 0;
    check(wgp_max_blocks(static_cast<int>(wtype), static_cast<int>(block), smem, &out), "occupancy query");
    return out;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.doc() = "wavegen persistent WaveNet sampling kernel";
    m.def("generate", &generate, "run n steps of the persistent kernel (arguments: see wavegen.kernels.cuda)");
    m.def("device_info", &device_info,
          "[multiprocessors, smem per block opt-in, smem per multiprocessor, cooperative launch, cc major, cc minor]");
    m.def("max_blocks", &max_blocks, "resident CTAs per multiprocessor for (weight type, threads, dynamic smem)");
}
