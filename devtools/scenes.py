"""Deep-sea pictures for the stand-in's demo look (``FathomNetStandIn(look="scenes")``).

A scene is dark-blue water lit from above, with marine snow (particles falling, a short streak
behind each), and at every annotated box an animal drawn to fill it, in a colour that stands
out: a medusa (bell, rim, gonads, tentacles and oral arms), a siphonophore (float, paired
swimming bells, a long stem with its feeding polyps), a fish (with a forked tail, an eye and,
for lanternfish, a row of glowing photophores), a larvacean's mucus house with the animal
inside, a squid, a crab, or a plain glowing blob for a concept nobody drew.

Everything is drawn with Pillow from a seeded random.Random, so a scene is the same bytes on
every run.  Boxes reaching past the frame are cut by it; boxes wholly outside draw nothing.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageChops, ImageDraw, ImageFilter

KINDS = ("medusa", "siphonophore", "fish", "lanternfish", "larvacean", "squid", "crab", "blob")


@dataclass(frozen=True)
class Figure:
    """One animal to draw: its kind (see KINDS), colour and box (x, y, width, height; may overhang)."""

    kind: str
    color: tuple[int, int, int]
    x: int
    y: int
    width: int
    height: int


def render(width: int, height: int, figures: list[Figure], seed: str) -> Image.Image:
    """An RGB scene of width x height with the figures drawn at their boxes, biggest first."""
    rng = random.Random(f"scene/{seed}")
    scene = _water(width, height, rng).convert("RGBA")
    _snow(scene, rng, behind=True)
    for f in sorted(figures, key=lambda f: -(f.width * f.height)):
        _place(scene, f, random.Random(f"{seed}/{f.kind}/{f.x},{f.y},{f.width},{f.height}"))
    _snow(scene, rng, behind=False)
    return scene.convert("RGB")


# ------------------------------------------------------------------ water --

def _water(w: int, h: int, rng: random.Random) -> Image.Image:
    """Blue water: lighter near the lights above, falling to near-black, with slow murk."""
    top, bottom = (14, 58, 96), (2, 10, 26)
    ramp = Image.linear_gradient("L").resize((w, h))  # 0 at the top, 255 at the bottom
    water = Image.composite(Image.new("RGB", (w, h), bottom), Image.new("RGB", (w, h), top), ramp)
    # The vehicle's lights: a broad glow off-centre near the top.
    cx, cy = rng.uniform(0.35, 0.65), rng.uniform(0.05, 0.25)
    glow = Image.radial_gradient("L").resize((2 * w, 2 * h))  # its centre at (w, h): the window stays inside
    left, upper = int(w - cx * w), int(h - cy * h)
    glow = ImageChops.invert(glow.crop((left, upper, left + w, upper + h))).point(lambda v: v * 40 // 255)
    water = ImageChops.add(water, Image.merge("RGB", (glow.point(lambda v: v // 3), glow.point(lambda v: v * 2 // 3),
                                                     glow)))
    # Murk: coarse seeded noise, blown up and blurred.
    cells = (max(2, w // 64), max(2, h // 64))
    murk = Image.frombytes("L", cells, rng.randbytes(cells[0] * cells[1]))
    murk = murk.resize((w, h), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(max(2, w // 200)))
    murk = murk.point(lambda v: v * 14 // 255)
    return ImageChops.add(water, Image.merge("RGB", (murk.point(lambda v: v // 3), murk.point(lambda v: v * 2 // 3),
                                                    murk)))


def _snow(scene: Image.Image, rng: random.Random, behind: bool) -> None:
    """Marine snow: specks and flocs drifting down, a faint streak above each; fainter behind the animals."""
    w, h = scene.size
    layer = Image.new("RGBA", scene.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    count = w * h // (1800 if behind else 9000)
    for _ in range(count):
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.choice((0.6, 0.8, 1.0, 1.2, 1.5, 2.0, 2.5)) * (0.8 if behind else 1.3)
        if rng.random() < 0.04:
            r *= 2.2  # a floc
        shade = rng.randint(175, 235)
        alpha = rng.randint(70, 150) if behind else rng.randint(120, 220)
        color = (shade, shade + (240 - shade) // 3, 255)
        streak = r * rng.uniform(3, 8)
        draw.line((x, y - streak, x, y), fill=color + (alpha // 4,), width=max(1, int(r)))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color + (alpha,))
    scene.alpha_composite(layer)


# ---------------------------------------------------------------- figures --

def _place(scene: Image.Image, f: Figure, rng: random.Random) -> None:
    w, h = scene.size
    if f.width < 1 or f.height < 1 or f.x >= w or f.y >= h or f.x + f.width <= 0 or f.y + f.height <= 0:
        return  # wholly outside: nothing of it shows
    if min(f.width, f.height) < 12:  # too small to be anything but a bright speck of its colour
        tile = Image.new("RGBA", (f.width, f.height), (0, 0, 0, 0))
        ImageDraw.Draw(tile).ellipse((0, 0, f.width - 1, f.height - 1), fill=f.color + (230,))
    else:
        tile = _figure(f, rng)
    # Cut the tile to the frame (boxes may overhang it), then lay it on.
    left, top = max(0, -f.x), max(0, -f.y)
    right, bottom = min(f.width, w - f.x), min(f.height, h - f.y)
    tile = tile.crop((left, top, right, bottom))
    glow = tile.getchannel("A").filter(ImageFilter.GaussianBlur(max(1, min(f.width, f.height) // 40)))
    halo = Image.new("RGBA", tile.size, f.color + (0,))
    halo.putalpha(glow.point(lambda v: v * 2 // 5))
    scene.alpha_composite(halo, (f.x + left, f.y + top))
    scene.alpha_composite(tile, (f.x + left, f.y + top))


# Width over height each kind is drawn at (upright), and how far from it a box may stretch it.
_ASPECT = {"medusa": 0.8, "siphonophore": 0.3, "fish": 2.4, "lanternfish": 2.4, "larvacean": 1.25, "squid": 0.45,
           "crab": 1.7, "blob": 1.0}
_STRETCH = 1.6


def _figure(f: Figure, rng: random.Random) -> Image.Image:
    """The animal drawn as large as fits the box at about its own proportions, centred; supersampled."""
    bw, bh = f.width, f.height
    natural = _ASPECT[f.kind]
    # Long thin animals turn to lie along a box's long side.
    turn = f.kind in ("siphonophore", "squid", "fish", "lanternfish") and (natural < 1) != (bw < bh)
    fw, fh = (bh, bw) if turn else (bw, bh)  # the box as the upright figure sees it
    aspect = min(max(fw / fh, natural / _STRETCH), natural * _STRETCH)
    tw, th = (fw, max(1, round(fw / aspect))) if fw / fh <= aspect else (max(1, round(fh * aspect)), fh)
    scale = 3 if tw * th <= 200_000 else 2 if tw * th <= 900_000 else 1
    tile = Image.new("RGBA", (tw * scale, th * scale), (0, 0, 0, 0))
    _DRAW[f.kind](ImageDraw.Draw(tile), tw * scale, th * scale, f.color, rng)
    tile = tile.resize((tw, th), Image.Resampling.LANCZOS)
    if turn:
        tile = tile.transpose(Image.Transpose.ROTATE_90)
    out = Image.new("RGBA", (bw, bh), (0, 0, 0, 0))
    out.paste(tile, ((bw - tile.width) // 2, (bh - tile.height) // 2))
    return out


def _mix(color, other, t):
    return tuple(int(a + (b - a) * t) for a, b in zip(color, other))


def _wavy(x0, y0, length, amp, waves, phase, steps=24, dx=0.0):
    """Points of a line hanging down from (x0, y0), swaying sideways."""
    return [(x0 + dx * i / steps + amp * math.sin(phase + waves * 2 * math.pi * i / steps), y0 + length * i / steps)
            for i in range(steps + 1)]


def _medusa(d, w, h, color, rng):
    cx, bell_w = w / 2, w * 0.86
    bell_h = min(h * 0.42, bell_w * 0.75)
    top, rim = h * 0.04, h * 0.04 + bell_h
    line = max(1, int(w / 110))
    # Tentacles, long and fine, from the whole margin; then four frilled oral arms.
    for i in range(rng.randint(10, 16)):
        x = cx - bell_w / 2 * 0.95 + bell_w * 0.95 * i / 13 + rng.uniform(-2, 2)
        d.line(_wavy(x, rim - line, (h - rim) * rng.uniform(0.6, 0.98), w * 0.025, rng.uniform(0.7, 1.6),
                     rng.uniform(0, 6)), fill=_mix(color, (255, 255, 255), 0.35) + (150,), width=line, joint="curve")
    for i in range(4):
        x = cx + (i - 1.5) * bell_w * 0.09
        d.line(_wavy(x, rim - line * 2, (h - rim) * rng.uniform(0.35, 0.55), w * 0.03, 1.1, i * 1.7),
               fill=color + (200,), width=line * 4, joint="curve")
    box = (cx - bell_w / 2, top, cx + bell_w / 2, top + 2 * bell_h)
    d.chord(box, 180, 360, fill=color + (150,))
    inner = (cx - bell_w * 0.36, top + bell_h * 0.25, cx + bell_w * 0.36, top + bell_h * 1.75)
    d.chord(inner, 180, 360, fill=_mix(color, (255, 255, 255), 0.45) + (110,))
    d.arc(box, 180, 360, fill=_mix(color, (255, 255, 255), 0.6) + (235,), width=line * 2)
    # Scalloped margin and four horseshoe gonads seen through the bell.
    for i in range(16):
        x = cx - bell_w / 2 + bell_w * (i + 0.5) / 16
        r = bell_w / 36
        d.ellipse((x - r, rim - r, x + r, rim + r), fill=color + (200,))
    for i in range(4):
        gx = cx + (i - 1.5) * bell_w * 0.15
        r = bell_w * 0.055
        d.arc((gx - r, rim - bell_h * 0.55 - r, gx + r, rim - bell_h * 0.55 + r), 200, 340,
              fill=_mix(color, (255, 230, 160), 0.5) + (230,), width=line * 2)


def _siphonophore(d, w, h, color, rng):
    cx, line = w / 2, max(1, int(w / 60))
    stem = _wavy(cx, h * 0.05, h * 0.93, w * 0.08, 1.3, rng.uniform(0, 6), steps=40)
    d.line(stem, fill=_mix(color, (255, 255, 255), 0.3) + (220,), width=line, joint="curve")
    # Pneumatophore: the small float at the top, bright-tipped.
    r = min(w * 0.09, h * 0.03)
    d.ellipse((cx - r, h * 0.05 - r * 1.6, cx + r, h * 0.05 + r * 1.6), fill=color + (255,))
    # Nectosome: paired swimming bells, clear with a bright outline.
    pairs = rng.randint(5, 8)
    for i in range(pairs):
        px, py = stem[2 + i * 2]
        bw, bh = w * 0.26, h * 0.045
        for side in (-1, 1):
            x0 = px + side * bw * 0.55
            d.ellipse((x0 - bw / 2, py - bh / 2, x0 + bw / 2, py + bh / 2), fill=(230, 240, 255, 90),
                      outline=color + (230,), width=line)
    # Siphosome: cormidia along the stem, each a coloured polyp with tentacles trailing off.
    for i in range(2 + pairs * 2, len(stem), 2):
        px, py = stem[i]
        r = w * 0.035
        d.ellipse((px - r, py - r, px + r, py + r), fill=color + (240,))
        side = 1 if i % 4 else -1
        d.line(_wavy(px, py, h * 0.05, w * 0.03, 1, i, steps=8, dx=side * w * 0.3),
               fill=_mix(color, (255, 255, 255), 0.4) + (170,), width=max(1, line // 2), joint="curve")


def _fish(d, w, h, color, rng, photophores=False):
    flip = rng.random() < 0.5
    cy, nose, base = h / 2, w * 0.04, w * 0.76
    body_h = min(h * 0.40, w * 0.17)
    top, bottom = [], []
    for i in range(33):
        t = i / 32
        x = nose + (base - nose) * t
        half = body_h * math.sin(math.pi * min(1.0, t ** 0.65)) ** 0.8 + body_h * 0.12 * t
        top.append((x, cy - half * 1.05))
        bottom.append((x, cy + half * 0.9))
    pts = top + bottom[::-1]
    tail = [(base - w * 0.02, cy), (w * 0.97, cy - body_h * 1.05), (w * 0.88, cy), (w * 0.97, cy + body_h * 1.05)]
    fins = [(w * 0.30, cy - body_h * 0.85), (w * 0.42, cy - body_h * 1.55), (w * 0.58, cy - body_h * 0.75)]
    pec = [(w * 0.26, cy + body_h * 0.1), (w * 0.40, cy + body_h * 0.6), (w * 0.30, cy + body_h * 0.55)]
    belly = _mix(color, (255, 255, 255), 0.45)
    pts, tail, fins, pec = ([(w - x, y) for x, y in p] if flip else p for p in (pts, tail, fins, pec))
    d.polygon(tail, fill=color + (230,))
    d.polygon(fins, fill=_mix(color, (0, 0, 0), 0.2) + (220,))
    d.polygon(pts, fill=color + (245,))
    # A paler belly, the gill slit, the pectoral fin, the eye.
    lower = [(x, y) for x, y in (bottom if not flip else [(w - x, y) for x, y in bottom])]
    mid = [(x, cy + (y - cy) * 0.15) for x, y in lower]
    d.polygon(mid + lower[::-1], fill=belly + (200,))
    line = max(1, int(h / 40))
    gx = w * 0.22 if not flip else w * 0.78
    d.arc((gx - body_h * 0.4, cy - body_h * 0.8, gx + body_h * 0.4, cy + body_h * 0.8), -70 if not flip else 110,
          70 if not flip else 250, fill=_mix(color, (0, 0, 0), 0.4) + (220,), width=line)
    d.polygon(pec, fill=_mix(color, (255, 255, 255), 0.25) + (220,))
    ex, er = (w * 0.12 if not flip else w * 0.88), body_h * 0.28
    d.ellipse((ex - er, cy - body_h * 0.45 - er, ex + er, cy - body_h * 0.45 + er), fill=(235, 240, 245, 255))
    d.ellipse((ex - er * 0.55, cy - body_h * 0.45 - er * 0.55, ex + er * 0.55, cy - body_h * 0.45 + er * 0.55),
              fill=(10, 10, 20, 255))
    if photophores:  # lanternfish: rows of glowing dots along the flank and belly
        for row, lift in ((0.55, 0.0), (0.25, 0.04)):
            for i in range(12):
                t = 0.12 + 0.72 * i / 11
                x = nose + (base - nose) * t
                y = cy + body_h * row
                x = w - x if flip else x
                r = max(1.5, body_h * 0.07)
                d.ellipse((x - r * 1.8, y - r * 1.8, x + r * 1.8, y + r * 1.8), fill=(90, 200, 255, 90))
                d.ellipse((x - r, y - r, x + r, y + r), fill=(170, 240, 255, 255))


def _lanternfish(d, w, h, color, rng):
    _fish(d, w, h, color, rng, photophores=True)


def _larvacean(d, w, h, color, rng):
    cx, cy = w / 2, h / 2
    line = max(1, int(min(w, h) / 120))
    # The outer house: a vast, faint mucus balloon with its mesh.
    d.ellipse((w * 0.02, h * 0.02, w * 0.98, h * 0.98), fill=color + (38,), outline=color + (110,), width=line)
    for i in range(7):
        t = (i + 1) / 8
        d.arc((w * 0.02, h * (0.5 - 0.48 * t), w * 0.98, h * (0.5 + 0.48 * t)), 200 + i * 3, 340 - i * 3,
              fill=color + (70,), width=line)
    # The inner house: brighter, with its two filter lobes.
    iw, ih = w * 0.52, h * 0.46
    d.ellipse((cx - iw / 2, cy - ih / 2, cx + iw / 2, cy + ih / 2), fill=color + (85,),
              outline=_mix(color, (255, 255, 255), 0.5) + (200,), width=line * 2)
    for side in (-1, 1):
        lx = cx + side * iw * 0.2
        d.ellipse((lx - iw * 0.18, cy - ih * 0.3, lx + iw * 0.18, cy + ih * 0.25), fill=color + (70,),
                  outline=_mix(color, (255, 255, 255), 0.3) + (150,), width=line)
    # The animal: an orange trunk and its beating tail.
    tr = min(iw, ih) * 0.12
    d.line(_wavy(cx, cy + tr * 0.5, ih * 0.42, iw * 0.05, 1.2, rng.uniform(0, 6), steps=16),
           fill=(255, 214, 170, 230), width=max(line * 3, int(tr * 0.45)), joint="curve")
    d.ellipse((cx - tr, cy - tr * 1.3, cx + tr, cy + tr * 0.7), fill=(255, 150, 60, 255))
    d.ellipse((cx - tr * 0.4, cy - tr * 0.9, cx + tr * 0.2, cy - tr * 0.3), fill=(255, 210, 140, 255))


def _squid(d, w, h, color, rng):
    cx, line = w / 2, max(1, int(w / 50))
    mantle_w, mantle_h = w * 0.34, h * 0.42
    # Long tentacles first, then arms, head, mantle and fins on top.
    for side in (-1, 1):
        tentacle = _wavy(cx + side * w * 0.05, h * 0.55, h * 0.43, w * 0.06, 0.8, side)
        d.line(tentacle, fill=color + (200,), width=line, joint="curve")
        club = tentacle[-1]
        d.ellipse((club[0] - line * 2, club[1] - line * 4, club[0] + line * 2, club[1]), fill=color + (230,))
    for i in range(8):
        spread = (i - 3.5) / 3.5
        d.line(_wavy(cx + spread * w * 0.06, h * 0.55, h * 0.18, w * 0.02, 0.6, i, steps=10, dx=spread * w * 0.2),
               fill=_mix(color, (0, 0, 0), 0.15) + (230,), width=line * 2, joint="curve")
    d.ellipse((cx - w * 0.12, h * 0.45, cx + w * 0.12, h * 0.6), fill=color + (240,))
    for side in (-1, 1):
        ex = cx + side * w * 0.07
        r = w * 0.045
        d.ellipse((ex - r, h * 0.5 - r, ex + r, h * 0.5 + r), fill=(240, 240, 220, 255))
        d.ellipse((ex - r / 2, h * 0.5 - r / 2, ex + r / 2, h * 0.5 + r / 2), fill=(20, 10, 10, 255))
    d.polygon([(cx, h * 0.02), (cx - w * 0.3, h * 0.12), (cx, h * 0.2), (cx + w * 0.3, h * 0.12)],
              fill=_mix(color, (255, 255, 255), 0.3) + (200,))
    d.ellipse((cx - mantle_w / 2, h * 0.05, cx + mantle_w / 2, h * 0.05 + mantle_h), fill=color + (245,))
    for i in range(14):  # chromatophores
        x = cx + rng.uniform(-0.3, 0.3) * mantle_w
        y = h * 0.1 + rng.uniform(0, 0.8) * mantle_h
        r = mantle_w * 0.04
        d.ellipse((x - r, y - r, x + r, y + r), fill=_mix(color, (60, 0, 20), 0.5) + (230,))


def _crab(d, w, h, color, rng):
    cx, cy = w / 2, h * 0.48
    cw, ch = w * 0.34, h * 0.42
    line = max(2, int(w / 70))
    dark = _mix(color, (60, 20, 0), 0.35) + (245,)
    for side in (-1, 1):
        for i in range(4):  # four long, spindly walking legs a side
            root = (cx + side * cw * 0.35, cy - ch * 0.15 + i * ch * 0.14)
            knee = (cx + side * (cw * 0.55 + w * 0.17 + i * w * 0.02), root[1] - h * 0.2 + i * h * 0.07)
            foot = (cx + side * (cw * 0.5 + w * 0.28 + i * w * 0.02), h * 0.94 - (3 - i) * h * 0.02)
            d.line((root, knee, foot), fill=dark, width=line, joint="curve")
        claw = (cx + side * cw * 0.62, cy - ch * 0.72)
        d.line(((cx + side * cw * 0.3, cy - ch * 0.35), claw), fill=dark, width=line * 2)
        r = w * 0.05
        d.ellipse((claw[0] - r, claw[1] - r * 0.7, claw[0] + r, claw[1] + r * 0.7), fill=color + (250,))
    d.ellipse((cx - cw / 2, cy - ch / 2, cx + cw / 2, cy + ch / 2), fill=color + (250,))
    d.ellipse((cx - cw / 3, cy - ch / 3, cx + cw / 4, cy + ch / 6), fill=_mix(color, (255, 255, 255), 0.3) + (140,))
    for side in (-1, 1):
        ex, r = cx + side * cw * 0.12, w * 0.018
        d.ellipse((ex - r, cy - ch / 2 - r * 2.5, ex + r, cy - ch / 2 - r * 0.5), fill=(20, 10, 10, 255))


def _blob(d, w, h, color, rng):
    for i in range(6):
        t = i / 6
        d.ellipse((w * (0.1 + 0.3 * t), h * (0.1 + 0.3 * t), w * (0.9 - 0.3 * t), h * (0.9 - 0.3 * t)),
                  fill=color + (60 + 30 * i,))


_DRAW = {"medusa": _medusa, "siphonophore": _siphonophore, "fish": _fish, "lanternfish": _lanternfish,
         "larvacean": _larvacean, "squid": _squid, "crab": _crab, "blob": _blob}
