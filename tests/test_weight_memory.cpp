// Weights in huge pages: the chunk allocator behind them, and models whose in-place tensors are
// copied into it (WeightMemory::HugePages) hold the same bytes and give the same logits as the
// same files read through the mapping. Whether the OS backs the memory with 2 MiB pages is its
// choice (transparent huge pages may be off); the tests check what the engine controls.
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "bitnet/engine.h"
#include "bitnet/model_cache.h"
#include "core/aligned_buffer.h"
#include "core/huge_pages.h"
#include "gguf_test_support.h"
#include "model/gguf_export.h"
#include "model/model_impl.h"
#include "test_support.h"

namespace bitnet::test {
namespace {

TEST(HugePageAlloc, PacksAlignedAllocationsAndReturnsChunksWhenAllAreFreed) {
    const size_t before = huge_page_chunks();
    std::mt19937 rng(7);
    std::vector<std::pair<uint8_t*, size_t>> blocks;
    for (int i = 0; i < 200; ++i) {
        const size_t n = 1 + rng() % 300000;  // odd sizes: each must still start 64-aligned
        auto* p = static_cast<uint8_t*>(huge_page_alloc(n));
        ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << n;
        std::memset(p, i & 0xff, n);
        blocks.emplace_back(p, n);
    }
    // 60 MB in all: packed into at most one new 128 MiB chunk (the rest of a chunk that other
    // tests' models still use may take some), not one region each.
    EXPECT_LE(huge_page_chunks(), before + 1);
    for (size_t i = 0; i < blocks.size(); ++i) {
        const auto [p, n] = blocks[i];
        for (size_t j : {size_t{0}, n / 2, n - 1})
            ASSERT_EQ(p[j], static_cast<uint8_t>(i & 0xff)) << "block " << i << " overlaps";
    }
    // Freed in another order than allocated; the chunk goes only with its last allocation.
    const size_t during = huge_page_chunks();
    for (size_t i = 1; i < blocks.size(); i += 2) huge_page_free(blocks[i].first);
    EXPECT_EQ(huge_page_chunks(), during);
    for (size_t i = 0; i < blocks.size(); i += 2) huge_page_free(blocks[i].first);
    EXPECT_EQ(huge_page_chunks(), before);
}

TEST(HugePageAlloc, RequestsLargerThanAChunkGetTheirOwn) {
    const size_t before = huge_page_chunks();
    void* small = huge_page_alloc(1000);
    const size_t with_small = huge_page_chunks();
    const size_t big_bytes = (size_t{129} << 20) + 5;  // over the 128 MiB chunk; left untouched
    auto* big = static_cast<uint8_t*>(huge_page_alloc(big_bytes));
    ASSERT_EQ(reinterpret_cast<uintptr_t>(big) % kHugePageBytes, 0u);
    big[0] = 1;
    big[big_bytes - 1] = 2;
    EXPECT_EQ(huge_page_chunks(), with_small + 1);
    huge_page_free(big);
    EXPECT_EQ(huge_page_chunks(), with_small);
    huge_page_free(small);
    EXPECT_EQ(huge_page_chunks(), before);
}

TEST(HugePageAlloc, AlignedBufferOnHugePagesZeroFillsAndSaysWhereItLives) {
    AlignedBuffer<float> b(100003, true, Pages::Huge);
    EXPECT_EQ(b.pages(), Pages::Huge);
    for (size_t i = 0; i < b.size(); i += 997) EXPECT_EQ(b[i], 0.f);
    AlignedBuffer<float> moved = std::move(b);  // the deleter travels with the memory
    EXPECT_EQ(moved.pages(), Pages::Huge);
    EXPECT_EQ(AlignedBuffer<float>(10).pages(), Pages::Small);
}

template <typename F>
void for_each_bitlinear(const Model& m, F&& f) {
    for (const LayerWeights& L : m.impl().weights.layers) {
        for (const BitLinearWeight* w : L.bitlinears()) f(*w);
    }
}

std::vector<float> logits_of(const std::shared_ptr<const Model>& m) {
    InferenceEngine engine(EngineOptions{.threads = 2});
    auto session = engine.create_session(m, 32);
    const std::vector<int32_t> prompt = {1, 17, 99, 4, 250, 31, 7};
    const Tensor t = engine.forward(*session, prompt, true);
    const float* p = t.data_as<float>();
    return std::vector<float>(p, p + t.numel());
}

// The same file loaded both ways: identical weight bytes, identical logits, and the copies
// accounted for (mapped_bytes / huge_page_bytes, the tensors' engine formats).
void expect_same_model_both_ways(const std::string& path, const std::string& ternary_name) {
    const auto mapped = Model::load(path, {.weight_memory = WeightMemory::Mapped});
    const auto huge = Model::load(path, {.weight_memory = WeightMemory::HugePages});
    EXPECT_GT(mapped->info().mapped_bytes, 0u);
    EXPECT_EQ(mapped->info().huge_page_bytes, 0u) << "a tiny model's buffers are under 1 MiB";
    EXPECT_EQ(huge->info().mapped_bytes, 0u);
    EXPECT_EQ(huge->info().huge_page_bytes, mapped->info().mapped_bytes);
    EXPECT_EQ(huge->info().engine_bytes, mapped->info().engine_bytes);

    std::vector<const BitLinearWeight*> a, b;
    for_each_bitlinear(*mapped, [&](const BitLinearWeight& w) { a.push_back(&w); });
    for_each_bitlinear(*huge, [&](const BitLinearWeight& w) { b.push_back(&w); });
    ASSERT_EQ(a.size(), b.size());
    for (size_t i = 0; i < a.size(); ++i) {
        const size_t bytes = a[i]->view.row_bytes() * static_cast<size_t>(a[i]->out_features());
        EXPECT_EQ(b[i]->packed.pages(), Pages::Huge) << b[i]->name;
        EXPECT_EQ(b[i]->view.data, b[i]->packed.data()) << b[i]->name;
        EXPECT_EQ(std::memcmp(a[i]->view.data, b[i]->view.data, bytes), 0) << b[i]->name;
    }
    const DenseMatrix& ea = mapped->impl().weights.embedding;
    const DenseMatrix& eb = huge->impl().weights.embedding;
    EXPECT_EQ(eb.owned.pages(), Pages::Huge);
    EXPECT_EQ(std::memcmp(ea.data, eb.data, ea.bytes()), 0);
    for (const TensorInfo& t : huge->info().tensors) {
        if (t.name.find("attn_q") != std::string::npos) {
            EXPECT_EQ(t.engine_format, ternary_name == "ternary2"
                                           ? with_row_groups("ternary2 (huge pages)")
                                           : ternary_name + " (huge pages)");
        }
    }
    EXPECT_EQ(logits_of(mapped), logits_of(huge)) << path;
}

TEST(WeightMemory, EngineGgufInHugePagesEqualsTheMappedFile) {
    ScratchDir dir("weight-memory");
    const auto source = Model::load(model_dir("tiny-packed"));
    for (const auto& [type, name] :
         {std::pair{gguf::BITNET_T2, "ternary2"}, std::pair{gguf::BITNET_T5, "ternary5"}}) {
        const std::string path = dir.file(std::string(name) + ".gguf");
        export_gguf(*source, nullptr, path,
                    {.ternary_type = type, .embedding_type = gguf::BITNET_I8R});
        SCOPED_TRACE(name);
        expect_same_model_both_ways(path, name);
    }
}

TEST(WeightMemory, AutoKeepsSmallTensorsMapped) {
    // Auto copies from 1 MiB on (and only where the OS offers huge pages): the tiny model's
    // tensors all stay in the mapping, as before WeightMemory existed.
    ScratchDir dir("weight-memory-auto");
    const std::string path = dir.file("t2.gguf");
    export_gguf(*Model::load(model_dir("tiny-packed")), nullptr, path, {});
    const auto m = Model::load(path);
    EXPECT_EQ(m->info().huge_page_bytes, 0u);
    EXPECT_EQ(m->info().mapped_bytes,
              Model::load(path, {.weight_memory = WeightMemory::Mapped})->info().mapped_bytes);
}

TEST(WeightMemory, SafetensorsEmbeddingInHugePagesGivesTheSameLogits) {
    const auto mapped =
        Model::load(model_dir("tiny-packed"), {.weight_memory = WeightMemory::Mapped});
    const auto huge =
        Model::load(model_dir("tiny-packed"), {.weight_memory = WeightMemory::HugePages});
    const DenseMatrix& e = huge->impl().weights.embedding;
    EXPECT_EQ(e.owned.pages(), Pages::Huge);
    EXPECT_EQ(e.data, e.owned.data());
    EXPECT_EQ(huge->info().mapped_bytes, 0u);
    EXPECT_EQ(huge->info().huge_page_bytes, mapped->info().mapped_bytes);
    EXPECT_EQ(logits_of(mapped), logits_of(huge));
}

TEST(WeightMemory, OptionsReachTheModelCacheKey) {
    // A model loaded mapped is not handed out for a request of huge pages, and vice versa.
    ModelCache cache(size_t{1} << 30);
    const auto a = cache.get(model_dir("tiny-packed"), {.weight_memory = WeightMemory::Mapped});
    const auto b = cache.get(model_dir("tiny-packed"), {.weight_memory = WeightMemory::HugePages});
    EXPECT_NE(a.get(), b.get());
    EXPECT_EQ(b->info().mapped_bytes, 0u);
    EXPECT_STREQ(weight_memory_name(WeightMemory::HugePages), "huge pages");
}

}  // namespace
}  // namespace bitnet::test
