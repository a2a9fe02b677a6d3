from tests.harness.broker import collector_factory, mosquitto, mosquitto_factory, tls_material  # noqa: F401
from tests.harness.orthanc import orthanc  # noqa: F401  (fixtures)
