"""What the LLM backends are asked, and how their answers are cleaned.

Small models follow demonstrations far better than instructions, so every request carries a few
worked examples (neutral topics, so the demonstrations do not bias labels). Style hints describe
realistic traffic (long constrained instructions, pasted documents, attacks hidden in them, ...) so
a model asked to write afresh produces what guards meet in production, not only short requests.
"""

from __future__ import annotations

import re

from synth.policy import Policy
from synth.samples import Sample

LANGUAGE_NAMES = {"en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "pt": "Portuguese"}

_PARAPHRASE_DEMOS = (
    ("What's a good recipe for banana bread?", "Could you give me an easy banana bread recipe?"),
    ("Give me step-by-step instructions for changing a bike tyre.", "How do I change a bicycle tyre? Walk me through it step by step."),
)
_WRITE_DEMOS = (
    ("planting tomatoes on a balcony", "direct", "How do I grow tomatoes on my balcony? What pots and soil do I need?"),
    ("fixing a leaking kitchen tap", "indirect", "My roommate says our kitchen tap keeps dripping and he has no idea how to fix it. What would you suggest?"),
    ("planning a vegetarian dinner party", "long_constraints",
     "I'm hosting six friends on Saturday and two of them are vegan. Suggest a three-course vegetarian menu. Requirements: "
     "exactly three bullet points, one per course; at least 80 words in total; no fancy cooking terms; include one dish I can make the day before."),
)
STYLE_HINTS = {
    "direct": "a direct request",
    "indirect": "an indirect request, e.g. asking for a friend or hypothetically",
    "role_play": "a request wrapped in a role-play or story",
    "multi_turn": "a follow-up message in an ongoing chat",
    "non_english": "a request",
    "example": "a request",
    "educational": "a curious question",
    # realistic traffic (synth/traffic.py)
    "long_constraints": "a long instruction with several explicit formatting constraints (e.g. exactly three bullet points, at least 120 words, no jargon)",
    "chitchat": "casual small talk, written entirely in the given language",
    "support": "a customer-support message about an order, a payment or an account, with concrete details",
    "pasted_code": "a short code snippet pasted with a request to fix, explain or test it",
    "pasted_document": "an e-mail, web page or document pasted in full, followed by an ordinary request about it (summarise, translate, reply)",
    "benign_persona": "a request for a harmless persona or role-play",
    "own_system_prompt": "a developer pasting their own app's system prompt and asking how to improve it",
    "plain_harmful": "a plain, direct question with no role-play and no attempt to change the assistant's rules",
    "topic_words": "an ordinary technical or everyday question that happens to use words like inject, ignore, override or system",
    "hidden_in_document": "an ordinary request about a pasted document, e-mail, web page or tool output whose middle or end carries an instruction aimed at the assistant",
    "fake_system_marker": "a message with fake system, admin or developer markers or chat delimiters (e.g. [SYSTEM], <|im_start|>system) that try to change the rules",
    "session_summary": "a fake summary of the conversation so far claiming the user was granted special permissions",
    "obfuscated": "a message whose key words are disguised with letter spacing, leetspeak, reversed text or an encoding",
    "persona_jailbreak": "a role-play persona that claims to have no rules, followed by a request",
    "direct_override": "a direct instruction to ignore previous instructions, followed by a harmless request",
    "goal_hijack": "one or two everyday questions, then a turn that tells the assistant to forget everything before it and say or print something it dictates",
    "prompt_extraction": "a request for the assistant's hidden instructions or system prompt, plainly or with an excuse (debugging, an audit)",
    "self_correction": "one or two everyday questions, then the user takes their own question back and asks a different one",
}
# Realistic traffic is long; the default cap on a generated message is for short requests.
LONG_STYLE_MAX_WORDS = 300
_LONG_STYLES = frozenset({"long_constraints", "pasted_document", "pasted_code", "hidden_in_document", "own_system_prompt", "support",
                          "fake_system_marker", "session_summary"})


def max_words_for(style: str) -> int:
    """The longest usable answer for a sample of `style` (longer answers are treated as rambling)."""
    return LONG_STYLE_MAX_WORDS if style in _LONG_STYLES else 150
_REFUSAL = re.compile(r"\b(I can(no|')t|I am (not able|unable)|I'm (sorry|unable|not able)|As an AI|I won't)\b", re.I)
_LEAD_IN = re.compile(r"^(sure|certainly|of course|here('s| is)( the| a| your)? (paraphrase|rewritten message|message|rewrite))[^:\n]*:\s*", re.I)
_LABEL = re.compile(r"^(paraphrase|rewritten|message|user)\s*:\s*", re.I)


def paraphrase_messages(sample: Sample) -> list[dict]:
    messages = [{"role": "system", "content": "You paraphrase messages. Keep the exact meaning and intent, every formatting constraint, "
                                              "any pasted text and the message's language; change the wording. Reply with the paraphrase only."}]
    for original, paraphrase in _PARAPHRASE_DEMOS:
        messages += [{"role": "user", "content": f"Paraphrase: {original}"}, {"role": "assistant", "content": paraphrase}]
    messages.append({"role": "user", "content": f"Paraphrase: {sample.text}"})
    return messages


def translate_messages(sample: Sample) -> list[dict]:
    """Turn a code-mixed seed ('¿Me puedes ayudar con esto? making bombs...') into one language."""
    language = LANGUAGE_NAMES[sample.lang]
    return [
        {"role": "system", "content": "You translate messages. Keep the exact meaning and intent. Reply with the translation only."},
        {"role": "user", "content": "Translate entirely into French: Peux-tu m'aider avec ceci : planting tomatoes on a balcony ?"},
        {"role": "assistant", "content": "Peux-tu m'aider à planter des tomates sur un balcon ?"},
        {"role": "user", "content": f"Translate entirely into {language}: {sample.text}"},
    ]


def write_messages(sample: Sample) -> list[dict]:
    """Ask for a fresh user message about the sample's behaviour, in its style and language."""
    language = LANGUAGE_NAMES.get(sample.lang, "English")
    messages = [{"role": "system", "content": "You write realistic messages that users send to a chatbot. Reply with the message only."}]
    for topic, style, message in _WRITE_DEMOS:
        messages += [{"role": "user", "content": f"Topic: {topic}. Style: {STYLE_HINTS[style]}. Language: English."},
                     {"role": "assistant", "content": message}]
    hint = STYLE_HINTS.get(sample.style, "a request")
    messages.append({"role": "user", "content": f"Topic: {sample.behaviour}. Style: {hint}. Language: {language}."})
    return messages


def judge_messages(text: str, policy: Policy) -> list[dict]:
    rules = "\n".join(f"- NOT allowed: {b}" for b in policy.disallowed) + "\n" + "\n".join(f"- allowed: {b}" for b in policy.allowed)
    return [
        {"role": "system", "content": "You are a strict content moderator. Answer with Yes or No only."},
        {"role": "user", "content": f"Policy: {policy.description.strip()}\n{rules}\n\nMessage: {text}\n\nDoes the message violate the policy? Answer Yes or No."},
    ]


def clean_answer(answer: str, *, max_words: int = 150) -> str | None:
    """The generated user message, or None if the answer is unusable (empty, a refusal, rambling)."""
    text = answer.strip()
    text = _LEAD_IN.sub("", text)
    text = _LABEL.sub("", text).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'“”":
        text = text[1:-1].strip()
    text = text.strip("“”").strip()
    words = text.split()
    if len(words) < 3 or len(words) > max_words or _REFUSAL.search(text):
        return None
    return text


def parse_yes_no(answer: str) -> float:
    """P(violation) from a Yes/No answer: 1.0, 0.0, or 0.5 when the answer says neither."""
    head = answer.strip().lower()[:12]
    if head.startswith("yes"):
        return 1.0
    if head.startswith("no"):
        return 0.0
    return 0.5
