"""Each case's time against its floor (`bench --profile`): the time the networks alone need for the case's work,
at the precision and thread count of the engine.

A case needs its slices encoded once each and one decoder box per walk step (ARCHITECTURE.md §2); the floor is
slices x the encoder's one-image time plus boxes x the decoder's per-box time (the faster of one box a call and
batched), both measured once per engine with every thread (`Segmenter.network_seconds`). A ratio of 1 means
nothing but the two networks ran; the sum of the stages says where the rest went. Imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["STAGES", "Floor", "case_work", "case_floor", "floor_fields", "source_of", "print_profile"]

STAGES = ("preprocess", "encoder", "prompt", "decoder", "postprocess", "wait")


@dataclass(frozen=True)
class Floor:
    slices: int
    boxes: int
    encoder: float  # seconds: slices x one encoder run
    decoder: float  # seconds: boxes x the per-box decoder time

    @property
    def seconds(self) -> float:
        return self.encoder + self.decoder


def case_work(case) -> tuple[int, int]:
    """(slices to encode, decoder boxes) of a case under the reference semantics."""
    if not case.is_3d:
        return 1, len(case.boxes)
    from .reference import propagation_walk

    slices, boxes = set(), 0
    for b in case.boxes:
        walk = propagation_walk(b[2], b[5], case.imgs.shape[0])[1]
        slices.update(z for z, _ in walk)
        boxes += len(walk)
    return len(slices), boxes


def case_floor(case, network: dict[str, float]) -> Floor:
    """The floor of `case` from an engine's `network_seconds()`."""
    slices, boxes = case_work(case)
    kind = "3d" if case.is_3d else "2d"
    per_box = min(network[f"decoder_{kind}"], network[f"decoder_{kind}_batched"])
    return Floor(slices, boxes, slices * network["encoder"], boxes * per_box)


def source_of(name: str) -> str:
    """2DBox_Endoscopy_KvasirSEG_x -> Endoscopy/KvasirSEG; 3DBox_CT_biomedparse_AMOS_x -> CT/biomedparse; else the name."""
    parts = name.split("_")
    return f"{parts[1]}/{parts[2]}" if len(parts) > 2 and parts[0] in ("2DBox", "3DBox") else name


def print_profile(results, floors: dict) -> None:
    """Per case and runtime engine: wall seconds, floor (encoder + decoder), wall / floor and the stage seconds
    (summed over threads); then per source, total wall over total floor and the worst case's ratio.
    `floors` maps (case, engine) to a Floor for the engines that report one."""
    rows = [m for m in results if m.stage_seconds and (m.case, m.engine) in floors]
    if not rows:
        print("\n(no engine reported stage times: --profile covers the runtime-* engines)")
        return
    print("\nagainst the floor (encoder: slices x one encoder run; decoder: boxes x the per-box decoder time; "
          "stages: seconds summed over worker threads)")
    header = (f"{'case':<44} {'engine':<16} {'wall':>7} {'enc fl':>7} {'dec fl':>7} {'x floor':>7}"
              + "".join(f" {s[:8]:>8}" for s in STAGES))
    print(header)
    print("-" * len(header))
    for m in rows:
        f = floors[(m.case, m.engine)]
        print(f"{m.case[:44]:<44} {m.engine:<16} {m.seconds:>7.2f} {f.encoder:>7.2f} {f.decoder:>7.2f} "
              f"{m.seconds / f.seconds:>7.2f}" + "".join(f" {m.stage_seconds.get(s, 0.0):>8.2f}" for s in STAGES))
    print("\nper source: total wall / total floor (worst case)")
    engines = list(dict.fromkeys(m.engine for m in rows))
    sources = sorted({source_of(m.case) for m in rows})
    print(f"{'source':<32}" + "".join(f" {e[:22]:>22}" for e in engines))
    for source in sources + ["all"]:
        cells = []
        for engine in engines:
            mine = [m for m in rows if m.engine == engine and source in ("all", source_of(m.case))]
            if not mine:
                cells.append(f" {'':>22}")
                continue
            ratios = [m.seconds / floors[(m.case, engine)].seconds for m in mine]
            total = sum(m.seconds for m in mine) / sum(floors[(m.case, engine)].seconds for m in mine)
            cells.append(f" {f'{total:.2f} ({max(ratios):.2f})':>22}")
        print(f"{source[:32]:<32}" + "".join(cells))


def floor_fields(floor: Floor, seconds: float) -> dict:
    """The JSON-line fields of a case's floor."""
    return {"encoder_floor_s": floor.encoder, "decoder_floor_s": floor.decoder,
            "floor_ratio": seconds / floor.seconds}
