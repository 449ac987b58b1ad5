"""The subject catalogue: distinct shapes and two-colour patterns, with a four-phase walk animation.

A sprite is a ``[2, 4, h, w]`` uint8 code array (facing right/left, walk phase, rows, columns): 0 is
transparent, 1 the primary colour, 2 the secondary colour. Subjects use only their two colours, so a colour
segmentation recovers them exactly. Every column between a sprite's leftmost and rightmost pixel holds a
pixel, so "some column of the sprite overlaps the frame" is the same as "some pixel is visible" (used to find
exit and entry frames without rendering).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Saturated colours no scene style uses (see `scenery.MIN_BACKGROUND_DISTANCE`); pairwise >= 95 apart.
SUBJECT_COLOURS: dict[str, tuple[int, int, int]] = {
    "magenta": (220, 40, 200),
    "cyan": (30, 210, 230),
    "yellow": (250, 215, 20),
    "orange": (255, 120, 0),
    "lime": (130, 230, 20),
    "violet": (130, 50, 255),
    "blue": (30, 80, 255),
    "red": (230, 20, 30),
    "teal": (0, 170, 110),
}

WALK_PHASES = 4
BODY_BOTTOM = 0.74  # body occupies rows [0, 0.74) of the sprite, legs the rest


@dataclass(frozen=True)
class SubjectKind:
    """One catalogue entry."""

    name: str
    shape: str
    """Body outline: ellipse, box, triangle, diamond, ghost, mushroom."""
    pattern: str
    """Secondary-colour pattern on the body: stripes, bars, checks, halves, belt, cap."""
    colours: tuple[str, str]
    """Primary and secondary colour names (keys of `SUBJECT_COLOURS`)."""
    aspect: float
    """Width / height of the sprite."""

    @property
    def rgb(self) -> np.ndarray:
        """``[2, 3]`` uint8 primary and secondary colour."""
        return np.array([SUBJECT_COLOURS[c] for c in self.colours], dtype=np.uint8)

    @property
    def words(self) -> str:
        pattern = {
            "stripes": "striped",
            "bars": "barred",
            "checks": "checked",
            "halves": "two-faced",
            "belt": "belted",
            "cap": "capped",
        }[self.pattern]
        article = "an" if self.colours[0][0] in "aeiou" else "a"
        return f"{article} {self.colours[0]} {pattern} {self.name} with {self.colours[1]} markings"


CATALOGUE: tuple[SubjectKind, ...] = (
    SubjectKind("blob", "ellipse", "stripes", ("magenta", "yellow"), 0.8),
    SubjectKind("robot", "box", "checks", ("cyan", "orange"), 0.7),
    SubjectKind("cone", "triangle", "halves", ("lime", "violet"), 0.75),
    SubjectKind("ghost", "ghost", "bars", ("blue", "yellow"), 0.7),
    SubjectKind("gem", "diamond", "belt", ("red", "cyan"), 0.8),
    SubjectKind("mushroom", "mushroom", "cap", ("orange", "blue"), 0.85),
    SubjectKind("beetle", "ellipse", "halves", ("teal", "magenta"), 0.9),
    SubjectKind("totem", "box", "bars", ("violet", "lime"), 0.55),
    SubjectKind("jelly", "ghost", "stripes", ("yellow", "red"), 0.75),
)


def _body(shape: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Body outline on normalised coordinates: x in [-1, 1] left to right, y in [0, 1] top to body bottom."""
    if shape == "ellipse":
        return x**2 + ((y - 0.5) / 0.5) ** 2 <= 1.0
    if shape == "box":
        return (np.abs(x) <= 0.92) & (y >= 0.02)
    if shape == "triangle":
        return np.abs(x) <= y
    if shape == "diamond":
        return np.abs(x) + np.abs(y - 0.5) / 0.5 <= 1.0
    if shape == "ghost":
        dome = x**2 + ((y - 0.45) / 0.45) ** 2 <= 1.0
        return dome | ((y >= 0.45) & (np.abs(x) <= 1.0))
    if shape == "mushroom":
        cap = (x**2 + ((y - 0.45) / 0.45) ** 2 <= 1.0) & (y <= 0.45)
        return cap | ((y > 0.45) & (np.abs(x) <= 0.45))
    raise ValueError(f"unknown subject shape {shape!r}")


def _pattern(pattern: str, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Where the body takes the secondary colour."""
    if pattern == "stripes":
        return (np.floor(y * 5) % 2) == 1
    if pattern == "bars":
        return (np.floor((x + 1) * 2.5) % 2) == 1
    if pattern == "checks":
        return (np.floor((x + 1) * 2) + np.floor(y * 4)) % 2 == 1
    if pattern == "halves":
        return x > 0.1  # asymmetric: mirroring shows the walking direction
    if pattern == "belt":
        return np.abs(y - 0.55) < 0.12
    if pattern == "cap":
        return (y > 0.45) | (((x * 3 + 0.5) ** 2 + ((y - 0.22) * 6) ** 2) < 0.5)
    raise ValueError(f"unknown subject pattern {pattern!r}")


def render_sprite(kind: SubjectKind, height: int) -> np.ndarray:
    """Sprite codes ``[2, WALK_PHASES, h, w]`` uint8 (facing right, left) for a subject `height` px tall."""
    h = max(int(height), 4)
    w = max(int(round(h * kind.aspect)), 3)
    rows = np.arange(h)[:, None] + 0.5
    cols = (np.arange(w)[None, :] + 0.5) / w * 2.0 - 1.0  # (1, w) in [-1, 1]
    body_px = BODY_BOTTOM * h
    bob = max(1, round(0.04 * h))
    phases = []
    for phase in range(WALK_PHASES):
        # Walk cycle: legs swing forward and back; the body rises by `bob` pixels on mid-stride phases.
        lift = bob if phase % 2 else 0
        y_body = (rows + lift) / body_px
        inside = _body(kind.shape, cols, y_body) & (y_body >= 0.0) & (y_body < 1.0)
        codes = np.where(inside, np.where(_pattern(kind.pattern, cols, y_body), 2, 1), 0)
        swing = {0: 0.0, 1: 0.22, 2: 0.0, 3: -0.22}[phase]
        legs_top = body_px - lift - 1
        for centre, sign in ((-0.4, 1.0), (0.4, -1.0)):
            leg = (np.abs(cols - centre - sign * swing) <= 0.17) & (rows >= legs_top) & (rows < h - lift * (sign > 0))
            codes = np.where((codes == 0) & leg, 2, codes)
        phases.append(codes)
    right = np.stack(phases).astype(np.uint8)  # (4, h, w)
    return np.stack([right, right[:, :, ::-1]])  # (2, 4, h, w)


def column_extent(sprite: np.ndarray) -> tuple[int, int]:
    """First and last sprite column holding any pixel (over all facings and phases)."""
    occupied = np.flatnonzero((sprite > 0).any(axis=(0, 1, 2)))
    return int(occupied[0]), int(occupied[-1])


def catalogue_colour_pairs_disjoint(indices) -> bool:
    """True when the chosen catalogue entries share no colour (so each subject is segmentable on its own)."""
    names = [c for i in indices for c in CATALOGUE[i].colours]
    return len(names) == len(set(names))
