import sys

from advrobust.cli import main

sys.exit(main())
