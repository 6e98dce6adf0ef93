"""Reads, searches and PATCHes a demo patient with the client openapi-python-client generated
from openapi/openapi.json (tests/contract/clients.rs generates it and puts it on PYTHONPATH as
`pds_facade_client`).

    python client.py --base http://127.0.0.1:PORT --token JWT
"""

import argparse
import uuid

from pds_facade_client import AuthenticatedClient
from pds_facade_client.api.patient import get_patient, patch_patient, search_patients
from pds_facade_client.models import (
    Bundle,
    OperationOutcome,
    PatchRequest,
    PatchRequestOperation,
    PatchRequestOperationOp,
    Patient,
)

FULL = "9991000003"  # the demo patient with every element


def rid() -> str:
    return str(uuid.uuid4())


def check(condition: bool, what: str) -> None:
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def main() -> None:
    args = argparse.ArgumentParser()
    args.add_argument("--base", required=True)
    args.add_argument("--token", required=True)
    args = args.parse_args()
    client = AuthenticatedClient(base_url=args.base, token=args.token)

    # read: 200, a Patient, its ETag; X-Request-ID echoed
    request_id = rid()
    read = get_patient.sync_detailed(FULL, client=client, x_request_id=request_id)
    check(read.status_code == 200, f"GET Patient/{FULL} is 200 ({read.status_code})")
    patient = read.parsed
    check(isinstance(patient, Patient) and patient.id == FULL, "the answer parses as that Patient")
    etag = read.headers["ETag"]
    check(etag.startswith('W/"'), f"ETag {etag}")
    check(read.headers.get("X-Request-ID") == request_id, "X-Request-ID echoed")

    # search: a searchset Bundle …
    found = search_patients.sync(client=client, x_request_id=rid(), family="Smith", birthdate=["2010-10-22"])
    check(isinstance(found, Bundle), f"search family=Smith is a Bundle ({type(found).__name__})")
    check(found.type_.value == "searchset" and found.total >= 1, f"searchset with {found.total} match(es)")
    first = found.entry[0]
    check(first.resource.resource_type == "Patient" and 0 < first.search.score <= 1,
          f"first entry a Patient scoring {first.search.score}")
    # … or, with more matches than _max-results, a 200 OperationOutcome TOO_MANY_MATCHES
    too_many = search_patients.sync(client=client, x_request_id=rid(), family="Sm*",
                                    birthdate=["2010-10-22"], field_max_results=1)
    check(isinstance(too_many, OperationOutcome), f"search family=Sm* _max-results=1 is an OperationOutcome ({type(too_many).__name__})")
    check(too_many.issue[0].details.coding[0].code == "TOO_MANY_MATCHES", "TOO_MANY_MATCHES")

    # PATCH with If-Match: a string value (the README's first example) built from the models …
    body = PatchRequest(patches=[PatchRequestOperation(op=PatchRequestOperationOp.REPLACE, path="/gender", value="male")])
    check(body.to_dict() == {"patches": [{"op": "replace", "path": "/gender", "value": "male"}]}, "string body serialises")
    # … and an object value (the README's add example), as JSON
    telecom = {"system": "phone", "use": "mobile", "value": "07700900111"}
    added = PatchRequest.from_dict({"patches": [{"op": "add", "path": "/telecom/-", "value": telecom}]})
    check(added.to_dict()["patches"][0]["value"] == telecom, "object body round-trips")
    body.patches.extend(added.patches)
    patched = patch_patient.sync_detailed(FULL, client=client, body=body, x_request_id=rid(), if_match=etag)
    check(patched.status_code == 200, f"PATCH is 200 ({patched.status_code}: {patched.content[:300]!r})")
    updated = patched.parsed
    check(isinstance(updated, Patient) and updated.gender.value == "male", "gender replaced")
    check(any(t.value == telecom["value"] for t in updated.telecom), "mobile number added")
    check(updated.meta.version_id == str(int(patient.meta.version_id) + 1), f"version {updated.meta.version_id}")
    check(patched.headers["ETag"] == f'W/"{updated.meta.version_id}"', "new ETag")

    # the same If-Match again is stale: 409 RESOURCE_VERSION_MISMATCH, parsed as an OperationOutcome
    stale = patch_patient.sync(FULL, client=client, body=body, x_request_id=rid(), if_match=etag)
    check(isinstance(stale, OperationOutcome) and stale.issue[0].details.coding[0].code == "RESOURCE_VERSION_MISMATCH",
          "a stale If-Match is RESOURCE_VERSION_MISMATCH")
    print("generated Python client: all checks passed")


if __name__ == "__main__":
    main()
