import sys

from qwentui.sim.launch import main

sys.exit(main())
