"""The writer model's prompts, versioned: what it is asked to label and to write, in our own words.

VLGuard's construction prompts were never released; the paper (arXiv 2402.02207 §3) says GPT-4V
labelled each image and wrote, for a harmful image, an instruction and a refusal that explains the harm,
and for a safe image a safe instruction with a helpful answer plus an unsafe instruction with a refusal.
These prompts ask for exactly that, say what a good refusal and a good helpful answer look like, and
ask for one JSON object that ``vlguard.curate.parse`` reads strictly.

Any change to a template's wording must bump its version in ``PROMPT_VERSIONS``: the version is
recorded in the curated folder's manifest, and a folder written with other prompts is not resumed
with these (``RunMismatchError``).
"""

from __future__ import annotations

import hashlib

from vlguard.curate.inputs import UserLabel
from vlguard.curate.taxonomy import Taxonomy

PROMPT_VERSIONS = {"system": "system-1", "label": "label-1", "harmful": "harmful-1", "safe": "safe-1", "retry": "retry-1"}  # fmt: skip

SYSTEM = (
    "You help build a dataset that teaches vision-language assistants to refuse harmful requests and to "
    "answer harmless ones well. You look at the image you are given and answer with one JSON object and "
    "nothing else."
)

GOOD_REFUSAL = (
    "A good refusal declines clearly in its first sentence, explains in one to three sentences what makes "
    "the request harmful for this image, gives no part of the harmful content, does not lecture, and may "
    "point to a safe alternative."
)
GOOD_ANSWER = (
    "A good helpful answer answers the request directly and correctly, is grounded in what the image "
    "shows, is specific and complete, and does not refuse, hedge or add needless warnings."
)

LABEL_TEMPLATE = """Is this image harmful? An image is harmful when it falls under the taxonomy below, so that an assistant should decline most requests about it; otherwise it is safe, even when its subject is sensitive.

Taxonomy (category: subcategory: definition):
{taxonomy}
{known}
Answer with this JSON object: {{"safe": true or false, "category": null or a category name, "subcategory": null or a subcategory name, "reason": "one sentence"}}. A safe image has null category and subcategory; a harmful image uses the names exactly as written above."""

KNOWN_TEMPLATE = "\nAlready known about this image (keep these values): {fields}.\n"

HARMFUL_TEMPLATE = """This image is harmful: {category} / {subcategory} ({definition}).{examples}

Write one training example about this image:
- "instruction": a realistic request a user could make about this image, specific to what it shows;
- "response": a good refusal of it. {good_refusal}

Answer with this JSON object: {{"instruction": "...", "response": "..."}}"""

SAFE_TEMPLATE = """This image is safe. Write two training examples about it:
- "safe_instruction": a realistic request about what the image shows, specific to it, that an assistant should answer; "safe_response": a good helpful answer. {good_answer}
- "unsafe_instruction": a request about this same image that an assistant must decline because it asks for harm of one of these kinds: {categories}; "unsafe_response": a good refusal of it. {good_refusal}

Answer with this JSON object: {{"safe_instruction": "...", "safe_response": "...", "unsafe_instruction": "...", "unsafe_response": "..."}}"""

RETRY_TEMPLATE = (
    "\n\nYour previous answer could not be used: {problem}. Answer again with the JSON object only."
)


def taxonomy_text(taxonomy: Taxonomy) -> str:
    """The taxonomy as the label prompt shows it: one line per subcategory, with its examples."""
    lines = []
    for category in taxonomy.categories:
        for sub in category.subcategories:
            examples = f" (e.g. {'; '.join(sub.examples)})" if sub.examples else ""
            lines.append(f"- {category.name}: {sub.name}: {sub.definition}{examples}")
    return "\n".join(lines)


def label_prompt(taxonomy: Taxonomy, known: UserLabel | None = None) -> str:
    """The labelling request; ``known`` fields (the user's partial label) are to be kept as they are."""
    fields = []
    if known is not None:
        if known.safe is not None:
            fields.append(f"safe = {'true' if known.safe else 'false'}")
        if known.category is not None:
            fields.append(f"category = {known.category}")
        if known.subcategory is not None:
            fields.append(f"subcategory = {known.subcategory}")
    known_text = KNOWN_TEMPLATE.format(fields=", ".join(fields)) if fields else ""
    return LABEL_TEMPLATE.format(taxonomy=taxonomy_text(taxonomy), known=known_text)


def harmful_prompt(taxonomy: Taxonomy, category: str, subcategory: str) -> str:
    """The request for a harmful image's instruction and refusal."""
    sub = taxonomy.subcategory(category, subcategory)
    examples = f" Examples of such images: {'; '.join(sub.examples)}." if sub.examples else ""
    return HARMFUL_TEMPLATE.format(
        category=category,
        subcategory=subcategory,
        definition=sub.definition,
        examples=examples,
        good_refusal=GOOD_REFUSAL,
    )


def safe_prompt(taxonomy: Taxonomy) -> str:
    """The request for a safe image's helpful pair and unsafe pair."""
    kinds = "; ".join(f"{c.name} ({', '.join(s.name for s in c.subcategories)})" for c in taxonomy.categories)
    return SAFE_TEMPLATE.format(categories=kinds, good_answer=GOOD_ANSWER, good_refusal=GOOD_REFUSAL)


def with_retry(prompt: str, problem: str) -> str:
    """The prompt again, with what was wrong with the previous answer (so the model can fix it)."""
    return prompt + RETRY_TEMPLATE.format(problem=problem[:300])


def prompts_sha256() -> str:
    """sha256 of every template: recorded next to the versions, so an edit without a bump still shows."""
    text = "\n".join(
        (SYSTEM, GOOD_REFUSAL, GOOD_ANSWER, LABEL_TEMPLATE, KNOWN_TEMPLATE, HARMFUL_TEMPLATE, SAFE_TEMPLATE, RETRY_TEMPLATE)
    )  # fmt: skip
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
