"""Publishing a model on the Hugging Face Hub: `push_to_hub` (optional extra `emanet[hub]`).

The repo holds what `save_pretrained` writes (config.json + model.safetensors), so
`emanet.from_pretrained("hf-hub:ORG/NAME")` reads it back, plus a model card (README.md) with
the architecture, classes, and the recipe, data and metrics of the run when they are given.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from .weights import save_pretrained

__all__ = ["push_to_hub", "model_card"]


def model_card(
    config: dict[str, Any],
    recipe: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
) -> str:
    """The README.md of a published model: front matter for the Hub, then what it is, how it
    was trained and what it scored.

    Args:
        config: the model's `create_model` arguments (`model.config`).
        recipe: the run's resolved configuration (a run directory's config.yaml as a dict).
        metrics: the run's evaluation (a run directory's eval.json), e.g. {"mIoU": 0.79, ...}.
        class_names: one name per class.
    """
    name = config.get("name", "emanet model")
    lines = [
        "---",
        "library_name: emanet",
        "tags: [semantic-segmentation, emanet, pytorch]",
        "---",
        f"# {name}",
        "",
        "Expectation-Maximization Attention Networks for semantic segmentation (Li et al., ICCV 2019),",
        "saved by [emanet](https://pypi.org/project/emanet/). Load it with:",
        "",
        "```python",
        "import emanet",
        f'model = emanet.from_pretrained("hf-hub:REPO")  # {name}, {config.get("num_classes")} classes',
        "```",
        "",
        "## Architecture",
        "",
        "```json",
        json.dumps({k: v for k, v in config.items() if k not in ("class_names", "palette")}, indent=1),
        "```",
    ]
    if class_names:
        lines += ["", "## Classes", "", ", ".join(f"{i}: {c}" for i, c in enumerate(class_names))]
    if recipe:
        data, train = recipe.get("data", {}), recipe.get("train", {})
        lines += [
            "",
            "## Training",
            "",
            f"- data: `{data.get('name')}` ({data.get('root') or 'built-in'}),"
            f" split `{data.get('train_split')}`, crop {data.get('crop_size')}",
            f"- schedule: {train.get('iters')} iterations, batch {train.get('batch_size')},"
            f" lr {train.get('lr')}, amp {train.get('amp')}, seed {train.get('seed')}",
            "",
            "```yaml",
            json.dumps(recipe, indent=1),
            "```",
        ]
    if metrics:
        lines += ["", "## Evaluation", "", "| metric | value |", "|---|---:|"]
        for key in ("mIoU", "pixel_acc", "mean_acc"):
            if key in metrics:
                lines.append(f"| {key} | {100 * float(metrics[key]):.2f} |")
    return "\n".join(lines) + "\n"


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    recipe: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    private: bool = False,
    token: str | None = None,
) -> str:
    """Upload `model` (config.json, model.safetensors, README.md) to the Hub repo `repo_id`
    (created if missing); returns the repo's URL. Needs `pip install 'emanet[hub]'`."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise ImportError(
            f"push_to_hub({repo_id!r}) needs huggingface_hub: pip install 'emanet[hub]'"
        ) from None
    class_names = getattr(model, "class_names", None)
    config: dict[str, Any] = getattr(model, "config", {})
    api = HfApi(token=token)
    url = api.create_repo(repo_id, private=private, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        save_pretrained(model, tmp, class_names=class_names, palette=getattr(model, "palette", None))
        card = model_card(config, recipe, metrics, class_names)
        (Path(tmp) / "README.md").write_text(card.replace("hf-hub:REPO", f"hf-hub:{repo_id}"))
        api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=f"emanet: {config.get('name')}")
    return str(url)
