import sys

from cicloml.cli import main

sys.exit(main())
