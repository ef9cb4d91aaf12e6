"""The engine: what ``dlm`` does with a document once the CLI has parsed the command.

- :mod:`dlm.engine.document`: a document → training examples, stored images
  and token budgets, before any model loads.
- :mod:`dlm.engine.training`: one training run (session, step, batching,
  speed levers, the vision-feature cache) and its record; ``dlm doctor``'s
  plan for a document.
- :mod:`dlm.engine.distributed`: a run over several processes (launcher,
  worker, what a rank does differently, topology).
- :mod:`dlm.engine.prompting`: ``dlm prompt`` on a committed adapter.
- :mod:`dlm.engine.export`: the export dispatcher and the built-in
  ``hf-snapshot`` target.
- :mod:`dlm.engine.lora` (attach and load adapters) and
  :mod:`dlm.engine.quiet` (library chatter off the screen) serve them all.
"""
