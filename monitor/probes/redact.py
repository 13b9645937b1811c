"""Server text made fit for results and logs: printable, bounded, and without the secret."""

from __future__ import annotations

MASK = "********"


def printable(text: bytes | str, limit: int | None = 200) -> str:
    """Server text made safe for a log line or a label: no control characters, bounded
    unless `limit` is None (for text still to be scrubbed, which a cut could defeat)."""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    return _visible(text).strip()[:limit]


def secret_forms(secret: str, *sent: str) -> tuple[str, ...]:
    """Every form in which a secret may come back in server text, longest first: the raw
    value, each encoding it was `sent` in, and all of them as printable() shows them."""
    if not secret:
        return ()
    raw = {secret, *sent}
    forms = {form for text in raw for form in (text, _visible(text)) if form}
    return tuple(sorted(forms, key=lambda form: (-len(form), form)))


def scrub(text: str, forms: tuple[str, ...]) -> str:
    """Text with every form of a secret masked; longest forms go first, so none is left
    half-masked by a shorter one."""
    for form in forms:
        text = text.replace(form, MASK)
    return text


def _visible(text: str) -> str:
    return "".join(ch if ch.isprintable() else " " for ch in text)
