"""Colour maps for label visualisation."""

from __future__ import annotations

__all__ = ["voc_palette"]


def voc_palette(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC colour map: entry i spreads the bits of i over R, G, B, high bit first.

    Label 0 is black, 1 is (128, 0, 0), 2 is (0, 128, 0), ..., 255 (the ignore label) is
    (224, 224, 192). Used for any dataset without an official palette: colours are distinct for
    every index up to 255.

    Args:
        n: number of entries.

    Returns:
        A list of n (r, g, b) tuples of ints in 0..255.
    """
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for bit in range(7, -1, -1):  # bits 0, 1, 2 of each 3-bit group go to r, g, b
            r |= (c & 1) << bit
            g |= ((c >> 1) & 1) << bit
            b |= ((c >> 2) & 1) << bit
            c >>= 3
        palette.append((r, g, b))
    return palette
