import sys

from CollaGANImputeLib.cli.main import main

sys.exit(main())
