//! The OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` annotations and
//! the core's `ToSchema` types; served at `/openapi.json`, browsable at `/docs` (Swagger UI,
//! assets embedded in the binary).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "bitacora",
        description = "A tamper-evident audit-trail server. Every `/v1` endpoint takes \
            `Authorization: Bearer <credential>` (an API key, a viewer token, or a configured application JWT); errors are `{\"error\":{\"code\",\"message\",\"field\"}}`.",
        license(name = "Apache-2.0"),
    ),
    modifiers(&BearerAuth),
    components(schemas(bitacora_core::api::ErrorBody, bitacora_core::api::ErrorDetail)),
    tags(
        (name = "ingest", description = "Sending events"),
        (name = "events", description = "Searching, reading and exporting events"),
        (name = "summaries", description = "Actions, actors and activity counts"),
        (name = "integrity", description = "Signed checkpoints, inclusion and consistency proofs (RFC 6962/9162, C2SP tlog-checkpoint)"),
        (name = "access", description = "Viewer tokens (admin)"),
        (name = "operations", description = "Health and metrics (no authentication)"),
        (name = "delivery", description = "Destinations, streams and alert rules (admin); alert firings"),
        (name = "lifecycle", description = "Retention, archives and legal holds"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`bk_...`), a viewer token (`bv_...`, read-only) or an \
                         application JWT configured in `[[auth.jwt]]` (read-only)",
                    ))
                    .build(),
            ),
        );
    }
}
