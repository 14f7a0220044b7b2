//! The OpenAPI 3.1 document, generated from the handlers and types
//! (`utoipa`), served at `/api/openapi.json` with Swagger UI at `/api/docs`
//! (its files are compiled into the binary: no CDN, works offline).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_swagger_ui::SwaggerUi;

use super::AppState;
use super::auth::Role;
use super::dto::*;
use super::problem::Problem;
use super::{commands, erasure, fleet, inspections};

/// Adds the bearer scheme every operation names.
struct Bearer;

/// Documents the errors every operation can answer with, so clients (and
/// schemathesis) know each status: auth (401, 403), rate limit (429),
/// outages (503), and for operations with parameters or a body the
/// request errors (400; 413, 415, 422 for bodies).
struct CommonErrors;

fn problem_response(description: &str) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    ResponseBuilder::new()
        .description(description)
        .content(
            super::problem::PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
        .into()
}

impl Modify for CommonErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                let has_params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                let has_body = op.request_body.is_some();
                let mut add = |status: &str, description: &str| {
                    op.responses
                        .responses
                        .entry(status.to_owned())
                        .or_insert_with(|| problem_response(description));
                };
                add(
                    "401",
                    "No token, or a token that was refused (the detail says why)",
                );
                add("403", "The caller's role does not allow this");
                add(
                    "429",
                    "The caller's rate limit is used up (see Retry-After)",
                );
                add("500", "An internal error");
                add(
                    "503",
                    "The database or the image store is unavailable (see Retry-After)",
                );
                if has_params || has_body {
                    add("400", "A parameter or the body is invalid");
                }
                if has_body {
                    add("413", "The body is over the limit");
                    add("415", "The body is not application/json");
                    add("422", "The body does not match its schema");
                }
            }
        }
    }
}

impl Modify for Bearer {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A JWT from the company's identity provider (RS256 or ES256), \
                         or an API token (64 hex characters) for a service account",
                    ))
                    .build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vehicle inspection staff API",
        description = "Inspections, review of new damage before any charge, vehicle history, \
                       the device fleet and report exports. Errors are RFC 9457 problem \
                       details (application/problem+json).",
        license(name = "Apache-2.0"),
    ),
    paths(
        inspections::search,
        inspections::detail,
        inspections::annotated,
        inspections::pair,
        inspections::review_finding,
        inspections::mark_reviewed,
        inspections::approve_charge,
        inspections::report_export,
        fleet::vehicle,
        fleet::sites,
        fleet::devices,
        fleet::device,
        fleet::audit,
        fleet::me,
        commands::send,
        commands::list,
        commands::one,
        erasure::erase,
    ),
    components(schemas(
        Problem,
        Role,
        inspections::KindParam,
        inspections::StatusParam,
        inspections::ReviewParam,
        inspections::SortParam,
        inspections::FormatParam,
        InspectionPage,
        InspectionSummary,
        InspectionDetail,
        StatusCount,
        ReviewedDto,
        FrameDto,
        FindingDto,
        PlateReadDto,
        PlateDto,
        ComparisonDto,
        ReportDto,
        ReviewActionDto,
        ChargeDto,
        ReviewDto,
        ReviewRequest,
        MarkReviewedRequest,
        ChargeRequest,
        VehicleHistory,
        SiteDto,
        DeviceDto,
        DevicePage,
        AuditDto,
        MeDto,
        commands::CommandRequest,
        commands::CommandEnvelope,
        commands::CommandDto,
        erasure::ErasureRequest,
        erasure::ErasureDto,
    )),
    modifiers(&Bearer, &CommonErrors),
    tags(
        (name = "inspections", description = "Search and read inspections, pictures, reports"),
        (name = "review", description = "Decide findings, mark reviewed, approve charges"),
        (name = "vehicles", description = "A vehicle's history"),
        (name = "fleet", description = "Sites and devices"),
        (name = "audit", description = "Who changed what"),
        (name = "privacy", description = "GDPR erasure"),
        (name = "session", description = "Who is calling"),
    )
)]
struct ApiDoc;

/// The document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

pub(super) fn routes() -> axum::Router<AppState> {
    SwaggerUi::new("/api/docs")
        .url("/api/openapi.json", ApiDoc::openapi())
        .into()
}
