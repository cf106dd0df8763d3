"""Tell a mistyped local model (or dataset) folder from a Hub repo id before transformers (or datasets) does.

Every `--model`-like option takes either a local folder or a Hub repo id. Handed a folder that does not exist,
transformers falls through to the Hub and answers `Repo id must be in the form 'repo_name' or
'namespace/repo_name'`, which does not say what went wrong. `check_model_source` says it instead.
"""

from __future__ import annotations

import os

from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id


def check_model_source(model: str, *, argument: str = "model", kind: str = "model") -> None:
    """Raise `ValueError` unless `model` is an existing folder or could be a Hub repo id.

    `argument` names the option in the message (`"--scorer_model"`, ...), `kind` what the repo holds (`"model"`,
    `"dataset"`). A value that could be a repo id and is no local folder is left to the Hub (or to its cache when
    offline), where transformers or datasets report what they find.
    """
    if os.path.isdir(model):
        return
    if os.path.exists(model):
        raise ValueError(f"{argument}={model!r} is a file: expected a {kind} folder or a Hub {kind} id (ORG/NAME)")
    try:
        validate_repo_id(model)
    except HFValidationError:
        raise ValueError(
            f"{argument}={model!r}: no such folder ({os.path.abspath(model)}), and not a Hub {kind} id either "
            f"(a Hub {kind} id looks like ORG/NAME)"
        ) from None
