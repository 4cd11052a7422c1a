"""`python -m aggregator.onboarding config.json ...`: the onboard command on its own."""

import sys

from aggregator.commands.onboard import main

sys.exit(main())
