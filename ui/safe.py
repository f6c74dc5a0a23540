"""Text from the bot is shown as Markdown, but nothing in it may make the browser fetch anything
by itself: a Markdown image (``![alt](https://…)``, also reference-style) becomes a plain link the
user must click. Raw HTML is never enabled (Streamlit escapes it)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

_BREAK = "\u200b"  # a zero-width space between "!" and "[" turns an image into a link


def no_images(text: str) -> str:
    return text.replace("![", f"!{_BREAK}[")


def no_images_stream(pieces: Iterable[str]) -> Iterator[str]:
    """``no_images`` over a stream whose pieces may split "![" in two."""
    previous = ""
    for piece in pieces:
        if previous.endswith("!") and piece.startswith("["):
            piece = _BREAK + piece
        piece = no_images(piece)
        if piece:
            previous = piece
        yield piece
