"""Image file names of the standard re-ID datasets: person id and camera read from the name alone.

One *name scheme* per dataset family (:data:`SCHEMES`); the grammars are mutually exclusive, so a
name alone says which scheme it follows (:func:`parse_image_name`):

=========  ==============  ====================================  ===========================================
scheme     dataset         real image                            fields
=========  ==============  ====================================  ===========================================
market     Market-1501     ``0002_c1s1_000451_03.jpg``           person (``-1`` junk, ``0000`` distractor),
                                                                 camera, sequence, frame (6 digits), box (2)
duke       DukeMTMC-reID   ``0001_c2_f0046182.jpg``              person, camera, frame
cuhk03     CUHK03-NP       ``0001_c1_1.png``                     person, camera, image index
msmt17     MSMT17          ``0000_000_01_0303morning_0015_0.jpg``  person, image index of the person, camera
                                                                 (2 digits), date and time of day, frame,
                                                                 box in the frame
=========  ==============  ====================================  ===========================================

Person ids are 4 digits; cameras are 1-based as written. Only Market-1501 has junk and distractor
ids; in the other sets every id is a person (MSMT17's ``0000`` is its first identity).

Generated images (this project's output) append a tag to the real name: ``<real stem>_<tag><ext>``,
e.g. ``0001_c2_f0046182_patn-3.jpg``. Every grammar has a fixed number of fields, so a real name never
has a tag and a generated name never equals a real one; the tag keeps person id and camera. Market
tags are letters, digits and ``-``; in the other schemes a tag starts with a letter (otherwise
``0002_c1_000451_03.jpg`` would read as a CUHK03 name with tag ``03``). Generated names always get
a lower-case extension (torchreid's readers glob ``*.jpg``).

Extensions: ``.jpg``, ``.jpeg``, ``.png`` in any case (a copy made on Windows may say ``.JPG``); a
name is kept exactly as on disk, so annotation rows must spell it the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from augment.data.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")  # compared case-insensitively
JUNK_PID = -1
DISTRACTOR_PID = 0

_EXT = r"(?P<ext>\.(?i:jpg|jpeg|png))"
_MARKET_TAG = r"(?:_(?P<tag>[A-Za-z0-9-]+))?"
_TAG = r"(?:_(?P<tag>[A-Za-z][A-Za-z0-9-]*))?"  # other schemes: starts with a letter (see above)
MARKET_TAG_RE = re.compile(r"[A-Za-z0-9-]+")
TAG_RE = re.compile(r"[A-Za-z][A-Za-z0-9-]*")


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


@dataclass(frozen=True, order=True)
class MarketName:
    """The fields of a Market-1501 file name. ``camera`` and ``sequence`` are 1-based as written."""

    pid: int
    camera: int
    sequence: int
    frame: int
    box: int
    tag: str = ""
    ext: str = ".jpg"

    scheme = "market"

    @property
    def is_junk(self) -> bool:
        return self.pid == JUNK_PID

    @property
    def is_distractor(self) -> bool:
        return self.pid == DISTRACTOR_PID

    @property
    def is_generated(self) -> bool:
        return bool(self.tag)

    def filename(self) -> str:
        pid = "-1" if self.pid == JUNK_PID else f"{self.pid:04d}"
        tag = f"_{self.tag}" if self.tag else ""
        return f"{pid}_c{self.camera}s{self.sequence}_{self.frame:06d}_{self.box:02d}{tag}{self.ext}"

    def with_tag(self, tag: str, ext: str | None = None) -> MarketName:
        """The generated image's name: same fields plus ``tag`` (letters, digits, '-'), lower-case extension."""
        if not MARKET_TAG_RE.fullmatch(tag):
            raise ValueError(f"tag {tag!r} must be letters, digits and '-'")
        return replace(self, tag=tag, ext=ext or self.ext.lower())


@dataclass(frozen=True, order=True)
class ReidName:
    """A DukeMTMC-reID, CUHK03-NP or MSMT17 file name: the scheme, the fields every scheme has, and the
    real image's stem (its name without tag and extension), which the generated name keeps."""

    scheme: str
    pid: int
    camera: int
    stem: str
    tag: str = ""
    ext: str = ".jpg"

    @property
    def is_junk(self) -> bool:
        return False  # only Market-1501 names junk images

    @property
    def is_distractor(self) -> bool:
        return False

    @property
    def is_generated(self) -> bool:
        return bool(self.tag)

    def filename(self) -> str:
        return f"{self.stem}_{self.tag}{self.ext}" if self.tag else f"{self.stem}{self.ext}"

    def with_tag(self, tag: str, ext: str | None = None) -> ReidName:
        """The generated image's name: the real stem plus ``_tag`` (a letter first), lower-case extension."""
        if not TAG_RE.fullmatch(tag):
            raise ValueError(f"tag {tag!r} must start with a letter and hold letters, digits and '-'")
        return replace(self, tag=tag, ext=ext or self.ext.lower())


ImageName = MarketName | ReidName


@dataclass(frozen=True)
class NameScheme:
    """One dataset family's file-name grammar."""

    key: str
    title: str  # dataset name for messages
    form: str  # the grammar in words, for messages
    example: str
    pattern: re.Pattern
    build: Callable[[re.Match], ImageName]

    def parse(self, name: str) -> ImageName | None:
        m = self.pattern.match(name)
        return None if m is None else self.build(m)

    def expected(self) -> str:
        return f"{self.form}, e.g. {self.example}"


def _market(m: re.Match) -> MarketName:
    return MarketName(
        int(m["pid"]), int(m["camera"]), int(m["sequence"]), int(m["frame"]), int(m["box"]), m["tag"] or "", m["ext"]
    )


def _reid(scheme: str) -> Callable[[re.Match], ReidName]:
    def build(m: re.Match) -> ReidName:
        return ReidName(scheme, int(m["pid"]), int(m["camera"]), m["stem"], m["tag"] or "", m["ext"])

    return build


SCHEMES: dict[str, NameScheme] = {
    s.key: s
    for s in (
        NameScheme(
            "market",
            "Market-1501",
            "PPPP_cCsS_FFFFFF_BB.jpg",
            "0002_c1s1_000451_03.jpg",
            re.compile(
                r"^(?P<pid>-1|\d{4})_c(?P<camera>\d)s(?P<sequence>\d)_(?P<frame>\d{6})_(?P<box>\d{2})"
                + _MARKET_TAG
                + _EXT
                + "$"
            ),
            _market,
        ),
        NameScheme(
            "duke",
            "DukeMTMC-reID",
            "PPPP_cC_fFFFFFFF.jpg",
            "0001_c2_f0046182.jpg",
            re.compile(r"^(?P<stem>(?P<pid>\d{4})_c(?P<camera>\d)_f\d+)" + _TAG + _EXT + "$"),
            _reid("duke"),
        ),
        NameScheme(
            "cuhk03",
            "CUHK03-NP",
            "PPPP_cC_N.png",
            "0001_c1_1.png",
            re.compile(r"^(?P<stem>(?P<pid>\d{4})_c(?P<camera>\d)_\d+)" + _TAG + _EXT + "$"),
            _reid("cuhk03"),
        ),
        NameScheme(
            "msmt17",
            "MSMT17",
            "PPPP_NNN_CC_DDDDtime_FFFF_B.jpg",
            "0000_000_01_0303morning_0015_0.jpg",
            re.compile(r"^(?P<stem>(?P<pid>\d{4})_\d+_(?P<camera>\d{2})_\d{4}[a-z]+_\d+_\d+)" + _TAG + _EXT + "$"),
            _reid("msmt17"),
        ),
    )
}


def _where(where: str | os.PathLike | None) -> str:
    return f"{where}: " if where is not None else ""


def parse_image_name(name: str, scheme: str | None = None, *, where: str | os.PathLike | None = None) -> ImageName:
    """Parse ``name`` by ``scheme`` (a key of :data:`SCHEMES`), or by whichever scheme it follows.

    Raises :class:`DatasetError` naming the file (``where``) and the expected form.
    """
    if scheme is not None:
        parsed = SCHEMES[scheme].parse(name)
        if parsed is None:
            s = SCHEMES[scheme]
            raise DatasetError(f"{_where(where)}file name {name!r} is not a {s.title} name (expected {s.expected()})")
        return parsed
    for s in SCHEMES.values():
        parsed = s.parse(name)
        if parsed is not None:
            return parsed
    others = "; ".join(f"{s.title} {s.example}" for k, s in SCHEMES.items() if k != "market")
    raise DatasetError(
        f"{_where(where)}file name {name!r} is not a Market-1501 name (expected {SCHEMES['market'].expected()}) "
        f"nor a name of the other layouts ({others})"
    )


def parse_market_name(name: str, *, where: str | os.PathLike | None = None) -> ImageName:
    """Parse a file name of any scheme (Market-1501 first); :class:`DatasetError` naming the file otherwise."""
    return parse_image_name(name, where=where)


def detect_scheme(names: Iterable[str]) -> str | None:
    """The scheme most of ``names`` follow (None when none parses); ties go to the earlier scheme."""
    votes = dict.fromkeys(SCHEMES, 0)
    for n in names:
        for key, s in SCHEMES.items():
            if s.pattern.match(n):
                votes[key] += 1
                break
    best = max(votes, key=lambda k: votes[k])
    return best if votes[best] else None
