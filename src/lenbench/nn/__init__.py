"""Torch and Lightning building blocks of the network explainers (in the spirit of ``torch_explain``).

``layers``: layers torch does not have (the entropy LEN's :class:`~lenbench.nn.layers.EntropyLinear`) and the
activation constants shared by the networks. ``module``: the full-batch LightningModule that trains any of them.
``trainer``: the one training configuration of a network explainer and the Lightning fit built from it. ``ddp``:
what a fit over several forked processes needs besides Lightning. No module here knows a method or a formula.
"""
