import sys

from idface.cli import main

sys.exit(main())
