"""A training run over several processes: the launcher, one rank's worker, what a rank does differently, and where processes run."""
