#include "bitnet/model.h"

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

std::shared_ptr<const Model> Model::load(const std::string& path, const LoadOptions& options) {
    if (options.device == Device::CUDA) {
        throw Error(ErrorCode::UnsupportedFormat,
                    "this build has no CUDA backend; load with Device::CPU or Device::Auto");
    }
    return std::shared_ptr<const Model>(new Model(load_hf_checkpoint(path)));
}

}  // namespace bitnet
