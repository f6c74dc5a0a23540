from __future__ import annotations

from ingest.chunking import Chunker, approx_tokens, split_sections

DOC = """# Hemtjänst

Inledning om hemtjänst.

## Ansökan

Du ansöker hos en biståndshandläggare. Handläggaren utreder ditt behov.

### Handläggningstid

Det tar oftast några veckor.

```
# inte en rubrik i ett kodblock
```

## Avgift

Avgiften beror på din inkomst.
"""


def test_sections_follow_headings_not_code_fences() -> None:
    paths = [s.path for s in split_sections(DOC)]
    assert paths == [
        ("Hemtjänst",),
        ("Hemtjänst", "Ansökan"),
        ("Hemtjänst", "Ansökan", "Handläggningstid"),
        ("Hemtjänst", "Avgift"),
    ]


def test_breadcrumb_and_no_straddling() -> None:
    chunks = Chunker(max_tokens=64, overlap_tokens=8).chunk(DOC, "Hemtjänst")
    assert [c.section for c in chunks] == [
        "Hemtjänst",
        "Hemtjänst > Ansökan",
        "Hemtjänst > Ansökan > Handläggningstid",
        "Hemtjänst > Avgift",
    ]
    assert "Avgiften" in chunks[3].text and "veckor" not in chunks[3].text
    assert chunks[1].embed_text("Hemtjänst").startswith("Hemtjänst > Ansökan\n\n")


def test_long_sections_are_split_under_budget_with_overlap() -> None:
    sentences = [f"Mening nummer {i} handlar om sophämtning i kvarteret." for i in range(60)]
    text = "# Avfall\n\n## Hämtning\n\n" + " ".join(sentences)
    chunker = Chunker(max_tokens=80, overlap_tokens=20)
    chunks = chunker.chunk(text, "Avfall")
    assert len(chunks) > 5
    budget = 80 - approx_tokens("Avfall > Hämtning")
    assert all(approx_tokens(c.text) <= budget + 2 for c in chunks)
    # consecutive chunks share their boundary sentence
    for a, b in zip(chunks, chunks[1:], strict=False):
        last = a.text.split(". ")[-1].rstrip(".")
        assert last in b.text
    # every sentence is somewhere
    joined = " ".join(c.text for c in chunks)
    assert all(s.rstrip(".") in joined for s in sentences)


def test_overlong_sentence_is_hard_split() -> None:
    text = "# T\n\n" + " ".join(["ord"] * 400)
    chunks = Chunker(max_tokens=64, overlap_tokens=0).chunk(text, "T")
    assert len(chunks) >= 6 and all(approx_tokens(c.text) <= 64 for c in chunks)
