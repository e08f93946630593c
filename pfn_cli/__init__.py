"""``pfn``: the Hydra-driven command line of pfn-transformers.

``pfn train|eval|sample`` are Hydra apps (primary configs ``conf/train.yaml``,
``conf/eval.yaml``, ``conf/sample.yaml``); ``pfn list-runs`` is a plain argparse command.
Importing this package (and the dispatcher, and ``list-runs``) never imports torch.
"""

__all__: list[str] = []
