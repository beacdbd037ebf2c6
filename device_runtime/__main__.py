import sys

from device_runtime.cli import main

sys.exit(main())
