"""The evaluation report of a space (issue 14): the paper's findings recomputed from the store and the
checkpoints. :mod:`.inputs` reads what the store holds, :mod:`.sections` computes each finding (calling the pure
engine), :mod:`.report` writes ``results.json``, ``report.md`` and the SVG plots (:mod:`.svg`)."""
