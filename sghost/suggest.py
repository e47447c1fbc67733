"""Did-you-mean suggestions for misspelled keys, types, resource names and commands."""

from __future__ import annotations

from collections.abc import Iterable


def close_matches(word: str, candidates: Iterable[str], n: int = 1, cutoff: float = 0.6) -> list[str]:
    """Return up to ``n`` of ``candidates`` that look like ``word``, best first.

    The comparison ignores case, so ``mqttv5`` suggests ``MQTTv5``; the
    candidates are returned as spelled.
    """
    import difflib  # here: only a mistake needs it, and the running supervisor should not carry it

    by_folded: dict[str, str] = {}
    for candidate in candidates:
        by_folded.setdefault(candidate.casefold(), candidate)
    matches = difflib.get_close_matches(word.casefold(), list(by_folded), n=n, cutoff=cutoff)
    return [by_folded[match] for match in matches]


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """Return ``did you mean "x"?`` for the closest candidate, or ``""`` if none is close."""
    matches = close_matches(word, candidates)
    return f'did you mean "{matches[0]}"?' if matches else ""
