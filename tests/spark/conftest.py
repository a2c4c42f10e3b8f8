"""A local Spark session for the Spark tests (``local[2]``), started once per test worker.

Spark needs a JRE: ``make test`` installs Debian's ``default-jre-headless`` when it runs as root;
without ``java`` these tests are skipped, saying so.
"""

import shutil

import pytest

from offer_ranker.config import Config


def require_java() -> None:
    if shutil.which("java") is None:
        pytest.skip("no Java runtime: `make test` installs default-jre-headless when run as root")


@pytest.fixture(scope="session")
def spark():
    require_java()
    from offer_ranker.featurize.spark.runner import session

    spark, _ = session(Config().spark.model_copy(update={"driver_memory": "2g", "shuffle_partitions": 4}))
    yield spark
    spark.stop()
