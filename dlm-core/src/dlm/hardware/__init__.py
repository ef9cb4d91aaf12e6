"""The hardware planner: host facts, the VL memory model, the training plan.

``host`` probes (or assumes) the machine, ``memory`` estimates a LoRA step's
peak, ``plan`` turns both into a :class:`~dlm.hardware.plan.TrainingPlan` or a
refusal, ``report`` shapes what ``dlm doctor`` shows. Nothing here imports
torch at module level.
"""
