"""Structure-aware chunking.

Headings become the chunk's breadcrumb (``Title > Section > Subsection``) and a chunk never
straddles a heading. Inside a section, paragraphs are packed up to ``max_tokens`` (measured with the
embedder's own tokenizer where it has one); an over-long paragraph is split at sentence
boundaries (a "sentence" still too long by words, and a word by characters, so a run of
characters without any break never becomes one giant chunk), and consecutive chunks of one
section share up to ``overlap_tokens`` of whole sentences so that a fact on a boundary is found
from either side.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sentencex

from ingest.limits import check_time

TokenCounter = Callable[[str], int]

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_WORDISH = re.compile(r"\w+|[^\w\s]", flags=re.UNICODE)


def approx_tokens(text: str) -> int:
    """Word-piece estimate for embedders without a tokenizer: ~1.3 pieces per word."""
    return int(len(_WORDISH.findall(text)) * 1.3) + 1


@dataclass(frozen=True)
class Section:
    path: tuple[str, ...]  # heading texts from the outermost down
    body: str


@dataclass(frozen=True)
class Chunk:
    index: int
    text: str
    section: str  # breadcrumb, " > "-joined

    def embed_text(self, title: str) -> str:
        """What is embedded and indexed: the context first, then the text."""
        head = self.section if self.section.startswith(title) else f"{title} > {self.section}"
        head = head.strip(" >")
        # A heading-less text whose first line is the title (JSON Lines rows) needs no prefix.
        if not head or head == title and self.text.startswith(title):
            return self.text
        return f"{head}\n\n{self.text}"


def split_sections(markdown: str) -> list[Section]:
    """Split Markdown-shaped text at ATX headings (not inside code fences)."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        text = "\n".join(body).strip()
        if text:
            sections.append(Section(tuple(h for _, h in stack), text))
        body.clear()

    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m:
            flush()
            level = len(m.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, m.group(2).strip()))
        else:
            body.append(line)
    flush()
    return sections


def _blocks(body: str) -> list[str]:
    """Paragraphs; the items of one list stay together as one block."""
    return [b.strip() for b in re.split(r"\n\s*\n", body) if b.strip()]


def _sentences(text: str, lang: str) -> list[str]:
    return [s.strip() for s in sentencex.segment(lang or "sv", text) if s.strip()]


def _hard_split(text: str, budget: int, count: TokenCounter) -> Iterator[str]:
    """Last resort for a 'sentence' longer than the budget: split by words, and a word longer
    than the budget by characters. Word counts are summed (linear, and never less than the
    count of the joined words for a word-piece tokenizer)."""
    piece: list[str] = []
    size = 0
    for word in text.split():
        n = count(word)
        if n > budget:
            if piece:
                yield " ".join(piece)
                piece, size = [], 0
            yield from _split_chars(word, budget, count)
            continue
        if piece and size + n > budget:
            yield " ".join(piece)
            piece, size = [], 0
        piece.append(word)
        size += n
    if piece:
        yield " ".join(piece)


# A piece cut out of a run of characters is never longer than this many characters per token of
# the budget, even when the tokenizer counts the whole run as one unknown token.
CHARS_PER_TOKEN_MAX = 8


def _split_chars(word: str, budget: int, count: TokenCounter) -> Iterator[str]:
    step = budget * CHARS_PER_TOKEN_MAX
    start = 0
    while start < len(word):
        check_time()
        piece = word[start : start + step]
        while step > 1 and count(piece) > budget:
            step = max(1, step * 2 // 3)
            piece = word[start : start + step]
        yield piece
        start += len(piece)


class Chunker:
    def __init__(
        self, max_tokens: int = 256, overlap_tokens: int = 32, count: TokenCounter = approx_tokens
    ) -> None:
        if overlap_tokens >= max_tokens:
            raise ValueError("overlap_tokens must be smaller than max_tokens")
        self.max_tokens = max_tokens
        self.overlap_tokens = overlap_tokens
        self.count = count

    def chunk(self, markdown: str, title: str = "", lang: str = "sv") -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in split_sections(markdown):
            check_time()
            path = section.path
            if title and (not path or path[0] != title):
                path = (title, *path)
            crumb = " > ".join(path)
            budget = max(32, self.max_tokens - self.count(crumb))
            for text in self._pack(section.body, budget, lang):
                chunks.append(Chunk(index=len(chunks), text=text, section=crumb))
        return chunks

    def _weight(self, text: str) -> int:
        """Tokens, but never fewer than the characters allow: a tokenizer may count a long run
        of characters as one unknown token, and a chunk must stay a readable size anyway."""
        return max(self.count(text), -(-len(text) // CHARS_PER_TOKEN_MAX))

    def _units(self, body: str, budget: int, lang: str) -> Iterator[tuple[str, int, str]]:
        """(text, tokens, separator before it) units no larger than the budget.

        An over-long block is split at line breaks first (list items), then at sentences.
        """
        for block in _blocks(body):
            n = self._weight(block)
            if n <= budget:
                yield block, n, "\n\n"
                continue
            sep = "\n\n"
            for line in (ln.strip() for ln in block.splitlines()):
                if not line:
                    continue
                check_time()
                n = self._weight(line)
                if n <= budget:
                    yield line, n, sep
                    sep = "\n"
                    continue
                for sent in _sentences(line, lang):
                    for piece in (
                        [sent]
                        if self._weight(sent) <= budget
                        else list(_hard_split(sent, budget, self._weight))
                    ):
                        yield piece, self._weight(piece), sep
                        sep = " "
                sep = "\n"

    def _pack(self, body: str, budget: int, lang: str) -> Iterator[str]:
        current: list[tuple[str, int, str]] = []
        size = 0
        for unit in self._units(body, budget, lang):
            if current and size + unit[1] > budget:
                yield _join(current)
                # Carry whole trailing units as overlap, never the full previous chunk.
                carry: list[tuple[str, int, str]] = []
                carried = 0
                for prev in reversed(current):
                    if carried + prev[1] > self.overlap_tokens or len(carry) + 1 == len(current):
                        break
                    carry.insert(0, prev)
                    carried += prev[1]
                if carried + unit[1] > budget:
                    carry, carried = [], 0
                current, size = carry, carried
            current.append(unit)
            size += unit[1]
        if current:
            yield _join(current)


def _join(units: list[tuple[str, int, str]]) -> str:
    return "".join(text if i == 0 else sep + text for i, (text, _, sep) in enumerate(units))
