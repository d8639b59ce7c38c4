// The tokenizer.* metadata of a GGUF file: reading it into a GgufVocab, and writing one.
#pragma once

#include "tokenizer/gguf_vocab.h"

namespace bitnet {

namespace gguf {
class File;
class Writer;
}  // namespace gguf

// Missing optional keys stay empty; a key of the wrong type or an id outside int32 throws
// bitnet::Error (ParseError) naming the file and key. make_gguf_tokenizer checks the rest.
GgufVocab gguf_vocab_from_file(const gguf::File& file);

// Sets the vocabulary's keys on `writer` with the value types gguf-py writes (ids as u32,
// token types as i32, scores as f32); empty fields and unset options are left out.
void add_gguf_vocab_metadata(const GgufVocab& vocab, gguf::Writer& writer);

}  // namespace bitnet
