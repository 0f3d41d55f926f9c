#!/usr/bin/env python3
"""Render chat conversations with transformers' apply_chat_template: golden strings for the Rust chat tests.

Uses tests/fixtures/tokenizer (Mixtral-Instruct's template from tokenizer_config.json) and one extra
template in the style of newer Mistral/Llama templates (system message, loop.last, .strip(),
namespace, add_generation_prompt) to exercise what minijinja must support.

Usage: tools/golden_chat.py [--out tests/fixtures/tokenizer/chat_golden.json]
Each case: {name, template (null = the tokenizer's own), messages, add_generation_prompt,
            expected (string or null), error (the exception message or null)}.
"""
import argparse
import json
import os

from transformers import AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, "..", "tests", "fixtures", "tokenizer")

SYSTEM_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system = messages[0]['content'].strip() %}{%- set loop_messages = messages[1:] %}"
    "{%- else %}{%- set system = none %}{%- set loop_messages = messages %}{%- endif %}\n"
    "{{- bos_token }}\n"
    "{%- set ns = namespace(n_user=0) %}\n"
    "{%- for message in loop_messages %}\n"
    "    {%- if message['role'] == 'user' %}\n"
    "        {%- set ns.n_user = ns.n_user + 1 %}\n"
    "        {%- if loop.last and system %}\n"
    "            {{- '[INST] ' + system + '\\n\\n' + message['content'].strip() + ' [/INST]' }}\n"
    "        {%- else %}\n"
    "            {{- '[INST] ' + message['content'].strip() + ' [/INST]' }}\n"
    "        {%- endif %}\n"
    "    {%- elif message['role'] == 'assistant' %}\n"
    "        {{- ' ' + message['content'] | trim + eos_token }}\n"
    "    {%- else %}\n"
    "        {{- raise_exception('Only user, assistant and system roles are supported, got ' + message['role']) }}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{%- if add_generation_prompt %}{{- ' ' }}{%- endif %}\n"
    "{#- users: {{ ns.n_user }} #}"
)

U, A, S = "user", "assistant", "system"


def m(role, content):
    return {"role": role, "content": content}


CASES = [
    ("one_turn", None, [m(U, "Hello!")], False),
    ("one_turn_gen_prompt", None, [m(U, "What is 2+2?")], True),
    ("multi_turn", None, [m(U, "Hi"), m(A, "Hello! How can I help?"), m(U, "Tell me a joke.")], False),
    ("ends_with_assistant", None, [m(U, "Hi"), m(A, "Hey")], False),
    ("unicode_and_newlines", None, [m(U, "  Привет 👋\nline two\t"), m(A, " 你好 "), m(U, "")], False),
    ("markers_in_content", None, [m(U, "[INST] nested [/INST] <s></s>")], False),
    ("system_rejected", None, [m(S, "Be brief."), m(U, "Hi")], False),
    ("not_alternating", None, [m(U, "a"), m(U, "b")], False),
    ("assistant_first", None, [m(A, "a")], False),
    ("tool_role", None, [m(U, "a"), m("tool", "b")], False),
    ("empty", None, [], False),
    ("sys_template_system", SYSTEM_TEMPLATE, [m(S, "  Be brief.  "), m(U, " Hi "), m(A, " Hello "), m(U, "Bye")], True),
    ("sys_template_no_system", SYSTEM_TEMPLATE, [m(U, "Hi"), m(A, "Yo")], False),
    ("sys_template_bad_role", SYSTEM_TEMPLATE, [m(U, "Hi"), m("tool", "x")], False),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(FIXTURE, "chat_golden.json"))
    args = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(FIXTURE)
    out = []
    for name, template, messages, gen in CASES:
        case = {"name": name, "template": template, "messages": messages, "add_generation_prompt": gen,
                "expected": None, "error": None}
        try:
            case["expected"] = tok.apply_chat_template(messages, chat_template=template, tokenize=False,
                                                       add_generation_prompt=gen)
        except Exception as e:  # TemplateError from raise_exception
            case["error"] = str(e)
        out.append(case)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print(f"wrote {args.out}: {len(out)} cases")


if __name__ == "__main__":
    main()
