#include "bitnet/model.h"

#include <algorithm>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "kernels/cpu/kernels.h"
#include "model/format/gguf.h"
#include "model/gguf_loader.h"
#include "model/model_impl.h"

namespace bitnet {

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

const ModelConfig& Model::config() const noexcept {
    return impl_->config;
}
const ModelInfo& Model::info() const noexcept {
    return impl_->info;
}

std::shared_ptr<const Model> make_model(std::unique_ptr<Model::Impl> impl) {
    // Every loader and the synthetic builder come through here with their weights in place.
    // Row tiles were measured where the GEMV reads a whole tile at once (AVX-512: 1.07x a
    // decode step); AVX2 reads half a tile at a time, and its prompts ran 5-10% slower on them.
    const std::vector<std::string> tiled = cpu::isa_supported(cpu::Isa::AVX512)
                                               ? tile_streamed_weights(impl->weights)
                                               : std::vector<std::string>{};
    // Matrices that stay in cache get a copy in row groups for the AVX-512 VNNI GEMV, which has
    // nothing to reduce across lanes there: 1.13x a decode step of the 1m model.
    std::vector<std::pair<std::string, size_t>> grouped =
        cpu::isa_supported(cpu::Isa::AVX512VNNI) ? group_cached_weights(impl->weights)
                                                 : std::vector<std::pair<std::string, size_t>>{};
    // A small f32 or bf16 head likewise, for the AVX-512 head kernel (both AVX-512 levels): 1.9x
    // the 1m model's head.
    if (cpu::isa_supported(cpu::Isa::AVX512)) {
        if (auto head = group_cached_head(impl->weights)) grouped.push_back(std::move(*head));
    }
    for (TensorInfo& t : impl->info.tensors) {
        if (std::find(tiled.begin(), tiled.end(), t.name) != tiled.end())
            t.engine_format += ", row tiles";
        for (const auto& [name, bytes] : grouped) {
            if (name != t.name) continue;
            t.engine_format += ", + row groups";
            t.engine_bytes += bytes;
            impl->info.engine_bytes += bytes;
        }
    }
    impl->info.huge_page_bytes = huge_page_bytes(impl->weights);
#ifdef __GLIBC__
    // The loaders' temporaries (a decoded GGUF tensor takes a byte a weight) were freed into
    // glibc's arenas, which keep them resident: 10 MB of an I2_S 2B's resident memory.
    ::malloc_trim(0);
#endif
    return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& options) {
    if (options.device == Device::CUDA) {
        throw Error(ErrorCode::UnsupportedFormat,
                    "this build has no CUDA backend; load with Device::CPU or Device::Auto");
    }
    // GGUF is recognised by its magic, whatever the file is called; anything else is a Hugging
    // Face checkpoint (directory, .safetensors or index).
    if (gguf::is_gguf_file(path)) {
        return make_model(load_gguf_model(path, options.weight_memory));
    }
    return make_model(load_hf_checkpoint(path, options.weight_memory));
}

}  // namespace bitnet
