"""Calls sys.exit() while being imported, as a plugin's careless CLI guard might."""

import sys

sys.exit(3)
