"""Test-wide settings: BentoML sends no telemetry and keeps its model store in a temp folder.

Set here, at import time, because BentoML reads both when it is first imported.
"""

import os
import tempfile

os.environ["BENTOML_DO_NOT_TRACK"] = "True"
os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="offer-ranker-bentoml-")
