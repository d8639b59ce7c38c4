#!/usr/bin/env python3
"""Renders every *.jinja template here with real Jinja2, the way Hugging Face transformers
renders chat templates (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks, loopcontrols,
raise_exception, a tojson without ASCII escaping), on a few conversations, and writes
expected.json for tests/test_chat_template.cpp.

If ../shared/reference/llama3-tokenizer/tokenizer_config.json exists, its real chat_template is
rendered too, under "llama3-real" (the outputs only: the template itself stays out of the
repository).

Run with Debian's python3-jinja2:  /usr/bin/python3 tests/data/chat_templates/make_expected.py
"""
import json
import os
import sys

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED_CONFIG = os.path.join(HERE, "..", "..", "..", "..", "shared", "reference",
                             "llama3-tokenizer", "tokenizer_config.json")

CONVERSATIONS = {
    "system_user": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
    ],
    "multi_turn": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "  What is 2+2?  \n"},
    ],
    "single_user": [
        {"role": "user", "content": "Tell me a joke."},
    ],
    "unicode": [
        {"role": "system", "content": "Réponds en français 🙂"},
        {"role": "user", "content": "日本語で答えて: こんにちは\u00a0"},
        {"role": "assistant", "content": "はい！\t"},
        {"role": "user", "content": "Ünïcödé ✓ — «ok»"},
    ],
    "jinja_text": [
        {"role": "user", "content": "{{ x }} {% if %} {# no #}"},
        {"role": "assistant", "content": "literal {{ '}}' }} and {%- raw -%}"},
        {"role": "user", "content": "end"},
    ],
}

# bos/eos per template: the special tokens of the model family each one comes from.
TOKENS = {
    "llama3": ("<|begin_of_text|>", "<|eot_id|>"),
    "bitnet-2b4t": ("<|begin_of_text|>", "<|eot_id|>"),
    "llama2": ("<s>", "</s>"),
    "mistral": ("<s>", "</s>"),
    "gemma": ("<bos>", "<eos>"),
    "falcon3": ("", "<|endoftext|>"),
}
DEFAULT_TOKENS = ("<s>", "</s>")


def raise_exception(message):
    raise jinja2.exceptions.TemplateError(message)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    return env


def render_cases(env, source, name, bos, eos):
    template = env.from_string(source)
    cases = []
    for conv_name, messages in CONVERSATIONS.items():
        for gen in (False, True):
            case = {"template": name, "conversation": conv_name, "add_generation_prompt": gen,
                    "bos_token": bos, "eos_token": eos}
            try:
                case["output"] = template.render(messages=messages, add_generation_prompt=gen,
                                                 bos_token=bos, eos_token=eos)
            except jinja2.exceptions.TemplateError as e:
                case["error"] = str(e)
            cases.append(case)
    return cases


def main():
    env = environment()
    out = {"generator": "make_expected.py, Jinja2 " + jinja2.__version__,
           "conversations": CONVERSATIONS, "cases": []}
    for fname in sorted(os.listdir(HERE)):
        if not fname.endswith(".jinja"):
            continue
        name = fname[:-len(".jinja")]
        with open(os.path.join(HERE, fname), encoding="utf-8", newline="") as f:
            source = f.read()
        bos, eos = TOKENS.get(name, DEFAULT_TOKENS)
        out["cases"] += render_cases(env, source, name, bos, eos)
    if os.path.exists(SHARED_CONFIG):
        with open(SHARED_CONFIG, encoding="utf-8") as f:
            config = json.load(f)
        out["llama3-real"] = render_cases(env, config["chat_template"], "llama3-real",
                                          config.get("bos_token", ""), config.get("eos_token", ""))
    else:
        print("note: %s not found; llama3-real not generated" % SHARED_CONFIG, file=sys.stderr)
    with open(os.path.join(HERE, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
