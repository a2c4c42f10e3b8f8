"""Without a Java runtime, asking for Spark ends with a message that says what is missing (no
traceback from the JVM launcher); nothing here starts a JVM."""

import os
import subprocess
import sys

SCRIPT = """
from offer_ranker.config import Config
from offer_ranker.featurize.spark.runner import SparkUnavailable, session
try:
    session(Config().spark)
except SparkUnavailable as e:
    print("MESSAGE", e)
"""


def test_no_java_is_a_clear_error() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SPARK_HOME", "SPARK_REMOTE")}
    env["PATH"] = "/nonexistent"
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120).stdout
    assert "MESSAGE Spark did not start (no `java` on PATH; it needs a Java 17+ runtime" in out
