#include "model/weights.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "bitnet/error.h"

#include "core/half.h"
#include "kernels/cpu/dense_groups.h"
#include "kernels/cpu/ternary_pack.h"

namespace bitnet {

const char* weight_memory_name(WeightMemory memory) noexcept {
    switch (memory) {
        case WeightMemory::Auto:
            return "auto";
        case WeightMemory::Mapped:
            return "mapped";
        case WeightMemory::HugePages:
            return "huge pages";
    }
    return "?";
}

Pages weight_pages(size_t bytes) noexcept {
    return bytes >= kHugePageMinBytes && transparent_huge_pages_available() ? Pages::Huge
                                                                            : Pages::Small;
}

PlacedWeights place_file_weights(const uint8_t* src, size_t bytes, WeightMemory memory,
                                 AlignedBuffer<uint8_t>& owned) {
    const bool copy = memory == WeightMemory::HugePages ||
                      (memory == WeightMemory::Auto && weight_pages(bytes) == Pages::Huge);
    if (!copy || bytes == 0) return {src, bytes, " (mapped)"};
    owned = AlignedBuffer<uint8_t>(bytes, false, Pages::Huge);
    std::memcpy(owned.data(), src, bytes);
    release_file_pages(src, bytes);
    return {owned.data(), 0, " (huge pages)"};
}

void release_file_pages(const void* src, size_t bytes) noexcept {
    // Whole pages only: the mapping is read-only, so dropping them loses nothing.
    const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
    const auto begin = (reinterpret_cast<uintptr_t>(src) + page - 1) / page * page;
    const auto end = (reinterpret_cast<uintptr_t>(src) + bytes) / page * page;
    if (end > begin) ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

size_t huge_page_bytes(const ModelWeights& weights) noexcept {
    auto huge = [](const AlignedBuffer<uint8_t>& b) {
        return b.pages() == Pages::Huge ? b.bytes() : size_t{0};
    };
    size_t total = huge(weights.embedding.owned) + huge(weights.lm_head_own.owned);
    for (const LayerWeights& l : weights.layers) {
        for (const BitLinearWeight* w : l.bitlinears()) total += huge(w->packed);
    }
    return total;
}

std::vector<std::string> tile_streamed_weights(ModelWeights& weights, size_t min_bytes) {
    std::vector<std::string> tiled_names;
    for (LayerWeights& l : weights.layers) {
        for (BitLinearWeight* w : l.bitlinears()) {
            const cpu::TernaryMatrixView& v = w->view;
            const bool owned = w->packed.bytes() > 0 && v.data == w->packed.data();
            if (v.layout != cpu::TernaryLayout::Bits2 || v.tiled || !owned ||
                static_cast<size_t>(v.rows) * v.row_bytes() < min_bytes)
                continue;
            w->view = cpu::tile_ternary_rows(v, w->packed.data());  // in place
            tiled_names.push_back(w->name);
        }
    }
    return tiled_names;
}

std::vector<std::pair<std::string, size_t>> group_cached_weights(ModelWeights& weights,
                                                                 size_t max_bytes,
                                                                 int max_columns) {
    std::vector<std::pair<std::string, size_t>> grouped;
    for (LayerWeights& l : weights.layers) {
        for (BitLinearWeight* w : l.bitlinears()) {
            const cpu::TernaryMatrixView& v = w->view;
            if (v.layout != cpu::TernaryLayout::Bits2 || v.groups != nullptr ||
                v.rows < cpu::kTernaryGroupRows || v.cols > max_columns ||
                static_cast<size_t>(v.rows) * v.row_bytes() >= max_bytes)
                continue;
            w->groups = AlignedBuffer<uint8_t>(cpu::ternary_groups_bytes(v), false);
            w->view = cpu::group_ternary_rows(v, w->groups.data());
            grouped.emplace_back(w->name, w->groups.bytes());
        }
    }
    return grouped;
}

std::optional<std::pair<std::string, size_t>> group_cached_head(ModelWeights& weights,
                                                                size_t max_bytes) {
    DenseMatrix& head = weights.tied ? weights.embedding : weights.lm_head_own;
    if (head.format != DenseFormat::F32 && head.format != DenseFormat::BF16) return std::nullopt;
    const size_t elem = head.format == DenseFormat::F32 ? 4 : 2;
    const size_t bytes = cpu::dense_groups_bytes(head.rows, head.cols, elem);
    if (bytes == 0 || head.bytes() >= max_bytes || head.groups.size() != 0) return std::nullopt;
    head.groups = AlignedBuffer<uint8_t>(bytes, false);
    cpu::group_dense_rows(head.data, head.rows, head.cols, elem, head.groups.data());
    return std::pair{head.name, bytes};
}

const char* dense_format_name(DenseFormat format) noexcept {
    switch (format) {
        case DenseFormat::F32:
            return "f32";
        case DenseFormat::BF16:
            return "bf16";
        case DenseFormat::F16:
            return "f16";
        case DenseFormat::Q8_0:
            return "q8_0";
        case DenseFormat::I8R:
            return "i8r";
    }
    return "unknown";
}

namespace {

constexpr int kQ8Block = 32;
constexpr size_t kQ8BlockBytes = 2 + kQ8Block;

size_t i8r_scales_offset(int rows, int cols) {
    return (static_cast<size_t>(rows) * static_cast<size_t>(cols) + 3) / 4 * 4;
}

}  // namespace

size_t dense_format_bytes(DenseFormat format, int rows, int cols) noexcept {
    const size_t n = static_cast<size_t>(rows) * static_cast<size_t>(cols);
    switch (format) {
        case DenseFormat::F32:
            return n * 4;
        case DenseFormat::BF16:
        case DenseFormat::F16:
            return n * 2;
        case DenseFormat::Q8_0:
            return n / kQ8Block * kQ8BlockBytes;
        case DenseFormat::I8R:
            return i8r_scales_offset(rows, cols) + static_cast<size_t>(rows) * sizeof(float);
    }
    return 0;
}

void DenseMatrix::bind(const void* bytes, size_t size) {
    const std::string what = std::string(dense_format_name(format)) + " matrix [" +
                             std::to_string(rows) + ", " + std::to_string(cols) + "]";
    if (rows <= 0 || cols <= 0) throw Error(ErrorCode::ShapeMismatch, what + " has an empty shape");
    if (format == DenseFormat::Q8_0 && cols % kQ8Block != 0) {
        throw Error(ErrorCode::ShapeMismatch, what + ": Q8_0 rows must be a multiple of 32 values");
    }
    if (size != dense_format_bytes(format, rows, cols)) {
        throw Error(ErrorCode::ShapeMismatch,
                    what + " takes " + std::to_string(dense_format_bytes(format, rows, cols)) +
                        " bytes, got " + std::to_string(size));
    }
    data = bytes;
    row_scale = format == DenseFormat::I8R
                    ? reinterpret_cast<const float*>(static_cast<const uint8_t*>(bytes) +
                                                     i8r_scales_offset(rows, cols))
                    : nullptr;
}

void DenseMatrix::row_to_f32(int row, float* out) const {
    const size_t offset = static_cast<size_t>(row) * cols;
    switch (format) {
        case DenseFormat::F32:
            std::memcpy(out, static_cast<const float*>(data) + offset, sizeof(float) * cols);
            return;
        case DenseFormat::BF16: {
            const uint16_t* src = static_cast<const uint16_t*>(data) + offset;
            for (int i = 0; i < cols; ++i) out[i] = bf16_to_f32(src[i]);
            return;
        }
        case DenseFormat::F16: {
            const uint16_t* src = static_cast<const uint16_t*>(data) + offset;
            for (int i = 0; i < cols; ++i) out[i] = f16_to_f32(src[i]);
            return;
        }
        case DenseFormat::Q8_0: {
            const uint8_t* block =
                static_cast<const uint8_t*>(data) + offset / kQ8Block * kQ8BlockBytes;
            for (int b = 0; b < cols / kQ8Block; ++b, block += kQ8BlockBytes) {
                uint16_t d16;
                std::memcpy(&d16, block, 2);
                const float d = f16_to_f32(d16);
                const int8_t* q = reinterpret_cast<const int8_t*>(block + 2);
                for (int i = 0; i < kQ8Block; ++i)
                    out[b * kQ8Block + i] = d * static_cast<float>(q[i]);
            }
            return;
        }
        case DenseFormat::I8R: {
            const int8_t* q = static_cast<const int8_t*>(data) + offset;
            const float s = row_scale[row];
            for (int i = 0; i < cols; ++i) out[i] = s * static_cast<float>(q[i]);
            return;
        }
    }
}

DenseMatrix convert_dense(const DenseMatrix& src, DenseFormat format) {
    DenseMatrix m;
    m.name = src.name;
    m.format = format;
    m.rows = src.rows;
    m.cols = src.cols;
    if (format == DenseFormat::Q8_0 && src.cols % kQ8Block != 0) {
        throw Error(ErrorCode::ShapeMismatch,
                    "cannot convert a matrix of " + std::to_string(src.cols) +
                        " columns to q8_0: rows must be a multiple of 32 values");
    }
    const size_t bytes = dense_format_bytes(format, m.rows, m.cols);
    m.owned = weight_buffer(bytes, true);
    uint8_t* dst = m.owned.data();
    const size_t cols = static_cast<size_t>(m.cols);
    std::vector<float> row(cols);
    for (int r = 0; r < m.rows; ++r) {
        src.row_to_f32(r, row.data());
        switch (format) {
            case DenseFormat::F32:
                std::memcpy(dst + r * cols * 4, row.data(), cols * 4);
                break;
            case DenseFormat::BF16:
            case DenseFormat::F16: {
                uint16_t* out = reinterpret_cast<uint16_t*>(dst) + r * cols;
                for (size_t i = 0; i < cols; ++i)
                    out[i] = format == DenseFormat::BF16 ? f32_to_bf16(row[i]) : f32_to_f16(row[i]);
                break;
            }
            case DenseFormat::Q8_0: {
                uint8_t* block = dst + r * cols / kQ8Block * kQ8BlockBytes;
                for (size_t b = 0; b < cols / kQ8Block; ++b, block += kQ8BlockBytes) {
                    const float* x = row.data() + b * kQ8Block;
                    float amax = 0.f;
                    for (int i = 0; i < kQ8Block; ++i) amax = std::max(amax, std::fabs(x[i]));
                    const float d = amax / 127.f;
                    const float inv = d != 0.f ? 1.f / d : 0.f;
                    const uint16_t d16 = f32_to_f16(d);
                    std::memcpy(block, &d16, 2);
                    for (int i = 0; i < kQ8Block; ++i)
                        block[2 + i] = static_cast<uint8_t>(
                            static_cast<int8_t>(std::clamp(std::round(x[i] * inv), -127.f, 127.f)));
                }
                break;
            }
            case DenseFormat::I8R: {
                float amax = 0.f;
                for (float v : row) amax = std::max(amax, std::fabs(v));
                const float scale = amax / 127.f;
                const float inv = scale != 0.f ? 1.f / scale : 0.f;
                int8_t* q = reinterpret_cast<int8_t*>(dst) + r * cols;
                for (size_t i = 0; i < cols; ++i)
                    q[i] = static_cast<int8_t>(
                        std::clamp(std::nearbyint(row[i] * inv), -127.f, 127.f));
                std::memcpy(dst + i8r_scales_offset(m.rows, m.cols) + r * sizeof(float), &scale,
                            sizeof scale);
                break;
            }
        }
    }
    m.bind(m.owned.data(), bytes);
    return m;
}

BitLinearWeight repack_ternary(const BitLinearWeight& w, cpu::TernaryLayout layout) {
    BitLinearWeight out;
    out.name = w.name;
    out.alpha = w.alpha;
    out.alpha_inside = w.alpha_inside;
    out.input_norm = w.input_norm;
    const int rows = w.view.rows, cols = w.view.cols;
    out.packed = weight_buffer(cpu::ternary_packed_bytes(rows, cols, layout));
    out.view = cpu::make_ternary_view(out.packed.data(), rows, cols, layout);
    std::vector<int8_t> row(static_cast<size_t>(cols));
    for (int r = 0; r < rows; ++r) {
        for (int k = 0; k < cols; ++k) row[k] = static_cast<int8_t>(cpu::ternary_at(w.view, r, k));
        uint8_t* dst = out.packed.data() + static_cast<size_t>(r) * out.view.row_bytes();
        if (layout == cpu::TernaryLayout::Bits2) {
            cpu::pack_ternary_row(row.data(), cols, dst);
        } else {
            cpu::pack_ternary5_row(row.data(), cols, dst);
        }
    }
    return out;
}

void RopeFrequencies::build(int head_dim, float theta) {
    inv_freq.resize(static_cast<size_t>(head_dim / 2));
    for (size_t i = 0; i < inv_freq.size(); ++i) {
        inv_freq[i] =
            1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
    }
}

void RopeFrequencies::angles(int pos, float* cos_out, float* sin_out) const {
    for (size_t i = 0; i < inv_freq.size(); ++i) {
        const float angle = static_cast<float>(pos) * inv_freq[i];
        cos_out[i] = std::cos(angle);
        sin_out[i] = std::sin(angle);
    }
}

}  // namespace bitnet
