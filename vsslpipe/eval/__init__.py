"""Evaluation of frozen and fine-tuned encoders, as the papers measure them.

``protocols`` (retrieval protocol presets), ``clips`` (evaluation windows and crops),
``export`` (per-video features), ``features`` (the features HDF5 schema), ``retrieval`` (FAISS
search, R@k), ``linear`` (linear probe), ``finetune``, ``summary`` and ``plots``.
"""
