// The wire types, taken from the server's OpenAPI document (`src/generated/openapi.ts`, made
// by `npm run generate` from `GET /openapi.json`; a test fails when the two drift apart).
// Only the names are chosen here; the shapes belong to the server.

import type { components } from "./generated/openapi.js";

type Schemas = components["schemas"];

/** An event as a client sends it (CONTRACT §2). Only `action` is required. */
export type EventInput = Schemas["EventInput"];
/** A stored event, exactly as `GET /v1/events/{id}` returns it. */
export type Event = Schemas["Event"];
/** Who acted. */
export type Actor = Schemas["Actor"];
/** The record acted upon. */
export type Target = Schemas["Target"];
/** One field-level change; `old`/`new` absent means "not applicable". */
export type Change = Schemas["Change"];
/** Where the action came from. */
export type EventContext = Schemas["Context"];
export type Severity = Schemas["Severity"];
export type Outcome = Schemas["Outcome"];
export type ActorType = Schemas["ActorType"];
/** The server's acknowledgement of one stored (or already stored) event. */
export type Ack = Schemas["Ack"];
/** `{"code","message","field"}` of an error response or of a rejected batch item. */
export type ErrorDetail = Schemas["ErrorDetail"];
export type BatchResponse = Schemas["BatchResponse"];
export type InclusionProof = Schemas["InclusionProof"];
