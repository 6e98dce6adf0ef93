// The README's PATCH bodies and both shapes of a search answer, typed with what
// openapi-typescript generates from openapi/openapi.json (api.d.ts beside this file; see
// tests/contract/clients.rs). `tsc --strict` must accept every valid value and reject, at each
// `@ts-expect-error`, the invalid ones (so a type as loose as `any` fails too).
import type { components, operations } from "./api";

type PatchRequest = components["schemas"]["PatchRequest"];
type Operation = components["schemas"]["PatchRequest.operation"];
type SearchResult =
  operations["search_patients"]["responses"][200]["content"]["application/fhir+json"];
type Bundle = components["schemas"]["Bundle"];
type OperationOutcome = components["schemas"]["OperationOutcome"];

// README, "Examples": string values
export const replaceGender: PatchRequest = {
  patches: [{ op: "replace", path: "/gender", value: "male" }],
};
export const changeListItem: PatchRequest = {
  patches: [
    { op: "replace", path: "/address/0/id", value: "A1" },
    { op: "replace", path: "/address/0/line/0", value: "16 Larkspur Close" },
  ],
};
export const removeListItem: PatchRequest = {
  patches: [
    { op: "test", path: "/name/2/id", value: "N3" },
    { op: "remove", path: "/name/2" },
  ],
};
// an object value
export const addTelecom: PatchRequest = {
  patches: [
    { op: "add", path: "/telecom/-", value: { system: "phone", use: "mobile", value: "07700900111" } },
  ],
};
export const onlyTests: PatchRequest = { patches: [{ op: "test", path: "/gender", value: "male" }] };
// back office: a reason beside the patches
export const flagSensitive: PatchRequest = {
  patches: [{ op: "replace", path: "/meta/security/0/code", value: "R" }],
  reason: "At risk of harm",
};
// numbers, booleans and arrays are values too
export const others: Operation[] = [
  { op: "test", path: "/multipleBirthInteger", value: 2 },
  { op: "test", path: "/deceasedBoolean", value: false },
  { op: "replace", path: "/name/0/given", value: ["Mary Ann", "Josephine"] },
];

// what the types must refuse
// @ts-expect-error: `move` is not an operation PDS takes
export const move: Operation = { op: "move", path: "/gender", value: "male" };
// @ts-expect-error: a value is never null
export const nullValue: Operation = { op: "replace", path: "/gender", value: null };
// @ts-expect-error: `path` is required
export const noPath: Operation = { op: "remove" };
// @ts-expect-error: `patches` is required
export const noPatches: PatchRequest = { reason: "nothing to do" };
// @ts-expect-error: the patches are a list
export const notAList: PatchRequest = { patches: { op: "remove", path: "/gender" } };

// a search answers with a searchset Bundle …
export const matches: SearchResult = {
  resourceType: "Bundle",
  type: "searchset",
  timestamp: "2026-11-27T10:00:00+00:00",
  total: 1,
  entry: [
    {
      fullUrl: "http://127.0.0.1:9000/personal-demographics/FHIR/R4/Patient/9991000003",
      search: { score: 1 },
      resource: { resourceType: "Patient", id: "9991000003", gender: "female" },
    },
  ],
};
// … or a TOO_MANY_MATCHES OperationOutcome
export const tooMany: SearchResult = {
  resourceType: "OperationOutcome",
  issue: [
    {
      severity: "information",
      code: "multiple-matches",
      details: {
        coding: [
          {
            system: "https://fhir.nhs.uk/R4/CodeSystem/Spine-ErrorOrWarningCode",
            version: "1",
            code: "TOO_MANY_MATCHES",
            display: "Too Many Matches",
          },
        ],
      },
    },
  ],
};
// @ts-expect-error: a Patient is neither
export const neither: SearchResult = { resourceType: "Patient", id: "9991000003" };
// @ts-expect-error: a Bundle's total is a number
export const badTotal: Bundle = { resourceType: "Bundle", type: "searchset", total: "1" };

// `resourceType` tells the two apart
export function describe(result: SearchResult): string {
  if (result.resourceType === "Bundle") {
    const bundle: Bundle = result;
    const scores = (bundle.entry ?? []).map((e) => e.search?.score ?? 0);
    return `${bundle.total} match(es), best ${Math.max(0, ...scores)}`;
  }
  const outcome: OperationOutcome = result;
  return outcome.issue[0].details.coding[0].code;
}
