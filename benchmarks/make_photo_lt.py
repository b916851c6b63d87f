"""A long-tailed photo set with a balanced test split, built from real photographs.

No package reachable from this workplace (PyPI, Debian, npm) ships a labelled
natural-photo classification set (Flowers-102, Pets, Food-101, Imagenette, STL-10,
EuroSAT, DTD, ...): the PyPI "dataset" packages only hold loaders that download at
run time, which cannot work here. This script therefore makes the closest thing
from real photographs that Debian does ship: 36 high-resolution photos (2 to
20 megapixels; landscapes, flowers, animals, water, objects, interiors) from four
wallpaper packages, each by a named photographer under GPL-2+, LGPL-3,
CC-BY(-SA) or CC0. One photo is one class; its images are square crops of it.
Each photo is cut into a grid of tiles, and each tile belongs to one split, so no
pixel of a training image occurs in a validation or test image:

    a 1638x1024 photo:  5 x 3 tiles of about 327x341 px
    per photo:          20% of the tiles (at least 1) test, 10% (at least 1) val,
                        the rest train; which tiles is drawn from ``--seed``

The photo is first scaled so that its short side is 1024 px; a crop's side is drawn
from 20% to 30% of that (205 to 307 px), its tile uniformly from its split's tiles
and its place uniformly inside the tile less 8 px at each edge; it is then resized
to ``--size`` (224) px and written as a JPEG (quality 95). Crops of one split
overlap one another (150 from about 10 tiles); the splits never do.

The classes are the first ``--classes`` photos in an order shuffled by ``--seed``;
that order is also head to tail. Class ``i`` gets ``n_i`` training crops with
``balcon.data.longtail_counts(n_max, C, imbalance)`` (exponential: ``n_max`` down to
``n_max / imbalance``), and every class gets ``--test-per-class`` test crops and
``--val-per-class`` validation crops (0: no ``val/``). Everything is a function of
the arguments: the same command writes the same files.

The packages are fetched with ``apt-get download`` (Debian's registry; about 168 MB,
once) into ``build/photo-lt-cache/`` and only the 36 photos are unpacked from them;
each photo's sha256 is checked against the one this script was written for.

    python benchmarks/make_photo_lt.py OUT_DIR [--imbalance 10] [--classes 36]
        [--n-max 150] [--test-per-class 30] [--val-per-class 10] [--size 224]
        [--seed 0] [--cache DIR] [--overwrite]

OUT_DIR gets ``train/<class>/*.jpg`` (long-tailed), ``val/`` and ``test/`` (balanced),
``manifest.json`` (classes in head-to-tail order with counts, source file, author,
license, sha256 and the tiles of each split) and ``ATTRIBUTION.md`` (the photographers
and licenses, which CC-BY asks to be kept with copies).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from balcon.data import longtail_counts  # noqa: E402

#: Short names of the Debian packages below.
SOURCES = {
    "lomiri16": "lomiri-wallpapers-16.04",
    "lomiri20": "lomiri-wallpapers-20.04",
    "mate": "mate-backgrounds",
    "plasma": "plasma-workspace-wallpapers",
}
#: Debian packages (bookworm versions) the photos come from, with their licenses.
PACKAGES = {
    "lomiri-wallpapers-16.04": ("20.04.0-2", "CC-BY-4.0 / CC-BY-SA-4.0 / CC0-1.0 per photo"),
    "lomiri-wallpapers-20.04": ("20.04.0-2", "CC-BY-SA-3.0"),
    "mate-backgrounds": ("1.26.0-1", "GPL-2+"),
    "plasma-workspace-wallpapers": ("4:5.27.5-2", "LGPL-3 (metadata.json; Debian: GPL-2+)"),
}

@dataclass(frozen=True)
class Photo:
    """One source photograph: one class."""

    name: str  # the class folder
    source: str  # a key of SOURCES
    stem: str  # the file's stem; for Plasma, the wallpaper's folder
    author: str
    license: str
    sha256: str

    @property
    def package(self) -> str:
        """The Debian package that holds the photo."""
        return SOURCES[self.source]

    @property
    def path(self) -> str:
        """The photo's path inside its package."""
        if self.package.startswith("lomiri-wallpapers"):
            return f"usr/share/backgrounds/{self.stem}.jpg"
        if self.package == "mate-backgrounds":
            return f"usr/share/backgrounds/mate/nature/{self.stem}.jpg"
        return f"usr/share/wallpapers/{self.stem}/contents/images/2560x1600.jpg"


#: The 36 photographs, each checked by eye to be a photo (not a drawing or a render):
#: class, package, photo (file stem, or wallpaper folder for Plasma), author, license,
#: and the sha256 of the file this script was written for.
PHOTOS = tuple(Photo(*row) for row in (
    ("bridge_cables", "lomiri16", "Bridge_by_Sander_Klootwijk", "Sander Klootwijk",
     "CC-BY-SA-4.0", "bd86b081f9975e2b83527f71e49b9271a8ab40885428395969d9f7d834d7f050"),
    ("dragonfly_in_tree", "lomiri16", "Dragonfly_by_Bolly", "Bolly",
     "CC-BY-SA-4.0", "af5af17841009732def24b09bb1e669a1b09d2b4bdeee7812c371101c30d2bb3"),
    ("fig_in_red_bowl", "lomiri16", "Picture_0B_by_freespace", "Trevor 'Freespace'",
     "CC-BY-4.0", "c8c0ab18e48d9e0419fe42881112137f3afafc27dfddc29ec3a6d54c56d225ad"),
    ("paint_brushes", "lomiri16", "Picture_1A_by_freespace", "Trevor 'Freespace'",
     "CC-BY-4.0", "89e86af38d04daaef975665dc2127e9fa76f0fd68f4eea105a2d0ae3390b010b"),
    ("wine_and_drum", "lomiri16", "Wine_by_Jakkub_Mede", "Jakub Mede",
     "CC-BY-4.0", "d2e96e6d4da40dd804b3d0ce295e94de04a2d7d9b6785d42cd9d92ba58bced74"),
    ("mountain_meadow", "lomiri16", "aitzgorri_by_Aitzol_Berasategi", "Aitzol Berasategi",
     "CC-BY-4.0", "66268e7b48f8854d36a28765fac6e23ec1aee251daa6da1f64715f201020ad36"),
    ("lamps_and_toy_bird", "lomiri16", "free_by_Peter_Nerlich", "Peter Nerlich",
     "CC-BY-SA-4.0", "85a5453c2fed514c75973016f3d862aca62eb7ca087618822469274ac1092373"),
    ("dogs_at_door", "lomiri16", "friends_by_Aitzol_Berasategi", "Aitzol Berasategi",
     "CC-BY-4.0", "cc40e313c74e421edffe3403def413c16878ce14661cce7ec5915baeab35538d"),
    ("forest_stream", "lomiri16", "life_by_Aitzol_Berasategi", "Aitzol Berasategi",
     "CC-BY-4.0", "4c119350ead80201fe256850c3d316309ddfb4bdf10b235ce982dcde0c667c05"),
    ("rocky_mountains", "lomiri16", "picosdeeuropa_by_Aitzol_Berasategi", "Aitzol Berasategi",
     "CC-BY-4.0", "414d0072b2f6f2c555deafeaef6e45c4fed6fa9ad26eba6560ca8803959cf97a"),
    ("dandelion_field", "lomiri16", "seeding_by_Clements_Engelhardt", "Clemens Engelhardt",
     "CC0-1.0", "a5634d1ab5e41a3568e92d4a894a500c92b891f9ff734e50bd224d6e185a605f"),
    ("hill_sunset", "lomiri16", "sunset_by_Aitzol_Berasategi", "Aitzol Berasategi",
     "CC-BY-4.0", "474dab6a4b9f94dc76c29dfe30e9f5db4af0fd2e33fe5d695f8152b371efca18"),
    ("nuthatch_on_trunk", "lomiri20", "Kleiber_by_Lukas_Baubkus", "Lukas Baubkus",
     "CC-BY-SA-3.0", "6572410c09f4492c74ccadde133565a14c0161617d5917d4c820c66d65a44ba7"),
    ("water_drop", "mate", "Aqua", "Charles Barbin",
     "GPL-2+", "5c30118205982da441bf7e6a1ada636a8a0be879408140b3148280c665ed6bce"),
    ("green_leaf", "mate", "Blinds", "Lennart Poettering, Andrea Cimitan",
     "GPL-2+", "f7aac0dcc2e06d0491643e84df3da1d9db7c4610f58806a880d56e074799f600"),
    ("dune_grass", "mate", "Dune", "Marco Cogoni, Hylke Bons",
     "GPL-2+", "8a67c2cb0be8c46b70c237311a4fa4d2b4ac7d39568135384787801fa5cc9a91"),
    ("orange_flower", "mate", "FreshFlower", "Jens Ansorg",
     "GPL-2+", "972b0a0c4e5e3fa93f4f244fc84bc64b121a5eac3aaa5856f1308c1f38a02f8e"),
    ("red_flower", "mate", "Garden", "Charles Barbin",
     "GPL-2+", "d3095ee09d425ef23d27155412136cf14fc3c9af76ca58b452f55e23da324e78"),
    ("grass_blades", "mate", "GreenMeadow", "Timothy Schellhase, Lapo Calamandrei",
     "GPL-2+", "8fa0de0aa4089f7319c9fb7a6d006d4cab6023e8c8853731557cff53567b4832"),
    ("ladybird", "mate", "LadyBird", "Charles Barbin",
     "GPL-2+", "e35a9a4126ef969c90b29c038058c5a575a20eadd84106a37bf1fa9931e7b61d"),
    ("raindrops_on_leaves", "mate", "RainDrops", "'blackcombwhistler07'",
     "GPL-2+", "3e4ea9671c28c90a86cf67b3db9daf18c4741587c596333a7529ca589aaa0c16"),
    ("storm_over_sea", "mate", "Storm", "Sergey Nazarov",
     "GPL-2+", "77ca53077831d3237f73393a91fc879158abc046d852941c26e90de336356957"),
    ("dandelion_seed", "mate", "TwoWings", "Charles Barbin, Hylke Bons",
     "GPL-2+", "665e5abf8a5399070a91a9a8e455fe071e5b61697ff78fdeda4e9843ef545aeb"),
    ("pale_wood", "mate", "Wood", "Jean-François Fortin Tam",
     "GPL-2+", "19c78500ac00a622e19907ab9cc7d06d46fe08c4a6142759a84195696150ec07"),
    ("yellow_flower", "mate", "YellowFlower", "Charles Barbin",
     "GPL-2+", "254da96256acb7add685679775a04d1e4a5bc8cd13e5a5a3d61351ce198a5306"),
    ("lake_dock", "plasma", "BytheWater", "Maciej Wiklo",
     "LGPL-3", "c272434ef39f2abf1ed48a15a8910088020f3165329a5092f3940ec9464bc05f"),
    ("foggy_pier", "plasma", "ColdRipple", "Risto Saukonpää",
     "LGPL-3", "05bef6722fc0ed81292cceb3ed026c38d17e510f3c84be7d68610c2b1a723c3f"),
    ("colorful_cups", "plasma", "ColorfulCups", "Dmitri Popov",
     "LGPL-3", "6e0f3a72feb5a4a9fec191b77e34874c3c69e2d93040deb3f07773e73385023d"),
    ("blue_fog_lake", "plasma", "DarkestHour", "Risto Saukonpää",
     "LGPL-3", "8e3703fae3a3c217b1fc2b399b706cd3720584268d071ba153e4809daa55f1ce"),
    ("boats_at_dusk", "plasma", "EveningGlow", "Ian Hex",
     "LGPL-3", "586682dcb362b9f620068f10138f87d0d3649939aef238adc5807cb951976a7a"),
    ("fallen_leaf", "plasma", "FallenLeaf", "Martin Klapetek",
     "LGPL-3", "95603a6560c7e8d50e0e03b3f4adbe39c5258c72528e74e4ecaea1daf4e499de"),
    ("wavy_facade", "plasma", "Grey", "Sigi Sagi",
     "LGPL-3", "88c31d8944b7e6935d1b9a296654c692f0772cb512491713eb30a972a604c0ed"),
    ("kite_in_sky", "plasma", "Kite", "Risto Saukonpää",
     "LGPL-3", "bdca288ce296a981e80659c021cf707caddc702c0c8d4247e60bd618476d47f8"),
    ("moss", "plasma", "OneStandsOut", "Risto Saukonpää",
     "LGPL-3", "cb507baf1dafdcae362264f3aba9483ed4be5f6c9fdd770f0ec0920c6d9e80fd"),
    ("forest_path", "plasma", "Path", "Risto Saukonpää",
     "LGPL-3", "7477457d7f17b736259f1b021864778ad4ba802cf3214e6728181ff29126bba8"),
    ("lake_at_dusk", "plasma", "summer_1am", "Risto Saukonpää",
     "LGPL-3", "c868b50789591dd42910153c768053f1ba0a98cb36bbfc2b7a96a1045d0477f8"),
))


SHORT_SIDE = 1024  # photos are scaled down to this short side first
CROP_FRACTION = (0.20, 0.30)  # crop side, as a fraction of the short side
TEST_SHARE = 0.2  # of a photo's tiles
VAL_SHARE = 0.1  # of a photo's tiles (when there is a val split)
GAP = 16  # px between crops of two tiles
SPLIT_IDS = {"train": 0, "val": 1, "test": 2}


def fetch_debs(cache: Path, packages: set[str]) -> dict[str, Path]:
    """The ``.deb`` of each package, downloaded once into ``cache/debs``."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    found = {}
    for pkg in sorted(packages):
        have = sorted(debs.glob(f"{pkg}_*.deb"))
        if not have:
            version = PACKAGES[pkg][0]
            print(f"apt-get download {pkg}={version} ...", flush=True)
            for spec in (f"{pkg}={version}", pkg):  # the pinned version, else the one served
                run = subprocess.run(["apt-get", "download", spec], cwd=debs,
                                     capture_output=True, text=True)
                if run.returncode == 0:
                    break
            else:
                sys.exit(f"apt-get download {pkg} failed:\n{run.stderr.strip()}\n"
                         "(on Debian run 'apt-get update' once first)")
            have = sorted(debs.glob(f"{pkg}_*.deb"))
        found[pkg] = have[-1]
    return found


def _deb_data_tar(deb: Path) -> tarfile.TarFile:
    """The ``data.tar.*`` member of a ``.deb`` (an ar archive), opened."""
    raw = deb.read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise ValueError(f"{deb} is not a .deb (ar) archive")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos:pos + 60]
        name = header[:16].decode().strip().rstrip("/")
        size = int(header[48:58].decode().strip())
        body = raw[pos + 60:pos + 60 + size]
        if name.startswith("data.tar"):
            try:
                return tarfile.open(fileobj=io.BytesIO(body), mode="r:*")
            except tarfile.ReadError:  # e.g. zstd, which tarfile lacks: let dpkg-deb read it
                tar = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)],
                                     capture_output=True, check=True).stdout
                return tarfile.open(fileobj=io.BytesIO(tar), mode="r:")
        pos += 60 + size + (size % 2)
    raise ValueError(f"{deb} has no data.tar member")


def extract_photos(cache: Path, photos: list[Photo]) -> dict[str, Path]:
    """Unpack the photos (only them) into ``cache/photos``; check each sha256."""
    out = cache / "photos"
    paths = {p.name: out / p.package / p.path for p in photos}
    missing = [p for p in photos if not paths[p.name].is_file()]
    if missing:
        debs = fetch_debs(cache, {p.package for p in missing})
        for pkg, deb in debs.items():
            wanted = {p.path: p for p in missing if p.package == pkg}
            with _deb_data_tar(deb) as tar:
                for member in tar.getmembers():
                    path = member.name.removeprefix("./")
                    if path in wanted:
                        dest = paths[wanted.pop(path).name]
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        dest.write_bytes(tar.extractfile(member).read())
            if wanted:
                sys.exit(f"{deb.name} lacks {', '.join(sorted(wanted))}")
    for p in photos:
        digest = hashlib.sha256(paths[p.name].read_bytes()).hexdigest()
        if digest != p.sha256:
            print(f"warning: {p.package}:{p.path} has sha256 {digest[:16]}..., not "
                  f"{p.sha256[:16]}... as when this script was written", file=sys.stderr)
    return paths


def tiles(width: int, height: int, with_val: bool,
          rng: np.random.Generator) -> dict[str, list[tuple[int, int, int, int]]]:
    """The photo's grid of tiles (left, top, right, bottom), dealt to the splits.

    Tiles are as small as a largest crop allows (plus ``GAP``), so a 1638x1024 photo
    has 5x3. ``TEST_SHARE`` of them (at least one) go to test, ``VAL_SHARE`` (at
    least one) to val, the rest to train, in an order shuffled by ``rng``.
    """
    largest = int(CROP_FRACTION[1] * min(width, height)) + GAP
    cols, rows = width // largest, height // largest
    grid = [(c * width // cols, r * height // rows,
             (c + 1) * width // cols, (r + 1) * height // rows)
            for r in range(rows) for c in range(cols)]
    order = rng.permutation(len(grid))
    n_test = max(1, round(TEST_SHARE * len(grid)))
    n_val = max(1, round(VAL_SHARE * len(grid))) if with_val else 0
    dealt = {"test": order[:n_test], "val": order[n_test:n_test + n_val],
             "train": order[n_test + n_val:]}
    return {split: [grid[i] for i in sorted(idx)] for split, idx in dealt.items() if len(idx)}


def crops(image: Image.Image, boxes: list[tuple[int, int, int, int]], count: int,
          size: int, rng: np.random.Generator) -> list[Image.Image]:
    """``count`` random square crops, each inside one of ``boxes`` (drawn uniformly)
    less ``GAP / 2`` at its edges, resized to ``size`` px."""
    lo, hi = (int(f * min(image.size)) for f in CROP_FRACTION)
    out = []
    for _ in range(count):
        box = boxes[int(rng.integers(len(boxes)))]
        left, top, right, bottom = (v + s * (GAP // 2) for v, s in zip(box, (1, 1, -1, -1),
                                                                       strict=True))
        side = int(rng.integers(lo, min(hi, right - left, bottom - top) + 1))
        x = int(rng.integers(left, right - side + 1))
        y = int(rng.integers(top, bottom - side + 1))
        crop = image.crop((x, y, x + side, y + side))
        out.append(crop.resize((size, size), Image.Resampling.BICUBIC))
    return out


def load_scaled(path: Path) -> Image.Image:
    """The photo in RGB with its short side scaled down to ``SHORT_SIDE`` px."""
    image = Image.open(path).convert("RGB")
    scale = SHORT_SIDE / min(image.size)
    if scale < 1:
        width, height = (round(s * scale) for s in image.size)
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    return image


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--imbalance", type=float, default=10.0,
                   help="largest over smallest training class (default 10)")
    p.add_argument("--classes", type=int, default=len(PHOTOS),
                   help=f"number of classes, at most {len(PHOTOS)} (default all)")
    p.add_argument("--n-max", type=int, default=150, help="head class's training crops")
    p.add_argument("--test-per-class", type=int, default=30)
    p.add_argument("--val-per-class", type=int, default=10, help="0: no val/ split")
    p.add_argument("--size", type=int, default=224, help="side of the written images (px)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", type=Path, default=ROOT / "build" / "photo-lt-cache")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an OUT_DIR this script wrote before")
    args = p.parse_args()
    if not 2 <= args.classes <= len(PHOTOS):
        p.error(f"--classes must be from 2 to {len(PHOTOS)}")
    if args.n_max < 1 or args.test_per_class < 1 or args.val_per_class < 0:
        p.error("--n-max and --test-per-class must be >= 1, --val-per-class >= 0")

    out = args.out_dir
    splits = ("train", "val", "test") if args.val_per_class else ("train", "test")
    if any((out / s).exists() for s in ("train", "val", "test")):
        if not args.overwrite:
            p.error(f"{out} already holds a split; pass --overwrite to replace it")
        for s in ("train", "val", "test"):
            shutil.rmtree(out / s, ignore_errors=True)

    order = np.random.default_rng(args.seed).permutation(len(PHOTOS))[: args.classes]
    photos = [PHOTOS[i] for i in order]
    counts = longtail_counts(args.n_max, args.classes, args.imbalance)
    per_split = {"val": args.val_per_class, "test": args.test_per_class}
    paths = extract_photos(args.cache, photos)

    manifest = []
    for idx, (photo, n_train) in enumerate(zip(photos, counts, strict=True)):
        image = load_scaled(paths[photo.name])
        boxes = tiles(*image.size, bool(args.val_per_class),
                      np.random.default_rng([args.seed, idx, len(SPLIT_IDS)]))
        written = {}
        for split in splits:
            n = n_train if split == "train" else per_split[split]
            rng = np.random.default_rng([args.seed, idx, SPLIT_IDS[split]])
            folder = out / split / photo.name
            folder.mkdir(parents=True, exist_ok=True)
            for k, crop in enumerate(crops(image, boxes[split], n, args.size, rng)):
                crop.save(folder / f"{photo.name}_{split}_{k:04d}.jpg", quality=95)
            written[split] = n
        manifest.append({
            "class": photo.name, "index": idx, "counts": written,
            "package": photo.package, "version": PACKAGES[photo.package][0],
            "photo": photo.stem, "file": photo.path,
            "author": photo.author, "license": photo.license, "sha256": photo.sha256,
            "scaled_size": list(image.size), "tiles": boxes,
        })
        print(f"  {idx:2d} {photo.name:20s} train {n_train:4d}", flush=True)

    (out / "manifest.json").write_text(json.dumps({
        "source": "real photographs from Debian wallpaper packages; one photo = one class",
        "packages": {k: {"version": v, "license": lic} for k, (v, lic) in PACKAGES.items()},
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "classes": manifest,
    }, indent=1) + "\n")
    lines = ["# Attribution", "", "One class per photograph; the images are crops of it.", "",
             "| class | photo | author | license | Debian package |",
             "| --- | --- | --- | --- | --- |"]
    lines += [f"| {m['class']} | {m['photo']} | {m['author']} | {m['license']} "
              f"| {m['package']} {m['version']} |" for m in manifest]
    (out / "ATTRIBUTION.md").write_text("\n".join(lines) + "\n")

    print(f"\n{out}: {args.classes} classes of real photographs (one photo per class, "
          f"crops resized to {args.size} px)")
    print(f"train: {sum(counts)} images, long-tailed (exp), max {max(counts)}, "
          f"min {min(counts)}, imbalance {max(counts) / min(counts):.1f}")
    if args.val_per_class:
        print(f"val:   {args.val_per_class} per class ({args.val_per_class * args.classes})")
    print(f"test:  {args.test_per_class} per class ({args.test_per_class * args.classes}), "
          "from tiles of each photo that no training crop touches")
    print("source: Debian packages " + ", ".join(
        f"{k} {v}" for k, (v, _) in PACKAGES.items() if k in {ph.package for ph in photos}))
    print("licenses: " + "; ".join(f"{k}: {lic}" for k, (_, lic) in PACKAGES.items()
                                   if k in {ph.package for ph in photos}))


if __name__ == "__main__":
    main()
