"""The corpus (as prepare_corpus.py writes it), the byte-level BPE tokenizer trained on it, and
the token streams training and evaluation read."""
import gzip
import json
import os

import torch

DOC_SEPARATOR = "<|end_of_text|>"
BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
SPECIAL_TOKENS = [BOS, EOS, EOT]

# Llama 3's pre-tokenizer split, as ../shared/reference/make_reference.py uses it.
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")

# The template of microsoft/bitnet-b1.58-2B-4T's conversations (User: ...<|eot_id|>Assistant: ).
CHAT_TEMPLATE = ("{%- for message in messages -%}"
                 "{{ message['role'] | capitalize }}: {{ message['content'] | trim }}<|eot_id|>"
                 "{%- endfor -%}"
                 "{%- if add_generation_prompt -%}{{ 'Assistant: ' }}{%- endif -%}")


def read_documents(corpus_dir, split):
    """The documents of train or heldout; reads SPLIT.txt or, if absent, SPLIT.txt.gz."""
    path = os.path.join(corpus_dir, f"{split}.txt")
    if os.path.exists(path):
        text = open(path, encoding="utf-8").read()
    else:
        with gzip.open(path + ".gz", "rt", encoding="utf-8") as f:
            text = f.read()
    docs = [d.strip("\n") for d in text.split("\n" + DOC_SEPARATOR + "\n")]
    return [d for d in docs if d]


def train_tokenizer(documents, vocab_size):
    """Byte-level BPE with the Llama 3 split; BOS is added by the post-processor, as Llama 3 does.
    The special tokens take the last three ids."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE(byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size - len(SPECIAL_TOKENS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(documents, trainer)
    tok.add_special_tokens(SPECIAL_TOKENS)
    bos = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos)])
    assert tok.get_vocab_size() == vocab_size, tok.get_vocab_size()
    return tok


def load_tokenizer(path):
    from tokenizers import Tokenizer
    return Tokenizer.from_file(path)


def write_tokenizer_files(tok, out_dir, model_max_length):
    """tokenizer.json and tokenizer_config.json as transformers and the engine read them."""
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    cfg = {"bos_token": BOS, "eos_token": EOS, "tokenizer_class": "PreTrainedTokenizerFast",
           "model_max_length": model_max_length, "clean_up_tokenization_spaces": False,
           "chat_template": CHAT_TEMPLATE}
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(cfg, f, indent=2)


def token_stream(tok, documents):
    """All documents as one int32 stream: BOS (from the post-processor), the text, EOS."""
    eos = tok.token_to_id(EOS)
    ids = []
    for enc in tok.encode_batch(documents):
        ids.extend(enc.ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int32)


def random_windows(stream, batch, ctx, generator):
    """batch windows of ctx + 1 tokens at random offsets: inputs and next-token targets."""
    starts = torch.randint(0, stream.numel() - ctx - 1, (batch,), device=stream.device, generator=generator)
    idx = starts[:, None] + torch.arange(ctx + 1, device=stream.device)[None, :]
    w = stream[idx].long()
    return w[:, :-1], w[:, 1:]


def eval_windows(stream, ctx):
    """Consecutive non-overlapping windows covering the stream (the tail that does not fill a
    window is dropped): inputs and targets [n, ctx]."""
    n = (stream.numel() - 1) // ctx
    x = stream[: n * ctx].view(n, ctx).long()
    y = stream[1: n * ctx + 1].view(n, ctx).long()
    return x, y
