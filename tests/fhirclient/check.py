"""A generic FHIR client against pds-facade: SMART on FHIR's `fhirclient` (PyPI) reads the
capability statement (`FHIRClient.prepare()`), then a patient and an operation's definition,
each parsed by its strict R4 models (an element R4 does not define, or a wrong type, raises).

    python check.py BASE_URL NHS_NUMBER
"""

import sys
import uuid

from fhirclient import client
from fhirclient.models.operationdefinition import OperationDefinition
from fhirclient.models.patient import Patient


def main(base, nhs):
    smart = client.FHIRClient(settings={"app_id": "pds-facade-check", "api_base": base})
    # the first call a FHIR client makes: GET /metadata, no X-Request-ID
    smart.prepare()
    cs = smart.server.capabilityStatement
    assert cs is not None, "no capability statement"
    assert cs.fhirVersion == "4.0.1", cs.fhirVersion
    rest = cs.rest[0]
    assert rest.mode == "server"
    assert rest.security is not None, "rest.security"
    patient = next(r for r in rest.resource if r.type == "Patient")
    interactions = {i.code for i in patient.interaction}
    for code in ("read", "vread", "patch", "search-type", "history-instance"):
        assert code in interactions, (code, interactions)
    assert patient.versioning == "versioned-update"
    params = {p.name: p.type for p in patient.searchParam}
    assert params["birthdate"] == "date" and params["family"] == "string", params
    ops = {o.name: o.definition for o in patient.operation}
    assert "merge" in ops, ops

    # PDS requires an X-Request-ID on every other route
    smart.server.session.headers["X-Request-ID"] = str(uuid.uuid4())
    p = Patient.read(nhs, smart.server)
    assert p.id == nhs, p.id
    print("read Patient", p.id, "version", p.meta.versionId, "updated", p.meta.lastUpdated)

    definition = ops["merge"].rsplit("/OperationDefinition/", 1)[1]
    smart.server.session.headers["X-Request-ID"] = str(uuid.uuid4())
    od = OperationDefinition.read(definition, smart.server)
    names = [x.name for x in od.parameter]
    assert od.code == "merge" and "source-patient-identifier" in names, names
    print("capability statement: %d resources, Patient interactions %s; $merge parameters %s"
          % (len(rest.resource), sorted(interactions), names))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
