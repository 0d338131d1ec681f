"""Run open_clip's own trainer (`open_clip_train.main`) with realsyn's model configs known.

`python -m realsyn_assets.core.balance.openclip_trainer <open_clip_train flags>` is
`python -m open_clip_train.main <flags>` plus `--model realsyn-tiny` (and the other configs in
`core/embedding/model_configs/`) resolvable by name, so the exported WebDataset tars of a subset
can be trained on with the standard trainer as it is. Every flag is passed through unchanged.
"""

from __future__ import annotations

import sys

from realsyn_assets.core.embedding.configs import register_model_configs


def main(argv: list[str] | None = None) -> None:
    """Register realsyn's open_clip configs, then run open_clip_train's main on `argv`."""
    register_model_configs()
    from open_clip_train.main import main as open_clip_main

    open_clip_main(list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    main()
