// Writes the seed corpus of fuzz_gguf: tiny GGUF files (each under 8 KB) made with the engine's
// own writer and codecs, covering every value kind, every tensor type, v2 and v3, a custom
// alignment and a metadata-only file.
//
//     build-fuzz/tests/fuzz/make_corpus_gguf tests/fuzz/corpus_gguf
#include <cstdio>
#include <string>
#include <vector>

#include "bitnet/error.h"
#include "model/format/ggml_ternary.h"
#include "model/format/gguf_writer.h"

namespace {

using namespace bitnet::gguf;

std::vector<int8_t> ternary(int64_t n, int seed) {
    std::vector<int8_t> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = static_cast<int8_t>((i * 7 + seed * 5) % 3 - 1);
    return v;
}

std::vector<float> floats(int64_t n, int seed) {
    std::vector<float> v(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) v[i] = 0.25f * static_cast<float>((i * 5 + seed) % 9 - 4);
    return v;
}

std::vector<uint8_t> dense(uint32_t type, const std::vector<float>& x) {
    std::vector<uint8_t> out(*tensor_bytes(type, {static_cast<int64_t>(x.size())}));
    encode_row_f32(type, x.data(), static_cast<int64_t>(x.size()), out.data());
    return out;
}

void add_ternary(Writer& w, const std::string& name, uint32_t type, int64_t rows, int64_t cols,
                 float alpha, int seed) {
    const std::vector<int8_t> v = ternary(rows * cols, seed);
    w.add_tensor(name, {cols, rows}, type, encode_ternary(type, v.data(), rows, cols, alpha, name));
}

void tokenizer_keys(Writer& w) {
    w.set_string("tokenizer.ggml.model", "gpt2");
    w.set_string("tokenizer.ggml.pre", "llama-bpe");
    w.set_string_array("tokenizer.ggml.tokens", {"a", "b", "ab", "<|begin_of_text|>"});
    w.set_f32_array("tokenizer.ggml.scores", {0, 0, 0, 0});
    w.set_i32_array("tokenizer.ggml.token_type", {1, 1, 1, 3});
    w.set_string_array("tokenizer.ggml.merges", {"a b"});
    w.set_u32("tokenizer.ggml.bos_token_id", 3);
    w.set_bool("tokenizer.ggml.add_bos_token", true);
}

Writer tq2_model() {
    Writer w;
    w.set_string("general.architecture", "bitnet-25");
    w.set_u32("bitnet-25.block_count", 1);
    w.set_u32("bitnet-25.embedding_length", 256);
    w.set_f32("bitnet-25.attention.layer_norm_rms_epsilon", 1e-5f);
    tokenizer_keys(w);
    w.add_tensor("token_embd.weight", {256, 4}, GGML_F16, dense(GGML_F16, floats(1024, 1)));
    w.add_tensor("output_norm.weight", {256}, GGML_F32, dense(GGML_F32, floats(256, 2)));
    add_ternary(w, "blk.0.attn_q.weight", GGML_TQ2_0, 3, 256, 0.75f, 3);
    return w;
}

Writer tq1_i2s_q8() {
    Writer w;
    w.set_string("general.architecture", "bitnet");
    w.set_alignment(64);
    w.set_i8("i8", -3);
    w.set_u16("u16", 7);
    w.set_i16("i16", -7);
    w.set_u64("u64", 1ull << 40);
    w.set_i64("i64", -(1ll << 40));
    w.set_f64("f64", 0.5);
    w.set_u8("u8", 200);
    add_ternary(w, "blk.0.ffn_up.weight", GGML_TQ1_0, 2, 256, 1.25f, 4);
    add_ternary(w, "blk.0.ffn_down.weight", GGML_I2_S, 3, 128, 0.5f, 5);
    std::vector<uint8_t> q8(*tensor_bytes(GGML_Q8_0, {64, 2}));
    encode_q8_0(floats(128, 6).data(), 128, q8.data());
    w.add_tensor("token_embd.weight", {64, 2}, GGML_Q8_0, q8);
    return w;
}

Writer engine_layouts() {
    Writer w;
    w.set_version(2);
    w.set_string("general.architecture", "bitnet-25");
    w.set_string("bitnet.engine.layout", "seed");
    Value nested;
    nested.type = ValueType::Array;
    nested.elem_type = ValueType::Array;
    Value inner;
    inner.type = ValueType::Array;
    inner.elem_type = ValueType::I32;
    inner.arr_i = {1, -2, 3};
    nested.items = {inner, inner};
    w.set("nested", nested);
    add_ternary(w, "blk.0.attn_k.weight", BITNET_T2, 3, 100, 0.3f, 7);
    const std::vector<float> emb = floats(35, 8);
    w.add_tensor("token_embd.weight", {7, 5}, BITNET_I8R, encode_i8r(emb.data(), 5, 7));
    w.add_tensor("blk.0.attn_norm.weight", {5, 3}, GGML_BF16, dense(GGML_BF16, floats(15, 9)));
    w.add_tensor("blk.0.attn_v.weight", {330, 2}, BITNET_T5,
                 std::vector<uint8_t>(*tensor_bytes(BITNET_T5, {330, 2}), 0x11));
    return w;
}

Writer dense_ternary() {
    Writer w;
    w.set_string("general.architecture", "llama");
    const std::vector<int8_t> t = ternary(240, 10);
    std::vector<float> x(t.size());
    for (size_t i = 0; i < t.size(); ++i) x[i] = 0.0625f * t[i];
    std::vector<uint8_t> f16(*tensor_bytes(GGML_F16, {40, 6}));
    encode_row_f32(GGML_F16, x.data(), 240, f16.data());
    w.add_tensor("blk.0.attn_q.weight", {40, 6}, GGML_F16, f16);
    std::vector<uint8_t> f32(*tensor_bytes(GGML_F32, {48, 5}));
    encode_row_f32(GGML_F32, x.data(), 240, f32.data());
    w.add_tensor("blk.0.attn_k.weight", {48, 5}, GGML_F32, f32);
    return w;
}

Writer metadata_only() {
    Writer w;
    w.set_string("general.architecture", "bitnet-b1.58");
    tokenizer_keys(w);
    w.set_string("tokenizer.chat_template", "{{ messages }}");
    w.set_pad_end(false);
    return w;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s OUTPUT_DIR\n", argv[0]);
        return 2;
    }
    const std::string dir = argv[1];
    try {
        tq2_model().write(dir + "/seed_tq2");
        tq1_i2s_q8().write(dir + "/seed_tq1_i2s_q8");
        engine_layouts().write(dir + "/seed_engine_v2");
        dense_ternary().write(dir + "/seed_dense_ternary");
        metadata_only().write(dir + "/seed_metadata_only");
    } catch (const bitnet::Error& e) {
        std::fprintf(stderr, "%s\n", e.what());
        return 1;
    }
    return 0;
}
