"""One training run: set-up, the loop and its speed levers, the record, the commit; and the plan ``dlm doctor`` shows."""
