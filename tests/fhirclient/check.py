"""A generic FHIR client against pds-facade: SMART on FHIR's `fhirclient` (PyPI) reads the
capability statement (`FHIRClient.prepare()`), then a patient and an operation's definition,
each parsed by its strict R4 models (an element R4 does not define, or a wrong type, raises).

    python check.py BASE_URL NHS_NUMBER [BACK_OFFICE_TOKEN]

With a back-office token it also reads the patient's audit trail as AuditEvents.
"""

import sys
import uuid

from fhirclient import client
from fhirclient.models.bundle import Bundle
from fhirclient.models.operationdefinition import OperationDefinition
from fhirclient.models.patient import Patient


def get_bundle(smart, path, token=None):
    """A Bundle read with the server's session, parsed by the strict models."""
    headers = {"X-Request-ID": str(uuid.uuid4()), "Accept": "application/fhir+json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    r = smart.server.session.get(base_url(smart) + path, headers=headers)
    assert r.status_code == 200, (path, r.status_code, r.text)
    return Bundle(r.json())


def base_url(smart):
    return smart.server.base_uri


def main(base, nhs, token=None):
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
    assert p.meta.lastUpdated is not None, "meta.lastUpdated"
    print("read Patient", p.id, "version", p.meta.versionId, "updated", p.meta.lastUpdated.isostring)

    definition = ops["merge"].rsplit("/OperationDefinition/", 1)[1]
    smart.server.session.headers["X-Request-ID"] = str(uuid.uuid4())
    od = OperationDefinition.read(definition, smart.server)
    names = [x.name for x in od.parameter]
    assert od.code == "merge" and "source-patient-identifier" in names, names
    related = get_bundle(smart, "Patient/%s/RelatedPerson" % nhs)
    for e in related.entry or []:
        assert e.resource.resource_type == "RelatedPerson", e.resource.resource_type
    print("RelatedPerson bundle: %d" % (related.total or 0))
    if token:
        audit = get_bundle(smart, "AuditEvent?entity=Patient/%s" % nhs, token)
        assert audit.total and audit.total > 0, "an audit trail"
        for e in audit.entry:
            assert e.resource.resource_type == "AuditEvent", e.resource.resource_type
            assert e.resource.agent[0].requestor is True
        print("AuditEvent bundle: %d" % audit.total)
    print("capability statement: %d resources, Patient interactions %s; $merge parameters %s"
          % (len(rest.resource), sorted(interactions), names))


if __name__ == "__main__":
    main(*sys.argv[1:4])
