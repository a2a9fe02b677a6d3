from tests.harness.orthanc import orthanc  # noqa: F401  (fixture)
