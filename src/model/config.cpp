#include "model/config.h"

#include <nlohmann/json.hpp>

#include "bitnet/error.h"

namespace bitnet {

namespace {

using json = nlohmann::json;

[[noreturn]] void bad(const std::string& origin, const std::string& field, const std::string& why) {
    throw Error(ErrorCode::InvalidConfig, origin + ": field '" + field + "' " + why);
}

int get_int(const json& j, const char* key, const std::string& origin, bool required,
            int fallback) {
    const std::string field = key;
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) {
        if (required) bad(origin, field, "is missing");
        return fallback;
    }
    if (!it->is_number_integer()) bad(origin, field, "must be an integer");
    const int64_t v = it->get<int64_t>();
    if (v < INT32_MIN || v > INT32_MAX) bad(origin, field, "is out of range");
    return static_cast<int>(v);
}

float get_float(const json& j, const char* key, const std::string& origin, float fallback,
                const std::string& prefix = "") {
    const std::string field = prefix + key;
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_number()) bad(origin, field, "must be a number");
    return it->get<float>();
}

bool get_bool(const json& j, const char* key, const std::string& origin, bool fallback,
              const std::string& prefix = "") {
    const std::string field = prefix + key;
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) bad(origin, field, "must be true or false");
    return it->get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& origin,
                       const std::string& fallback, const std::string& prefix = "") {
    const std::string field = prefix + key;
    const auto it = j.find(key);
    if (it == j.end() || it->is_null()) return fallback;
    if (!it->is_string()) bad(origin, field, "must be a string");
    return it->get<std::string>();
}

}  // namespace

ModelConfig parse_model_config(const std::string& json_text, const std::string& origin) {
    json j;
    try {
        j = json::parse(json_text);
    } catch (const json::exception& e) {
        throw Error(ErrorCode::ParseError, origin + ": not valid JSON: " + e.what());
    }
    if (!j.is_object()) throw Error(ErrorCode::ParseError, origin + ": not a JSON object");

    ModelConfig c;
    const auto arch = j.find("architectures");
    if (arch == j.end() || !arch->is_array() || arch->empty() || !(*arch)[0].is_string()) {
        bad(origin, "architectures", "must be a non-empty array of strings");
    }
    c.architecture = (*arch)[0].get<std::string>();
    c.model_type = get_string(j, "model_type", origin, "");

    c.hidden_size = get_int(j, "hidden_size", origin, true, 0);
    c.intermediate_size = get_int(j, "intermediate_size", origin, true, 0);
    c.num_layers = get_int(j, "num_hidden_layers", origin, true, 0);
    c.num_heads = get_int(j, "num_attention_heads", origin, true, 0);
    c.num_kv_heads = get_int(j, "num_key_value_heads", origin, false, c.num_heads);
    c.vocab_size = get_int(j, "vocab_size", origin, true, 0);
    c.max_position_embeddings = get_int(j, "max_position_embeddings", origin, false, 2048);
    c.rms_norm_eps = get_float(j, "rms_norm_eps", origin, 1e-6f);
    c.rope_theta = get_float(j, "rope_theta", origin, 10000.f);
    c.tie_word_embeddings =
        get_bool(j, "tie_word_embeddings", origin, true);  // transformers' default
    if (c.num_heads > 0) {
        c.head_dim = get_int(j, "head_dim", origin, false, c.hidden_size / c.num_heads);
        if (!j.contains("head_dim") && c.hidden_size % c.num_heads != 0) {
            bad(origin, "num_attention_heads",
                "(" + std::to_string(c.num_heads) + ") does not divide hidden_size (" +
                    std::to_string(c.hidden_size) + ")");
        }
    }
    if (const auto rs = j.find("rope_scaling"); rs != j.end() && !rs->is_null()) {
        if (!rs->is_object()) bad(origin, "rope_scaling", "must be an object or null");
        const std::string type = rs->contains("rope_type")
                                     ? get_string(*rs, "rope_type", origin, "", "rope_scaling.")
                                     : get_string(*rs, "type", origin, "", "rope_scaling.");
        if (type != "default") {
            throw Error(ErrorCode::UnsupportedFormat,
                        origin + ": field 'rope_scaling' (type '" + type + "') is not supported");
        }
    }

    const std::string act = get_string(j, "hidden_act", origin, "silu");
    if (act == "relu2") {
        c.activation = Activation::Relu2;
    } else if (act == "silu" || act == "swish") {
        c.activation = Activation::Silu;
    } else {
        throw Error(ErrorCode::UnsupportedFormat, origin + ": field 'hidden_act' value '" + act +
                                                      "' is not supported (relu2, silu)");
    }

    // The three families of docs/BITNET.md differ in sub-norms and in how BitLinear is stored.
    if (c.architecture == "BitNetForCausalLM") {
        c.sub_norms = true;
        c.quantization_mode = QuantizationMode::Offline;
    } else if (c.architecture == "BitnetForCausalLM") {  // 1bitLLM: master weights, inner_attn_ln
        c.sub_norms = true;
        c.quantization_mode = QuantizationMode::Online;
    } else if (c.architecture == "LlamaForCausalLM") {
        c.sub_norms = false;
        c.quantization_mode = QuantizationMode::Offline;
        c.scale_convention = ScaleConvention::Divide;
    } else {
        throw Error(ErrorCode::UnsupportedFormat,
                    origin + ": field 'architectures' names '" + c.architecture +
                        "'; supported: BitNetForCausalLM, BitnetForCausalLM, LlamaForCausalLM");
    }

    if (const auto q = j.find("quantization_config"); q != j.end() && !q->is_null()) {
        if (!q->is_object()) bad(origin, "quantization_config", "must be an object");
        const std::string method =
            get_string(*q, "quant_method", origin, "bitnet", "quantization_config.");
        if (method != "bitnet") {
            throw Error(ErrorCode::UnsupportedFormat,
                        origin + ": field 'quantization_config.quant_method' value '" + method +
                            "' is not supported");
        }
        const std::string linear =
            get_string(*q, "linear_class", origin, "bitlinear", "quantization_config.");
        if (linear == "autobitlinear") {
            c.scale_convention = ScaleConvention::Multiply;
        } else if (linear == "bitlinear") {
            c.scale_convention = ScaleConvention::Divide;
        } else {
            throw Error(ErrorCode::UnsupportedFormat,
                        origin + ": field 'quantization_config.linear_class' value '" + linear +
                            "' is not supported");
        }
        const std::string mode =
            get_string(*q, "quantization_mode", origin, "offline", "quantization_config.");
        if (mode == "offline") {
            c.quantization_mode = QuantizationMode::Offline;
        } else if (mode == "online") {
            c.quantization_mode = QuantizationMode::Online;
        } else {
            throw Error(ErrorCode::UnsupportedFormat,
                        origin + ": field 'quantization_config.quantization_mode' value '" + mode +
                            "' is not supported");
        }
        c.bitlinear_input_norm =
            get_bool(*q, "use_rms_norm", origin, false, "quantization_config.");
        c.bitlinear_input_norm_eps =
            get_float(*q, "rms_norm_eps", origin, 1e-6f, "quantization_config.");
    } else if (c.architecture == "LlamaForCausalLM") {
        throw Error(
            ErrorCode::UnsupportedFormat,
            origin +
                ": LlamaForCausalLM without a bitnet 'quantization_config' is not a BitNet model");
    }

    c.bos_token_id = get_int(j, "bos_token_id", origin, false, -1);
    if (const auto eos = j.find("eos_token_id"); eos != j.end()) {
        if (eos->is_number_integer()) {
            c.eos_token_ids.push_back(eos->get<int>());
        } else if (eos->is_array()) {
            for (const json& e : *eos) {
                if (!e.is_number_integer()) bad(origin, "eos_token_id", "must hold integers");
                c.eos_token_ids.push_back(e.get<int>());
            }
        }
    }
    validate_model_config(c, origin);
    return c;
}

void validate_model_config(const ModelConfig& c, const std::string& origin) {
    auto positive = [&](int v, const char* field) {
        if (v <= 0) bad(origin, field, "must be positive (is " + std::to_string(v) + ")");
    };
    positive(c.hidden_size, "hidden_size");
    positive(c.intermediate_size, "intermediate_size");
    positive(c.num_layers, "num_hidden_layers");
    positive(c.num_heads, "num_attention_heads");
    positive(c.num_kv_heads, "num_key_value_heads");
    positive(c.head_dim, "head_dim");
    positive(c.vocab_size, "vocab_size");
    positive(c.max_position_embeddings, "max_position_embeddings");
    if (c.hidden_size > (1 << 20) || c.intermediate_size > (1 << 22) || c.num_layers > 4096 ||
        c.num_heads > 4096 || c.vocab_size > (1 << 24) || c.head_dim > 4096) {
        bad(origin, "hidden_size", "or another dimension is implausibly large");
    }
    if (c.num_heads % c.num_kv_heads != 0) {
        bad(origin, "num_key_value_heads",
            "(" + std::to_string(c.num_kv_heads) + ") does not divide num_attention_heads (" +
                std::to_string(c.num_heads) + ")");
    }
    if (c.head_dim % 2 != 0) bad(origin, "head_dim", "must be even for rotary embeddings");
    if (!(c.rms_norm_eps > 0.f)) bad(origin, "rms_norm_eps", "must be positive");
    if (!(c.rope_theta > 0.f)) bad(origin, "rope_theta", "must be positive");
}

}  // namespace bitnet
