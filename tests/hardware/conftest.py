import sys
from pathlib import Path

# the real-base fixtures live beside the tests (``from bases import ...``)
sys.path.insert(0, str(Path(__file__).parent))
