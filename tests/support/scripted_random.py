"""A `random.Random` whose `random()` returns given values in turn (the last one
from then on): exact delays out of jittered code."""

import random


class ScriptedRandom(random.Random):
    def __init__(self, *values: float):
        super().__init__(0)
        self._values = list(values)

    def random(self) -> float:
        return self._values.pop(0) if len(self._values) > 1 else self._values[0]
