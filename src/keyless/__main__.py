import sys

from keyless.cli.main import main

sys.exit(main())
